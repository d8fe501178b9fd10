"""Progress bars for long work (tqdm on stderr; ANTGO_PROGRESS=0 turns them off)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from antgo_mlflow import env

T = TypeVar("T")


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it"):
    """Wrap ``iterable`` in a tqdm bar unless disabled by ``ANTGO_PROGRESS=0``."""
    from tqdm.auto import tqdm

    disable = not env.progress_enabled()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=disable,
        dynamic_ncols=True,
        leave=False,
    )
