"""LMDB key-value shards: one LMDB environment (a single file) per shard, keys ``<prefix>-<index>``.

File: ``<prefix>-%05d-of-%05d-kvrecord`` (antgo's name), an LMDB environment opened with
``subdir=False`` so the shard is one file that the manifest can hash; it is written compacted.
Values: the same serialized ``tf.train.Example`` bytes as the TFRecord shards
(``antgo_mlflow.data.records``), never pickle. ``<index>`` is the sample's global position in
the packed dataset (antgo's keys), so shard ``s`` holds ``start .. start+count-1``; the key
``__antgo_mlflow_meta__`` holds ``{"prefix", "start", "count"}`` as JSON.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path

from antgo_mlflow.data.manifest import shard_name
from antgo_mlflow.errors import ShardError

META_KEY = b"__antgo_mlflow_meta__"
_INITIAL_MAP_SIZE = 64 << 20


def kv_name(prefix: str, i: int, n: int) -> str:
    """antgo's KV shard name: ``"%s-%.5d-of-%.5d-kvrecord" % (prefix, i, n)``."""
    return shard_name(prefix, i, n, "kvrecord")


def sample_key(prefix: str, index: int) -> bytes:
    """The key of global sample ``index``: ``<prefix>-<index>``."""
    return f"{prefix}-{index}".encode()


class LMDBShardWriter:
    """Write one LMDB shard; the map size doubles whenever it is full.

    Records are buffered and committed in batches; ``close()`` writes the meta key and copies
    the environment compacted to ``path`` (the working environment lives at ``path + '.work'``).
    """

    def __init__(self, path: str | os.PathLike, prefix: str, start: int, batch: int = 1000):
        import lmdb

        self.path = Path(path)
        self.prefix, self.start, self.count = prefix, start, 0
        self._work = Path(str(self.path) + ".work")
        for p in (self._work, Path(str(self._work) + "-lock")):
            p.unlink(missing_ok=True)
        self._map_size = _INITIAL_MAP_SIZE
        self._env = lmdb.open(
            str(self._work), subdir=False, map_size=self._map_size, sync=False, meminit=True
        )
        self._pending: list[tuple[bytes, bytes]] = []
        self._batch = batch

    def write(self, record: bytes) -> None:
        """Add the next sample's record under ``<prefix>-<start + count>``."""
        self._pending.append((sample_key(self.prefix, self.start + self.count), record))
        self.count += 1
        if len(self._pending) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        import lmdb

        while self._pending:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                self._pending = []
            except lmdb.MapFullError:
                self._map_size *= 2
                self._env.set_mapsize(self._map_size)

    def close(self) -> None:
        """Commit, write the meta key, and write the compacted shard file at ``path``."""
        meta = {"prefix": self.prefix, "start": self.start, "count": self.count}
        self._pending.append((META_KEY, json.dumps(meta, sort_keys=True).encode()))
        self._flush()
        self.path.unlink(missing_ok=True)
        self._env.copy(str(self.path), compact=True)
        self._env.close()
        for p in (self._work, Path(str(self._work) + "-lock")):
            p.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop the working environment."""
        self._env.close()
        for p in (self._work, Path(str(self._work) + "-lock")):
            p.unlink(missing_ok=True)

    def __len__(self) -> int:
        return self.count


# py-lmdb refuses to open an environment the process already has open, and a forked child
# inherits the parent's open environments. Close them before every fork (readers reopen lazily).
_OPEN_READERS: weakref.WeakSet = weakref.WeakSet()


def _close_before_fork() -> None:
    for reader in list(_OPEN_READERS):
        reader.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_before_fork)


class LMDBShardReader:
    """Random access to one LMDB shard; the environment is opened lazily once per process.

    Open environments are closed before the process forks (DataLoader workers), so each
    worker opens its own.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise ShardError(f"{self.path}: no such KV shard file")
        self._env = None
        self._pid: int | None = None
        env = self._open()
        with env.begin() as txn:
            raw = txn.get(META_KEY)
        if raw is None:
            raise ShardError(f"{self.path}: not an antgo-mlflow KV shard (no meta key)")
        meta = json.loads(raw)
        self.prefix, self.start, self.count = meta["prefix"], int(meta["start"]), int(meta["count"])
        self.close()  # do not carry an open environment across a fork

    def _open(self):
        import lmdb

        pid = os.getpid()
        if self._env is None or self._pid != pid:
            try:
                self._env = lmdb.open(
                    str(self.path),
                    subdir=False,
                    readonly=True,
                    lock=False,
                    readahead=False,
                    meminit=False,
                    max_readers=512,
                )
            except lmdb.Error as exc:
                raise ShardError(f"{self.path}: cannot open the KV shard ({exc})") from None
            self._pid = pid
            _OPEN_READERS.add(self)
        return self._env

    def __len__(self) -> int:
        return self.count

    def read(self, i: int) -> bytes:
        """The serialized record of the shard's ``i``-th sample."""
        key = sample_key(self.prefix, self.start + i)
        with self._open().begin(buffers=False) as txn:
            value = txn.get(key)
        if value is None:
            raise ShardError(f"{self.path}: record {i} (key {key.decode()}) is missing")
        return value

    def keys(self) -> list[str]:
        """The sample keys of this shard, in index order."""
        return [sample_key(self.prefix, self.start + i).decode() for i in range(self.count)]

    def close(self) -> None:
        if self._env is not None and self._pid == os.getpid():
            self._env.close()
        self._env = self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_env"] = state["_pid"] = None
        return state
