"""Exactly N trials across workers: a study-wide lock held from "is there budget left?" until the
new trial exists.

Optuna's own ``MaxTrialsCallback`` checks after a trial, so K workers finishing together start up
to K-1 trials too many. Here a worker takes the lock, counts, and releases it only once Optuna has
created (or popped) its trial; the count the next worker sees includes it. The lock dies with its
holder: a PostgreSQL session advisory lock (across machines), or ``flock`` on a file next to a
SQLite or journal storage (one machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from pathlib import Path

from antgo_mlflow.hpo import storage as storages


class ClaimLock:
    """A re-entrant-safe lock: ``release`` after ``release`` (or without ``acquire``) is a no-op."""

    held = False

    def acquire(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False

    def close(self) -> None:
        self.release()


class FileClaimLock(ClaimLock):
    """``flock`` on ``<storage file>.antgo-claim`` (released by the kernel if the holder dies)."""

    def __init__(self, path: Path):
        self.path = Path(f"{path}.antgo-claim")
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.held = True

    def release(self) -> None:
        if self.held and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.held = False

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PostgresClaimLock(ClaimLock):
    """``pg_advisory_lock`` keyed by the study name, on a connection of its own."""

    def __init__(self, url: str, study_name: str):
        import sqlalchemy

        self._engine = sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 10}
        )
        self._conn = None
        self._key = zlib.crc32(f"antgo-hpo:{study_name}".encode()) - 2**31
        self._text = sqlalchemy.text

    def acquire(self) -> None:
        if self._conn is None:
            self._conn = self._engine.connect()
        self._conn.execute(self._text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        self._conn.commit()
        self.held = True

    def release(self) -> None:
        if self.held and self._conn is not None:
            self._conn.execute(self._text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._conn.commit()
        self.held = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.release()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._engine.dispose()


def claim_lock(url: str, study_name: str) -> ClaimLock:
    """The lock that serialises trial creation for study ``study_name`` on storage ``url``.

    MySQL and other servers get a no-op lock: workers may then overshoot by up to K-1 trials.
    """
    url = storages.normalise(url)
    path = storages.journal_path(url) or storages.sqlite_path(url)
    if path is not None:
        return FileClaimLock(path)
    if storages.kind(url) == "postgresql":
        return PostgresClaimLock(url, study_name)
    return ClaimLock()
