"""TFRecord shard files: a writer (the ``tfrecord`` package's framing), the ``-index`` sidecar, and
a random-access reader that reads one record at its index offset and verifies both CRCs.

Record framing (TFRecord): ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)``, little endian. The ``-index`` file holds one ``offset length`` line
per record (what ``tfrecord.tools.tfrecord2idx.create_index`` writes), ``length`` including the
16 framing bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from crc32c import crc32c as _crc32c  # a required dependency (setup.py): no "extra" to suggest

from antgo_mlflow.data.manifest import SHARD_RE, shard_name  # noqa: F401  (re-exported)
from antgo_mlflow.errors import ShardError

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def index_path_for(tfrecord_path: str | os.PathLike) -> Path:
    """The ``-index`` file beside a ``-tfrecord`` file."""
    path = str(tfrecord_path)
    if path.endswith("-tfrecord"):
        return Path(path[: -len("-tfrecord")] + "-index")
    return Path(path + "-index")


def masked_crc(data) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class TFRecordShardWriter:
    """Write serialized records to one ``-tfrecord`` file and remember each record's offset.

    The framing is byte for byte what ``tfrecord.TFRecordWriter.write`` produces (tests read our
    files with the package's own reader). We do not call ``TFRecordWriter`` itself: importing the
    ``tfrecord`` package imports torch (~2.5 s for a data tool), and its ``serialize_tf_example``
    does not serialize the feature map deterministically. ``write`` takes bytes already
    serialized by ``records.serialize_sample``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = open(self.path, "wb")
        self._offset = 0
        self.index: list[tuple[int, int]] = []

    def write(self, record: bytes) -> None:
        """Append one record (framing: length, its CRC, data, data CRC)."""
        length_bytes = struct.pack("<Q", len(record))
        self._fh.write(
            length_bytes
            + _FOOTER.pack(masked_crc(length_bytes))
            + record
            + _FOOTER.pack(masked_crc(record))
        )
        size = len(record) + 16
        self.index.append((self._offset, size))
        self._offset += size

    def close(self, fsync: bool = True) -> None:
        """Flush, fsync and close the file."""
        if not self._fh.closed:
            self._fh.flush()
            if fsync:
                os.fsync(self._fh.fileno())
            self._fh.close()

    def __len__(self) -> int:
        return len(self.index)


def format_index(index: list[tuple[int, int]] | np.ndarray) -> bytes:
    """The ``-index`` file content for ``(offset, length)`` pairs."""
    return "".join(f"{int(o)} {int(n)}\n" for o, n in index).encode("ascii")


def read_index(path: str | os.PathLike) -> np.ndarray:
    """Load an ``-index`` file as an ``(N, 2)`` int64 array of ``(offset, length)``."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ShardError(
            f"{path}: index file missing (random access needs it; rebuild it with "
            f"antgo_mlflow.data.tfrecord.build_index, pass rebuild_index=True, or use "
            f"TFStreamDataset)"
        ) from None
    try:
        flat = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise ShardError(f"{path}: not an index file (expected 'offset length' lines)") from None
    if flat.size % 2:
        raise ShardError(f"{path}: truncated index file (odd number of values)")
    return flat.reshape(-1, 2)


def iter_frames(path: str | os.PathLike, verify: bool = True) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(offset, length, data)`` for each record of a ``-tfrecord`` file, in order."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise ShardError(f"{path}: no such shard file") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        offset, i = 0, 0
        while offset < size:
            header = fh.read(12)
            if len(header) != 12:
                raise ShardError(f"{path}: record {i} is truncated (at byte {offset})")
            length, length_crc = _HEADER.unpack(header)
            if verify and masked_crc(header[:8]) != length_crc:
                raise ShardError(
                    f"{path}: record {i} is corrupt (length CRC mismatch at byte {offset})"
                )
            if offset + 16 + length > size:
                raise ShardError(f"{path}: record {i} is truncated (at byte {offset})")
            data = fh.read(length)
            (data_crc,) = _FOOTER.unpack(fh.read(4))
            if verify and masked_crc(data) != data_crc:
                raise ShardError(
                    f"{path}: record {i} is corrupt (data CRC mismatch at byte {offset})"
                )
            yield offset, length + 16, data
            offset += length + 16
            i += 1


def build_index(tfrecord_path: str | os.PathLike, index_path: str | os.PathLike | None = None):
    """Scan a ``-tfrecord`` file (verifying CRCs) and write its ``-index`` atomically."""
    from antgo_mlflow.fileio import atomic_write_bytes

    index_path = Path(index_path) if index_path else index_path_for(tfrecord_path)
    index = [(o, n) for o, n, _ in iter_frames(tfrecord_path)]
    atomic_write_bytes(index_path, format_index(index))
    return index_path


# This process's id, refreshed in forked children (os.getpid() per record costs more).
_PID = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


_LENGTH_CRC: dict[int, int] = {}  # record length -> masked CRC of its 8 length bytes


def _length_crc(length: int) -> int:
    crc = masked_crc(struct.pack("<Q", length))
    if len(_LENGTH_CRC) >= 1 << 16:  # bounded: shards of very varied record sizes
        _LENGTH_CRC.clear()
    _LENGTH_CRC[length] = crc
    return crc


class TFRecordShardReader:
    """Random access to the records of one shard through its index.

    Only the index lives in memory. The file is opened lazily, once per process, so a reader
    built before DataLoader workers fork is safe to use in every worker (each opens its own
    descriptor); reads use ``os.pread`` and keep no file position.
    """

    def __init__(self, path: str | os.PathLike, index: np.ndarray | None = None, verify=True):
        self.path = Path(path)
        self.index = read_index(index_path_for(self.path)) if index is None else index
        self.verify = verify
        self._fd: int | None = None
        self._pid: int | None = None
        self._flat: memoryview | None = None

    def __len__(self) -> int:
        return len(self.index)

    def _open(self) -> int:
        pid = _PID[0]
        if self._fd is None or self._pid != pid:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                raise ShardError(f"{self.path}: no such shard file") from None
            self._pid = pid
        return self._fd

    def _offsets(self) -> memoryview:
        # A flat int64 view of the index: two memoryview lookups cost ~0.06 us per record,
        # ``self.index[i].tolist()`` ~0.35 us. No copy for an int64 C-contiguous index.
        flat = np.ascontiguousarray(self.index, dtype=np.int64).reshape(-1)
        view = memoryview(flat) if flat.size else memoryview(b"")  # cast refuses empty shapes
        self._flat = view.cast("B").cast("q")
        return self._flat

    def read(self, i: int) -> memoryview:
        """The serialized record ``i`` as a memoryview (CRCs verified unless ``verify=False``)."""
        flat = self._flat if self._flat is not None else self._offsets()
        if i < 0:
            i += len(flat) >> 1
        try:
            if i < 0:
                raise IndexError
            offset, size = flat[2 * i], flat[2 * i + 1]
        except IndexError:
            raise IndexError(f"{self.path}: no record {i} ({len(flat) >> 1} records)") from None
        fd = self._fd if self._pid == _PID[0] and self._fd is not None else self._open()
        buf = os.pread(fd, size, offset)
        if len(buf) != size or size < 16:
            raise ShardError(
                f"{self.path}: record {i} is truncated (index says {size} bytes at {offset})"
            )
        length, length_crc = _HEADER.unpack_from(buf)
        if length != size - 16:
            raise ShardError(
                f"{self.path}: record {i} is corrupt (length {length} does not match the index)"
            )
        view = memoryview(buf)
        data = view[12 : 12 + length]
        if self.verify:
            (data_crc,) = _FOOTER.unpack_from(buf, 12 + length)
            # The length CRC depends on the length only: look it up instead of recomputing.
            expected = _LENGTH_CRC.get(length)
            if expected is None:
                expected = _length_crc(length)
            crc = _crc32c(data)  # masked_crc inlined: one Python call less per record
            if (
                expected != length_crc
                or (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != data_crc
            ):
                raise ShardError(
                    f"{self.path}: record {i} is corrupt (CRC mismatch at byte {offset})"
                )
        return data

    def close(self) -> None:
        """Close this process's descriptor."""
        if self._fd is not None and self._pid == _PID[0]:
            os.close(self._fd)
        self._fd = self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fd"] = state["_pid"] = None  # never ship a descriptor to another process
        state["_flat"] = None  # a memoryview does not pickle; rebuilt on first read
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
