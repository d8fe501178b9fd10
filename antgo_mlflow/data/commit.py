"""Commit a staged shard set into its folder: a ``kill -9`` at any point leaves the old set or the new.

A packer builds the new shards, their indexes and the new manifest in its staging folder
``<tgt>/.antgo-tmp-pack-<prefix>/``; shard names are fixed by antgo's format
(``<prefix>-00000-of-00003-tfrecord``), so the new set usually overwrites the old one name by name
and no single rename can swap them. The commit is therefore journalled:

1. ``commit.json`` is written in the staging folder (atomically): the commit point. Until it
   exists nothing in ``tgt`` has changed - a kill leaves the old set, and the next packer discards
   the staging folder.
2. The old manifest is removed (so no reader pairs it with half-replaced shards), the new files
   are moved in, the new manifest is moved in last, old shards the new set does not overwrite are
   deleted, then the journal and the staging folder.

After a kill inside step 2 the journal finishes the commit (:func:`finish_pending`): the next
packer of the prefix does so first, and readers that find no manifest do so before reading, so
nobody ever reads a mixture. Every mutation goes through :func:`_do`, where tests inject a kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from antgo_mlflow.errors import ShardError
from antgo_mlflow.fileio import JOURNAL_FILE, TMP_PREFIX, atomic_write_json

STAGING_PREFIX = TMP_PREFIX + "pack-"
LOCK_WAIT_S = 60.0


def staging_dir(tgt: str | os.PathLike, prefix: str) -> Path:
    """The staging folder of ``prefix`` in ``tgt``."""
    return Path(tgt) / f"{STAGING_PREFIX}{prefix}"


def lock_path(tgt: str | os.PathLike, prefix: str) -> Path:
    """The lock file every writer (and a reader finishing a commit) of ``prefix`` holds."""
    return Path(tgt) / f"{STAGING_PREFIX}{prefix}.lock"


def _do(op, *args) -> None:
    """Apply one file-system mutation of a commit (the unit a fault-injection test kills at)."""
    op(*args)


def commit(staging: Path, tgt: Path, moves: list[tuple[str, str]], remove: list[str]) -> None:
    """Journal, then apply: move ``staging/<a>`` to ``tgt/<b>`` for each ``(a, b)`` in ``moves``
    (the last pair is the manifest) and delete ``tgt/<name>`` for each name in ``remove``."""
    journal = {"moves": [list(m) for m in moves], "remove": list(remove)}
    _do(atomic_write_json, staging / JOURNAL_FILE, journal)
    _apply(staging, tgt, journal)


def _apply(staging: Path, tgt: Path, journal: dict) -> None:
    moves = [tuple(m) for m in journal["moves"]]
    manifest_src, manifest_dst = moves[-1]
    if (staging / manifest_src).exists() and (tgt / manifest_dst).exists():
        _do(os.unlink, tgt / manifest_dst)  # the old manifest: never beside half-moved shards
    for src, dst in moves:
        if (staging / src).exists():  # already moved by an interrupted run otherwise
            _do(os.replace, staging / src, tgt / dst)
    for name in journal["remove"]:
        if (tgt / name).exists():
            _do(os.unlink, tgt / name)
    _do(os.unlink, staging / JOURNAL_FILE)
    _do(shutil.rmtree, staging)


def finish(staging: Path) -> bool:
    """Complete the journalled commit in ``staging`` if there is one; True if it did.

    The caller holds the prefix's lock.
    """
    try:
        journal = json.loads((staging / JOURNAL_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise ShardError(f"{staging / JOURNAL_FILE}: unreadable commit journal ({exc})") from None
    _apply(staging, staging.parent, journal)
    return True


@contextlib.contextmanager
def prefix_lock(tgt: Path, prefix: str, wait: float = 0.0) -> Iterator[bool]:
    """Hold the exclusive lock of ``prefix`` in ``tgt``; yields False if it stayed busy ``wait`` s."""
    fh = open(lock_path(tgt, prefix), "a")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        fh.close()


def finish_pending(folder: str | os.PathLike, prefix: str | None = None) -> int:
    """Finish interrupted commits in ``folder`` (of ``prefix``, or of every prefix); return how many.

    Readers call this when a manifest is missing: a live packer holding the lock is waited for
    (its commit takes moments), a dead one's journal is completed here.
    """
    folder = Path(folder)
    pattern = f"{STAGING_PREFIX}{prefix if prefix is not None else '*'}"
    try:
        pending = [p for p in folder.glob(pattern) if (p / JOURNAL_FILE).is_file()]
    except OSError:
        return 0
    done = 0
    for staging in pending:
        name = staging.name[len(STAGING_PREFIX) :]
        try:
            with prefix_lock(folder, name, wait=LOCK_WAIT_S) as held:
                if not held:
                    raise ShardError(
                        f"{folder}: prefix {name!r} is being written by another process; retry"
                    )
                done += finish(staging)
        except OSError as exc:
            raise ShardError(
                f"{staging}: an interrupted commit of prefix {name!r} could not be finished "
                f"({exc.strerror or exc}); run the package command there again"
            ) from None
    return done
