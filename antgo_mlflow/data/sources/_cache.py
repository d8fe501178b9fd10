"""Build a prepared dataset once into a content-addressed cache folder, safely under races.

``build_once(base, digest, build)`` returns ``base/<digest>``. When that folder holds its
``ready.json`` it is reused as is. Otherwise ``build(tmp)`` writes everything (ready marker last)
into a hidden sibling folder that is then renamed into place: two processes racing both build,
the first rename wins and the loser discards its identical copy, so a reader never sees a
half-written folder. Build folders left by a killed process are removed once an hour old.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from antgo_mlflow import env
from antgo_mlflow.fileio import TMP_PREFIX

READY_FILE = "ready.json"


def remove_stale(base: Path, age_s: float = 3600.0) -> None:
    """Delete build folders a killed process left behind (old enough not to be a live build)."""
    for path in base.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > age_s:
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def no_progress() -> Iterator[None]:
    """Progress bars off while a one-off build runs (one line is printed instead)."""
    old = os.environ.get(env.ANTGO_PROGRESS)
    os.environ[env.ANTGO_PROGRESS] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(env.ANTGO_PROGRESS, None)
        else:
            os.environ[env.ANTGO_PROGRESS] = old


def build_once(
    base: Path, digest: str, build: Callable[[Path], None], label: str, quiet: bool = False
) -> Path:
    """``base/digest``, built by ``build(tmp_folder)`` unless it is complete already.

    Args:
        base: the dataset's cache folder (``cache_dir()/<name>-v<layout>``).
        digest: content address of the build (source bytes + every parameter).
        build: writes the dataset into the folder it is given; must write ``READY_FILE`` last.
        label: what is built, for the two progress lines on stderr.
        quiet: no progress lines.
    """
    final = base / digest
    if (final / READY_FILE).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a folder without its ready marker: not ours to trust, move it aside
        with contextlib.suppress(OSError):
            os.rename(final, base / f"{TMP_PREFIX}stale-{uuid.uuid4().hex[:8]}")
    remove_stale(base)
    tmp = base / f"{TMP_PREFIX}{digest}-{uuid.uuid4().hex[:8]}"
    if not quiet:
        print(f"antgo: preparing {label} (once) in {final}", file=sys.stderr)
    started = time.perf_counter()
    try:
        with no_progress():  # one line above instead of several short-lived bars
            build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / READY_FILE).is_file():
                raise
            # another process finished first: its copy is identical, keep it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        print(f"antgo: {label} ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return final
