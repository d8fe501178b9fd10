"""Progress bars for long work (tqdm on stderr), on a terminal only.

``ANTGO_PROGRESS=0`` turns them off, ``ANTGO_PROGRESS=1`` forces them on; unset, a bar is shown
only when stderr is a terminal: redirected to a file, a bar's carriage-return updates would run
into the log's lines.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from antgo_mlflow import env

T = TypeVar("T")


def bars_enabled() -> bool:
    """True when progress bars should be drawn (see the module docstring)."""
    forced = env.progress_forced()
    if forced is not None:
        return forced
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it"):
    """Wrap ``iterable`` in a tqdm bar (a silent pass-through when bars are off)."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not bars_enabled(),
        dynamic_ncols=True,
        leave=False,
    )
