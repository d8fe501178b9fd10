"""Packing GT JSONs (or existing shards) into TFRecord or LMDB shards plus a manifest.

Shared by ``antgo_mlflow.tools.package_tfrecord`` and ``package_kv``. Guarantees:

- Deterministic: samples keep input order (``--src`` order, then file order), records are
  serialized deterministically, nothing time-dependent is written; parallel encoding uses a
  bounded, ordered thread pool. The same input gives byte-identical shards and manifest.
- Unreadable samples (missing/empty/undecodable image, schema errors, remote-only ``image_url``)
  are dropped and counted before the shard count is known: shards are written under temporary
  names and only named ``-of-%05d`` once the number of kept samples is known.
- Atomic: everything is written in ``<tgt>/.antgo-tmp-pack-<prefix>/`` and committed with a
  journal (``antgo_mlflow.data.commit``): a run killed with ``kill -9`` at any point leaves the
  old shard set or the new one (an interrupted commit is finished by the next packer or reader);
  the manifest is moved in last. Staging folders of killed runs are removed by the next run.
- antgo compatibility: antgo's TFDataset reads our shards with an explicit ``description`` of
  fields the GT has. Its *default* description asks every record for all 34 template fields;
  ``antgo_template=True`` (``--antgo-template``) writes the missing ones with antgo's defaults
  (``records.ANTGO_TEMPLATE``). Off by default: ~100 extra features per record make parsing
  ~7x slower, which matters for small images.
- Re-sharding: a ``--src`` entry that is a manifest, a ``-tfrecord``/``-kvrecord`` file, a shard
  prefix or a folder of shards is read record by record (CRCs checked) and re-packed unchanged.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import struct
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, GTFormatError, UsageError

FORMATS = ("tfrecord", "kv")


@dataclass
class PackSummary:
    """What a packer wrote.

    Attributes:
        format: ``"tfrecord"`` or ``"kv"``.
        tgt: the output folder.
        prefix: the shard prefix.
        total: samples written.
        dropped: samples dropped (unreadable).
        drop_reasons: reason -> count.
        dropped_samples: ``(where, reason)`` for the first 100 dropped samples.
        shards: shard files written, in order (index files not included).
        manifest: the manifest path.
        sources: the expanded inputs.
        seconds: wall time.
    """

    format: str
    tgt: Path
    prefix: str
    total: int = 0
    dropped: int = 0
    drop_reasons: Counter = field(default_factory=Counter)
    dropped_samples: list[tuple[str, str]] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)
    manifest: Path | None = None
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        """One human-readable line for the CLI."""
        text = (
            f"packed {self.total} samples into {len(self.shards)} {self.format} shard(s) "
            f"{self.tgt / (self.prefix + '-*')} in {self.seconds:.1f}s"
        )
        if self.dropped:
            reasons = ", ".join(f"{r} ({n})" for r, n in self.drop_reasons.most_common(3))
            text += f"; dropped {self.dropped}: {reasons}"
        return text


# -- inputs ------------------------------------------------------------------------------------
@dataclass
class _Source:
    kind: str  # "gt" or "shards"
    path: Path
    files: list[Path] = field(default_factory=list)  # shard files (kind == "shards")
    fmt: str = "tfrecord"
    class_names: list[str] = field(default_factory=list)
    data_roots: list[str] = field(default_factory=list)  # where images outside the GT may be


def _split_src(src) -> list[str]:
    if isinstance(src, (str, os.PathLike)):
        items = str(src).split(",")
    else:
        items = [str(s) for s in src]
    return [s.strip() for s in items if s and s.strip()]


def _shards_from_manifest(path: Path) -> _Source:
    from antgo_mlflow.data.manifest import read_manifest, shard_files

    manifest = read_manifest(path)
    return _Source(
        "shards",
        path,
        shard_files(path, manifest),
        manifest["format"],
        list(manifest.get("class_names", [])),
    )


def _shard_group(files: list[Path], where: str) -> _Source:
    kinds = {"kv" if f.name.endswith("-kvrecord") else "tfrecord" for f in files}
    if len(kinds) > 1:
        raise UsageError(f"--src {where}: mixes TFRecord and KV shards; give one kind")
    return _Source("shards", Path(where), sorted(files), kinds.pop())


def expand_src(src) -> list[_Source]:
    """Expand ``--src`` (comma string or list) into GT JSON files and shard sets, in order."""
    entries = _split_src(src)
    if not entries:
        raise UsageError("--src: no input given (GT JSON files, folders or shards)")
    out: list[_Source] = []
    for entry in entries:
        p = Path(entry.rstrip("*")).expanduser()
        name = p.name
        if name.endswith("-manifest.json"):
            out.append(_shards_from_manifest(p))
        elif p.is_file() and (name.endswith("-tfrecord") or name.endswith("-kvrecord")):
            out.append(_shard_group([p], entry))
        elif p.is_file():
            out.append(_Source("gt", p))
        elif p.is_dir():
            jsons = sorted(
                f
                for f in p.glob("*.json")
                if f.name != "meta.json" and not f.name.endswith("-manifest.json")
            )
            if jsons:
                out.extend(_Source("gt", f) for f in jsons)
                continue
            manifests = sorted(p.glob("*-manifest.json"))
            if manifests:
                out.extend(_shards_from_manifest(m) for m in manifests)
                continue
            shards = [f for f in p.iterdir() if f.name.endswith(("-tfrecord", "-kvrecord"))]
            if not shards:
                raise DataError(f"{p}: folder holds no GT JSON files and no shards")
            out.append(_shard_group(shards, entry))
        elif Path(str(p) + "-manifest.json").is_file():
            out.append(_shards_from_manifest(Path(str(p) + "-manifest.json")))
        else:
            shards = [
                f
                for f in p.parent.glob(glob_escape(name) + "-*-of-*")
                if f.name.endswith(("-tfrecord", "-kvrecord"))
            ]
            if not shards:
                raise DataError(f"{entry}: no such file, folder or shard prefix")
            out.append(_shard_group(shards, entry))
    return out


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a literal file name part."""
    return re.sub(r"([*?\[])", r"[\1]", text)


# -- encoding ----------------------------------------------------------------------------------
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return (width, height) if width and height else None
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header; None if the bytes are not an image.

    PNG and JPEG headers are read directly (like antgo's ``imagesize``; PIL's open costs ~20x
    more per image), anything else through PIL.
    """
    if data[:8] == _PNG_MAGIC and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return (width, height) if width and height else None
    if data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
        if size is not None:
            return size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None  # a decompression bomb is not an image we pack


def encode_gt_sample(
    base: Path, sample: dict[str, Any], antgo_template: bool = False
) -> tuple[bytes | None, str]:
    """Read the image of one GT sample and serialize it; ``(None, reason)`` if unreadable."""
    from antgo_mlflow.data.records import serialize_sample, with_antgo_defaults

    image_file = sample.get("image_file") or ""
    if not image_file:
        if sample.get("image_url"):
            return None, "remote image_url not fetched (download images first)"
        return None, "no image_file"
    path = base / image_file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "missing image"
    except OSError:
        return None, "unreadable image"
    if not data:
        return None, "empty image"
    size = _image_size(data)
    if size is None:
        return None, "not an image"
    sample = with_antgo_defaults(sample) if antgo_template else dict(sample)
    sample["width"], sample["height"] = size  # antgo overwrites them from the header too
    sample["image"] = data
    try:
        return serialize_sample(sample), ""
    except DataError as exc:
        return None, f"unencodable field ({exc})"


def _gt_items(source: _Source) -> Iterator[tuple[str, Path, Any]]:
    from antgo_mlflow.gt import load_gt, validate_sample

    samples = load_gt(source.path, validate=False, data_roots=source.data_roots)
    base = source.path.parent
    for i, sample in enumerate(samples):
        where = f"{source.path}: sample {i}"
        try:
            validate_sample(sample, i, str(source.path))
        except GTFormatError as exc:
            yield where, base, GTFormatError(str(exc))
            continue
        yield where, base, sample


def _shard_records(source: _Source) -> Iterator[tuple[str, bytes]]:
    from antgo_mlflow.data.lmdb_store import LMDBShardReader
    from antgo_mlflow.data.tfrecord import iter_frames

    for f in source.files:
        if source.fmt == "kv":
            reader = LMDBShardReader(f)
            for i in range(len(reader)):
                yield f"{f}: record {i}", reader.read(i)
            reader.close()
        else:
            for i, (_, _, data) in enumerate(iter_frames(f)):
                yield f"{f}: record {i}", data


def _label_of(value: Any) -> int:
    """A sample's ``image_label`` as an int (-1, "unlabelled", when missing or not an int)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def record_label(record: bytes) -> int:
    """The ``image_label`` of a serialized record (-1 when it has none)."""
    from antgo_mlflow.data.records import parse_example

    values = parse_example(record, {"image_label"}).get("image_label")
    return int(values[0]) if values is not None and len(values) else -1


def _encode(
    item: tuple[str, Path, Any], antgo_template: bool
) -> tuple[str, bytes | None, str, int]:
    where, base, sample = item
    if isinstance(sample, Exception):
        return where, None, "schema error", -1
    record, reason = encode_gt_sample(base, sample, antgo_template)
    return where, record, reason, _label_of(sample.get("image_label"))


def _encode_chunk(chunk: list, antgo_template: bool) -> list:
    return [_encode(item, antgo_template) for item in chunk]


_CHUNK = 16  # samples per thread task: amortises the hand-off between threads


def iter_records(
    sources: list[_Source], workers: int, antgo_template: bool = False
) -> Iterator[tuple[int, str, bytes | None, str, int]]:
    """Yield ``(source number, where, record or None, drop reason, image_label)`` per input
    sample, in order (``image_label`` -1: the sample has no class label).

    GT samples are read and encoded by ``workers`` threads in chunks; a bounded window of
    chunks in flight keeps the output order and the memory use (about ``4 * workers * 16``
    records) independent of the input size.
    """
    window = 2 * max(1, workers) + 2
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for k, source in enumerate(sources):
            if source.kind == "shards":
                for where, data in _shard_records(source):
                    yield k, where, data, "", record_label(data)
                continue
            pending: deque = deque()
            items = _gt_items(source)
            while chunk := list(islice(items, _CHUNK)):
                pending.append(pool.submit(_encode_chunk, chunk, antgo_template))
                if len(pending) >= window:
                    for result in pending.popleft().result():
                        yield (k, *result)
            while pending:
                for result in pending.popleft().result():
                    yield (k, *result)


# -- writing -----------------------------------------------------------------------------------
class _Staging:
    """``<tgt>/.antgo-tmp-pack-<prefix>/`` guarded by an exclusive lock.

    On entry an interrupted commit of the prefix is finished (``antgo_mlflow.data.commit``), a
    staging folder left by a killed run is removed, and so are stale temporaries of other runs.
    """

    def __init__(self, tgt: Path, prefix: str):
        from antgo_mlflow.data.commit import lock_path, staging_dir

        self.path = staging_dir(tgt, prefix)
        self.lock_path = lock_path(tgt, prefix)
        self.prefix = prefix
        self._lock_fh = None

    def __enter__(self) -> _Staging:
        import fcntl

        from antgo_mlflow.data.commit import finish
        from antgo_mlflow.fileio import remove_stale_temporaries, write_owner

        self._lock_fh = open(self.lock_path, "a")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            raise UsageError(
                f"{self.path.parent}: another packer is writing prefix {self.prefix!r} there now"
            ) from None
        try:
            finish(self.path)  # a commit a killed run journalled: complete it first
            if self.path.exists():  # left by a killed run before its commit: start clean
                shutil.rmtree(self.path)
            remove_stale_temporaries(self.path.parent)
            self.path.mkdir()
            write_owner(self.path)
        except BaseException:
            self._lock_fh.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        self._lock_fh.close()


def _new_writer(fmt: str, path: Path, prefix: str, start: int):
    if fmt == "kv":
        from antgo_mlflow.data.lmdb_store import LMDBShardWriter

        return LMDBShardWriter(path, prefix, start)
    from antgo_mlflow.data.tfrecord import TFRecordShardWriter

    return TFRecordShardWriter(path)


def _class_names(sources: list[_Source]) -> list[str]:
    from antgo_mlflow.gt import read_meta

    for source in sources:
        if source.kind == "shards" and source.class_names:
            return source.class_names
        if source.kind == "gt":
            meta = read_meta(source.path.parent)
            names = ((meta or {}).get("meta") or {}).get("category") or []
            if names:
                return list(names)
    return []


def _old_files(tgt: Path, prefix: str) -> list[str]:
    """Names of the current shard set of ``prefix`` in ``tgt`` (shards and indexes)."""
    from antgo_mlflow.data.manifest import SHARD_RE

    return sorted(
        f.name
        for f in tgt.iterdir()
        if (m := SHARD_RE.match(f.name)) and m["prefix"] == prefix and f.is_file()
    )


def pack(
    src: str | Iterable[str],
    tgt: str | os.PathLike,
    prefix: str,
    num: int = 100000,
    workers: int | None = None,
    fmt: str = "tfrecord",
    antgo_template: bool = False,
    data_roots: Iterable[str | os.PathLike] | str | None = None,
) -> PackSummary:
    """Pack ``src`` into ``<tgt>/<prefix>-%05d-of-%05d-(tfrecord|kvrecord)`` + manifest.

    Args:
        src: GT JSON files, folders of them, or existing shards; a comma string or a list.
        tgt: output folder (created).
        prefix: shard file prefix.
        num: samples per shard.
        workers: threads reading and encoding samples (default: CPUs, at most 8).
        fmt: ``"tfrecord"`` or ``"kv"``.
        antgo_template: also write antgo's template fields a sample lacks (for antgo's reader
            with its default description).
        data_roots: folders (besides each GT's own) its images may be in; a sample whose image
            lies elsewhere refuses the whole run (``antgo_mlflow.gt.io``).

    Raises:
        UsageError for bad arguments, DataError/ShardError for bad inputs, including when no
        sample is readable.
    """
    start_time = time.perf_counter()
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {FORMATS}, got {fmt!r}")
    if not prefix or "/" in prefix or prefix.startswith("."):
        raise UsageError(f"--prefix: {prefix!r} must be a plain file name prefix")
    if int(num) <= 0:
        raise UsageError(f"--num: {num} must be a positive number of samples per shard")
    num = int(num)
    if workers is not None and int(workers) < 1:
        raise UsageError(f"--workers: {workers} must be >= 1")
    workers = workers or min(8, os.cpu_count() or 1)
    sources = expand_src(src)
    for source in sources:
        source.data_roots = _split_src(data_roots) if data_roots else []
    tgt = Path(tgt).expanduser()
    if tgt.exists() and not tgt.is_dir():
        raise UsageError(f"--tgt: {tgt} is a file, expected a folder")
    created = not tgt.exists()
    tgt.mkdir(parents=True, exist_ok=True)
    try:
        summary = _pack_into(sources, tgt, prefix, num, workers, fmt, antgo_template)
    except BaseException:
        if created:  # leave no empty output folder behind a failed run
            with contextlib.suppress(OSError):
                tgt.rmdir()
        raise
    summary.seconds = time.perf_counter() - start_time
    return summary


def _pack_into(
    sources, tgt: Path, prefix: str, num: int, workers: int, fmt: str, antgo_template: bool
) -> PackSummary:
    from antgo_mlflow.data.commit import commit
    from antgo_mlflow.data.lmdb_store import kv_name
    from antgo_mlflow.data.manifest import (
        build_manifest,
        manifest_path,
        sha256_file,
        write_manifest,
    )
    from antgo_mlflow.data.tfrecord import format_index, shard_name
    from antgo_mlflow.progress import progress

    summary = PackSummary(fmt, tgt, prefix, sources=[str(s.path) for s in sources])
    source_stats = [Counter() for _ in sources]

    with _Staging(tgt, prefix) as staging:
        writers: list[Any] = []
        staged: list[Path] = []
        indexes: list[Any] = []
        writer = None
        try:
            records = iter_records(sources, workers, antgo_template)
            labels: list[Counter] = []  # per shard: image_label -> samples (the manifest's profile)
            for k, where, record, reason, label in progress(
                records, desc=f"package/{fmt}", unit="sample"
            ):
                stats = source_stats[k]
                stats["samples"] += 1
                if record is None:
                    summary.dropped += 1
                    summary.drop_reasons[reason] += 1
                    if len(summary.dropped_samples) < 100:
                        summary.dropped_samples.append((where, reason))
                    continue
                stats["kept"] += 1
                if summary.total % num == 0:
                    if writer is not None:
                        writer.close()
                        indexes.append(getattr(writer, "index", None))
                    path = staging.path / f"{len(writers):05d}.part"
                    writer = _new_writer(fmt, path, prefix, summary.total)
                    writers.append(writer)
                    staged.append(path)
                    labels.append(Counter())
                writer.write(record)
                labels[-1][label] += 1
                summary.total += 1
            if writer is not None:
                writer.close()
                indexes.append(getattr(writer, "index", None))
        except BaseException:
            if fmt == "kv" and writer is not None:
                with contextlib.suppress(Exception):
                    writer.abort()
            raise

        if summary.total == 0:
            names = ", ".join(summary.sources)
            if summary.dropped:
                reasons = ", ".join(f"{r} ({n})" for r, n in summary.drop_reasons.most_common(3))
                raise DataError(
                    f"{names}: no readable sample ({summary.dropped} dropped: {reasons})"
                )
            raise DataError(f"{names}: empty input (no samples to pack)")

        n = len(staged)
        shard_entries, moves = [], []
        for i, (path, index) in enumerate(zip(staged, indexes, strict=True)):
            count = min(num, summary.total - i * num)
            final = kv_name(prefix, i, n) if fmt == "kv" else shard_name(prefix, i, n)
            entry = {
                "file": final,
                "count": count,
                "start": i * num,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "label_counts": {str(c): n for c, n in sorted(labels[i].items())},
            }
            moves.append((path, tgt / final))
            if fmt == "tfrecord":
                index_name = shard_name(prefix, i, n, "index")
                index_path = staging.path / f"{i:05d}.index"
                index_path.write_bytes(format_index(index))
                entry["index"] = index_name
                entry["index_sha256"] = sha256_file(index_path)
                moves.append((index_path, tgt / index_name))
            shard_entries.append(entry)
            summary.shards.append(tgt / final)

        sources_meta = []
        for s, st in zip(sources, source_stats, strict=True):
            item = {"path": str(s.path.resolve()), "kind": s.kind}
            if s.kind == "gt":
                item.update(sha256=sha256_file(s.path), samples=st["samples"], kept=st["kept"])
            sources_meta.append(item)
        manifest = build_manifest(
            fmt, prefix, shard_entries, _class_names(sources), sources_meta, summary.dropped
        )
        # commit: journalled, so a kill at any point leaves the old set or the new one
        staged_manifest = write_manifest(staging.path, manifest)
        names = [(a.name, b.name) for a, b in moves]
        names.append((staged_manifest.name, manifest_path(tgt, prefix).name))
        new_names = {b for _, b in names}
        stale = [f for f in _old_files(tgt, prefix) if f not in new_names]
        commit(staging.path, tgt, names, stale)
        summary.manifest = manifest_path(tgt, prefix)
    return summary
