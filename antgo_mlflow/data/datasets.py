"""Shard datasets registered in DATASETS: ``TFDataset`` and ``KVDataset`` (map-style, random access
through the index) and ``TFStreamDataset`` (iterable, for shards without an index).

Each entry of ``data_folder`` / ``data_path_list`` (antgo used both names) is one *source*:
a folder of shards, a shard prefix (``/data/train``), a ``-tfrecord``/``-kvrecord`` file, or a
``-manifest.json``; antgo's trailing ``*`` is accepted. A folder with manifests uses exactly the
shards they list; a folder without (antgo's shards) uses every shard file in it and checks that
no shard of a ``-of-N`` set is missing. ``ratios`` gives one mixing weight per source, used by
``samplers.build_sampler`` for per-sample mixing.

A sample is the decoded record (``records.decode_sample``) plus ``label`` = ``image_label``.
The image stays encoded bytes unless ``description['image'] == 'numpy'``, which decodes it to an
HWC uint8 RGB array (``decode.decode_image``). With a ``description`` only its keys are decoded,
as antgo did. Then ``pipeline`` runs (transforms from TRANSFORMS), then ``inputs_def['fields']``
keeps (and ``alias`` renames) the listed fields.

A missing ``-index`` file is an error naming the file (pass ``rebuild_index=True`` to rebuild it
beside the shard, or use ``TFStreamDataset``). Every record read is checked against its CRCs: a
corrupt record raises ShardError naming the file and record number. Files are opened lazily
once per process, so DataLoader workers each use their own handles.
"""

from __future__ import annotations

import bisect
import copy
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from antgo_mlflow.data.decode import decode_image
from antgo_mlflow.data.manifest import SHARD_RE
from antgo_mlflow.data.records import decode_features, parse_example
from antgo_mlflow.errors import ConfigError, DataError, ShardError
from antgo_mlflow.registry import DATASETS

_SUFFIX = {"tfrecord": "-tfrecord", "kv": "-kvrecord"}


@dataclass
class ShardSource:
    """One data source: its shard files (in order), their manifests if any, and sample counts.

    ``shard_info`` holds, per file, its manifest entry (count, sha256, label counts) when a
    manifest describes it, else None: a shard file listed on its own is matched to the
    ``<prefix>-manifest.json`` beside it, if that lists a file of the same name and size.
    """

    entry: str
    files: list[Path]
    manifests: list[dict[str, Any]] = field(default_factory=list)
    manifest_paths: list[Path] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    shard_info: list[dict[str, Any] | None] = field(default_factory=list)
    sidecar: Path | None = None  # the manifest a lone shard file was matched to

    def __post_init__(self):
        if not self.shard_info:
            self.shard_info = [None] * len(self.files)


def _sibling_shard_info(path: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The manifest beside shard file ``path`` and its entry for this file (else None, None)."""
    from antgo_mlflow.data.manifest import MANIFEST_SUFFIX, read_manifest

    m = SHARD_RE.match(path.name)
    if not m:
        return None, None
    manifest_file = path.parent / f"{m['prefix']}{MANIFEST_SUFFIX}"
    if not manifest_file.is_file():
        return None, None
    try:
        manifest = read_manifest(manifest_file)
        size = path.stat().st_size
    except (ShardError, OSError):  # a broken sidecar only costs the profile, not the run
        return None, None
    for shard in manifest["shards"]:
        if shard["file"] == path.name and int(shard.get("bytes", size)) == size:
            return manifest_file, shard
    return None, None


def _entries(data_folder, data_path_list) -> list[str]:
    out: list[str] = []
    for value in (data_folder, data_path_list):
        if value is None:
            continue
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        out.extend(str(v) for v in value)
    if not out:
        raise ConfigError(
            "dataset: give data_folder or data_path_list (shard folders, prefixes, files or "
            "manifests)"
        )
    return out


def _shard_match(name: str) -> re.Match | None:
    """The shard-name match of a data shard (``-tfrecord`` / ``-kvrecord``), not of an index."""
    m = SHARD_RE.match(name)
    return m if m and m["kind"] != "index" else None


def _complete_set(files: list[Path], where: str) -> list[Path]:
    """Sort antgo-style shard files and check that every ``-of-N`` set is complete."""
    groups: dict[tuple[str, int], dict[int, Path]] = {}
    loose: list[Path] = []
    for f in files:
        m = _shard_match(f.name)
        if not m:
            loose.append(f)
            continue
        groups.setdefault((m["prefix"], int(m["n"])), {})[int(m["i"])] = f
    out = sorted(loose)
    for (prefix, n), members in sorted(groups.items()):
        for i in range(n):
            if i not in members:
                sample = next(iter(members.values()))
                name = f"{prefix}-{i:05d}-of-{n:05d}-{sample.name.rsplit('-', 1)[1]}"
                raise ShardError(f"{sample.parent / name}: missing (shard set incomplete, {where})")
        out.extend(members[i] for i in range(n))
    return out


def resolve_source(entry: str, fmt: str) -> ShardSource:
    """Turn one ``data_path_list`` entry into its shard files (see the module docstring)."""
    from antgo_mlflow.data.commit import finish_pending
    from antgo_mlflow.data.manifest import MANIFEST_SUFFIX, read_manifest, shard_files

    suffix = _SUFFIX[fmt]
    other = "KVDataset" if fmt == "tfrecord" else "TFDataset"
    path = Path(entry.rstrip("*") or ".").expanduser()
    finish_pending(path if path.is_dir() else path.parent)  # never read a half-committed set

    def from_manifests(paths: list[Path]) -> ShardSource:
        files, counts, manifests = [], [], []
        for m in paths:
            manifest = read_manifest(m)
            if manifest["format"] != fmt:
                raise ConfigError(f"{m}: holds {manifest['format']} shards; use {other}")
            files.extend(shard_files(m, manifest))
            counts.extend(int(s["count"]) for s in manifest["shards"])
            manifests.append(manifest)
        info = [shard for manifest in manifests for shard in manifest["shards"]]
        return ShardSource(entry, files, manifests, list(paths), counts, info)

    if path.name.endswith(MANIFEST_SUFFIX):
        return from_manifests([path])
    if path.is_file():
        if not path.name.endswith(suffix):
            raise ConfigError(f"{entry}: not a {suffix[1:]} shard file")
        manifest_file, shard = _sibling_shard_info(path)
        if shard is None:
            return ShardSource(entry, [path])
        return ShardSource(entry, [path], shard_info=[shard], sidecar=manifest_file)
    if path.is_dir():
        manifests = sorted(path.glob(f"*{MANIFEST_SUFFIX}"))
        manifests = [m for m in manifests if read_manifest(m)["format"] == fmt]
        if manifests:
            return from_manifests(manifests)
        files = [f for f in path.iterdir() if f.name.endswith(suffix) and f.is_file()]
        if not files:
            raise DataError(f"{entry}: no {suffix[1:]} shards in this folder")
        return ShardSource(entry, _complete_set(files, entry))
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    if manifest.is_file():
        return from_manifests([manifest])
    files = [f for f in path.parent.glob(f"{path.name}-*-of-*{suffix}") if _shard_match(f.name)]
    if not files:
        raise DataError(
            f"{entry}: no {suffix[1:]} shards found (expected a folder, a {suffix} file, a shard "
            f"prefix or a {MANIFEST_SUFFIX})"
        )
    return ShardSource(entry, _complete_set(files, entry))


def _build_pipeline(cfgs) -> Callable[[dict], dict] | None:
    if not cfgs:
        return None
    if callable(cfgs):
        return cfgs
    if all(callable(c) and not isinstance(c, dict) for c in cfgs):
        transforms = list(cfgs)
    else:
        try:
            from antgo_mlflow.data.transforms import build_pipeline
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("antgo_mlflow.data.transforms"):
                raise ConfigError(
                    "pipeline: transforms are not available (antgo_mlflow.data.transforms)"
                ) from exc
            raise
        return build_pipeline(list(cfgs))

    def run(sample):
        for t in transforms:
            sample = t(sample)
        return sample

    return run


class _Where:
    """Where a record lives, formatted only when an error message needs it."""

    __slots__ = ("path", "record")

    def __init__(self, path, record):
        self.path, self.record = path, record

    def __str__(self) -> str:
        return f"{self.path}: record {self.record}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _decode_sample_image(sample: dict, where) -> None:
    """Replace ``sample['image']`` (encoded bytes) by its HWC uint8 RGB array."""
    image = sample.get("image")
    if isinstance(image, bytes):
        try:
            sample["image"] = decode_image(image)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None


def _decode_images(parts: list[tuple[dict, Any]]) -> None:
    for sample, where in parts:
        _decode_sample_image(sample, where)


class _SampleMixin:
    """Record bytes -> the sample dict the Runner sees (decode, label, image, pipeline, fields)."""

    def _setup_sample(
        self,
        pipeline,
        inputs_def,
        description,
        weak_pipeline=None,
        strong_pipeline=None,
        auto_ext_info=None,
    ) -> None:
        self.description = dict(description) if description else None
        self._keys = None
        if self.description:
            keys = set(self.description)
            if "label" in keys:
                keys.add("image_label")
            self._keys = keys
        self._decode_numpy = bool(self.description and self.description.get("image") == "numpy")
        self.pipeline = _build_pipeline(pipeline)
        self.weak_pipeline = _build_pipeline(weak_pipeline)
        self.strong_pipeline = _build_pipeline(strong_pipeline)
        self.auto_ext_info = list(auto_ext_info or [])
        self._fields = self._alias = None
        if inputs_def:
            if not isinstance(inputs_def, dict) or "fields" not in inputs_def:
                raise ConfigError(
                    "inputs_def: expected a dict with 'fields' (and optional 'alias')"
                )
            self._fields = list(inputs_def["fields"])
            self._alias = list(inputs_def.get("alias") or self._fields)
            if len(self._alias) != len(self._fields):
                raise ConfigError("inputs_def.alias: needs one name per entry of 'fields'")

    def _make_sample(self, data: bytes, index: int, where: str):
        return self._finish_sample(self._decode_record(data, where), index)

    def _decode_record(self, data: bytes, where: str) -> dict:
        """Record bytes -> the decoded sample (image too), before ``pipeline``."""
        sample = self._parse_record(data, where)
        if self._decode_numpy:
            _decode_sample_image(sample, where)
        return sample

    def _parse_record(self, data: bytes, where: str) -> dict:
        """Record bytes -> the sample with its image still encoded."""
        description = self.description
        sample = decode_features(parse_example(data, self._keys), description)
        if "label" not in sample and "image_label" in sample:
            sample["label"] = sample["image_label"]
        if description:
            for k in description:  # a loop, not a list: this runs for every sample
                if k not in sample:
                    missing = [k for k in description if k not in sample]
                    present = sorted(k for k in parse_example(data) if not k.startswith("__"))
                    raise DataError(
                        f"{where}: description asks for {missing}; the record has {present}"
                    )
            if "image_label" not in description:
                sample.pop("image_label", None)
        return sample

    def _finish_sample(self, sample: dict, index: int):
        """``auto_ext_info``, the pipelines and ``inputs_def`` on a decoded sample."""
        for key in self.auto_ext_info:
            sample.setdefault(key, str(index))
        if self.weak_pipeline is None and self.strong_pipeline is None:  # _apply, inlined
            if self.pipeline is not None:
                sample = self.pipeline(sample)
            return sample if self._fields is None else self._arrange(sample)
        return self._apply(sample)

    def _arrange(self, sample):
        if self._fields is None:
            return sample
        out = {}
        for alias, name in zip(self._alias, self._fields, strict=True):
            if name not in sample:
                raise DataError(
                    f"inputs_def.fields: {name!r} is not in the sample (has {sorted(sample)})"
                )
            out[alias] = sample[name]
        return out

    def _apply(self, sample):
        if self.weak_pipeline is not None or self.strong_pipeline is not None:
            weak = self.weak_pipeline(copy.deepcopy(sample)) if self.weak_pipeline else sample
            strong = self.strong_pipeline(copy.deepcopy(weak)) if self.strong_pipeline else weak
            if self.pipeline is not None:
                weak, strong = self.pipeline(weak), self.pipeline(strong)
            return [self._arrange(weak), self._arrange(strong)]
        if self.pipeline is not None:
            sample = self.pipeline(sample)
        return self._arrange(sample)


def _check_unsupported(data_server, compression_type) -> None:
    if data_server:
        raise ConfigError(
            "data_server: RabbitMQ data streams are not supported; pack the data into shards "
            "(antgo tool package/tfrecord) and list them in data_path_list"
        )
    if compression_type not in (None, ""):
        raise ConfigError(f"compression_type: {compression_type!r} is not supported (only None)")


class _ShardDataset(_SampleMixin, Dataset):
    FORMAT = "tfrecord"

    def __init__(
        self,
        data_folder=None,
        data_path_list=None,
        pipeline=None,
        inputs_def=None,
        description=None,
        ratios: Sequence[float] | None = None,
        weak_pipeline=None,
        strong_pipeline=None,
        auto_ext_info=None,
        verify: bool = False,
        rebuild_index: bool = False,
        read_threads: int = 1,
        shuffle_queue_size=None,
        sample_num_equalizer=None,
        infinite=None,
        compression_type=None,
        data_server=None,
    ):
        _check_unsupported(data_server, compression_type)
        if not isinstance(read_threads, int) or isinstance(read_threads, bool) or read_threads < 1:
            raise ConfigError(f"read_threads: expected an integer >= 1, got {read_threads!r}")
        self.read_threads = read_threads
        self._pool: tuple[int, Any] | None = None  # (pid, ThreadPoolExecutor), made on first use
        self.sources = [
            resolve_source(e, self.FORMAT) for e in _entries(data_folder, data_path_list)
        ]
        if verify:
            from antgo_mlflow.data.manifest import verify_shards

            for s in self.sources:
                for manifest_path in s.manifest_paths:
                    verify_shards(manifest_path)
        self.readers: list[Any] = []
        source_sizes = []
        for source in self.sources:
            size = 0
            for k, f in enumerate(source.files):
                reader = self._open_reader(f, rebuild_index)
                if source.counts and source.counts[k] != len(reader):
                    raise ShardError(
                        f"{f}: has {len(reader)} records but its manifest says {source.counts[k]}"
                    )
                self.readers.append(reader)
                size += len(reader)
            source_sizes.append(size)
        self.source_sizes = source_sizes
        counts = [len(r) for r in self.readers]
        self._ends = np.cumsum(counts, dtype=np.int64).tolist()  # lists: bisect beats numpy here
        self._starts = [e - c for e, c in zip(self._ends, counts, strict=True)]
        self._len = int(self._ends[-1]) if counts else 0
        if ratios is not None and len(ratios) != len(self.sources):
            raise ConfigError(
                f"ratios: {len(ratios)} values for {len(self.sources)} data sources (one per entry)"
            )
        self.ratios = list(ratios) if ratios is not None else None
        self._setup_sample(
            pipeline, inputs_def, description, weak_pipeline, strong_pipeline, auto_ext_info
        )

    def _open_reader(self, path: Path, rebuild_index: bool):
        raise NotImplementedError

    def __len__(self) -> int:
        return self._len

    def locate(self, index: int) -> tuple[Any, int]:
        """``(reader, record number in that shard)`` for global ``index``."""
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range for {self._len} samples")
        shard = bisect.bisect_right(self._ends, index)
        return self.readers[shard], index - self._starts[shard]

    def read_record(self, index: int) -> bytes:
        """The serialized record of sample ``index`` (bytes-like)."""
        reader, local = self.locate(index)
        return reader.read(local)

    def __getitem__(self, index):
        reader, local = self.locate(int(index))
        return self._make_sample(reader.read(local), index, _Where(reader.path, local))

    def __getitems__(self, indices) -> list:
        """The samples of a batch of indices, in order (DataLoader calls this once per batch)."""
        if type(self).__getitem__ is not _ShardDataset.__getitem__ or (
            type(self).locate is not _ShardDataset.locate
        ):  # a subclass's own methods win
            return [self[i] for i in indices]
        if self.read_threads > 1 and self._decode_numpy and len(indices) > 1:
            return self._getitems_threaded(indices)
        # ``locate`` inlined: this loop runs for every sample a DataLoader reads.
        ends, starts, readers, n = self._ends, self._starts, self.readers, self._len
        make = self._make_sample
        out = []
        for index in indices:
            i = int(index)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"index {int(index)} out of range for {n} samples")
            shard = bisect.bisect_right(ends, i)
            reader, local = readers[shard], i - starts[shard]
            out.append(make(reader.read(local), index, _Where(reader.path, local)))
        return out

    def _getitems_threaded(self, indices) -> list:
        """``__getitems__`` with ``read_threads``: records are read and parsed here, their images
        decoded by the threads, each a contiguous part of the batch in a tight loop (OpenCV
        releases the GIL, and a thread that only decodes rarely waits for it); the pipelines
        then run here, in index order, so random transforms draw from their generators in the
        same order as with one thread."""
        parsed = []
        for index in indices:
            reader, local = self.locate(int(index))
            where = _Where(reader.path, local)
            parsed.append((self._parse_record(reader.read(local), where), where))
        pool = self._thread_pool()
        size = -(-len(parsed) // self.read_threads)
        futures = [
            pool.submit(_decode_images, parsed[k : k + size]) for k in range(0, len(parsed), size)
        ]
        for future in futures:
            future.result()  # the first failing part raises, naming its record
        return [
            self._finish_sample(sample, index)
            for (sample, _), index in zip(parsed, indices, strict=True)
        ]

    def _thread_pool(self):
        pid = os.getpid()
        if self._pool is None or self._pool[0] != pid:  # threads do not survive a fork
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(self.read_threads, thread_name_prefix="antgo-read")
            self._pool = (pid, pool)
        return self._pool[1]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pool"] = None  # an executor does not pickle; each process makes its own
        return state

    @property
    def class_names(self) -> list[str]:
        """Class names from the first manifest that has them."""
        for s in self.sources:
            for manifest in s.manifests:
                if manifest.get("class_names"):
                    return list(manifest["class_names"])
        return []

    @property
    def digest(self) -> str:
        """A content digest (from the manifests' digests, or file names and sizes without one)."""
        import hashlib

        h = hashlib.sha256(self.FORMAT.encode())
        for s in self.sources:
            if s.manifests:
                for manifest in s.manifests:
                    h.update(manifest["digest"].encode())
            else:
                for f in s.files:
                    h.update(f"{f.name}:{f.stat().st_size};".encode())
        return h.hexdigest()[:16]


@DATASETS.register_module()
class TFDataset(_ShardDataset):
    """Map-style dataset over TFRecord shards (random access through the ``-index`` files).

    Args:
        data_folder / data_path_list: one entry or a list; each a folder, a shard prefix, a
            ``-tfrecord`` file or a ``-manifest.json`` (antgo's two argument names).
        pipeline: transform configs (TRANSFORMS) or callables ``sample -> sample``.
        inputs_def: ``{'fields': [...], 'alias': [...]}``: keep (and rename) these fields.
        description: antgo's ``{key: 'numpy'|'str'|'int'|'float'|'dict'|'byte'}``; only these
            keys are decoded; ``'image': 'numpy'`` decodes the image to HWC uint8 RGB.
        ratios: one mixing weight per entry (used by ``samplers.build_sampler``).
        weak_pipeline, strong_pipeline: semi-supervised pair (returns ``[weak, strong]``).
        auto_ext_info: keys set to the sample index (as a string) when absent.
        verify: check every shard's sha256 against its manifest at construction.
        rebuild_index: rebuild a missing ``-index`` beside its shard instead of failing.
        read_threads: threads that decode the images of one batch (default 1; used with
            ``description={'image': 'numpy'}``). Decoding runs in parallel (OpenCV releases
            the GIL); reading, parsing and ``pipeline`` stay in one thread, in index order, so
            seeded runs give the same samples. Worth it with ``num_workers=0`` or fewer
            workers than cores: threads pass no data between processes, while DataLoader
            workers copy every batch through shared memory.
        shuffle_queue_size, sample_num_equalizer, infinite: accepted for antgo configs and
            ignored (map-style reading shuffles globally; samplers pad ranks).
        compression_type, data_server: only ``None`` is supported.

    Example:
        >>> ds = TFDataset(data_path_list=["shards/train"], description={"image": "numpy"})
    """

    FORMAT = "tfrecord"

    def _open_reader(self, path: Path, rebuild_index: bool):
        from antgo_mlflow.data.tfrecord import TFRecordShardReader, build_index, index_path_for

        if not path.is_file():
            raise ShardError(f"{path}: no such shard file")
        if rebuild_index and not index_path_for(path).is_file():
            build_index(path)
        return TFRecordShardReader(path)


@DATASETS.register_module()
class KVDataset(_ShardDataset):
    """Map-style dataset over LMDB shards (``package/kv``); arguments as ``TFDataset``."""

    FORMAT = "kv"

    def _open_reader(self, path: Path, rebuild_index: bool):
        from antgo_mlflow.data.lmdb_store import LMDBShardReader

        return LMDBShardReader(path)


@DATASETS.register_module()
class TFStreamDataset(_SampleMixin, IterableDataset):
    """Iterable dataset reading TFRecord shards front to back; no index needed.

    Records are dealt round-robin to ranks x DataLoader workers by their position, so every
    record is yielded exactly once per epoch whatever the number of files. ``shuffle_queue_size``
    > 0 shuffles within a buffer (seeded by ``seed`` and the epoch, see ``set_epoch``).
    Other arguments as ``TFDataset``.
    """

    def __init__(
        self,
        data_folder=None,
        data_path_list=None,
        pipeline=None,
        inputs_def=None,
        description=None,
        shuffle_queue_size: int = 0,
        seed: int = 0,
        weak_pipeline=None,
        strong_pipeline=None,
        auto_ext_info=None,
        compression_type=None,
        data_server=None,
    ):
        _check_unsupported(data_server, compression_type)
        self.sources = [
            resolve_source(e, "tfrecord") for e in _entries(data_folder, data_path_list)
        ]
        self.files = [f for s in self.sources for f in s.files]
        self.shuffle_queue_size = int(shuffle_queue_size or 0)
        self.seed, self.epoch = int(seed), 0
        self._setup_sample(
            pipeline, inputs_def, description, weak_pipeline, strong_pipeline, auto_ext_info
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _records(self) -> Iterator[tuple[int, str, bytes]]:
        from antgo_mlflow.data.samplers import _dist_info
        from antgo_mlflow.data.tfrecord import iter_frames

        worlds, rank = _dist_info(None, None)
        info = torch.utils.data.get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        step, me = worlds * workers, rank * workers + wid
        position = 0
        for f in self.files:
            for i, (_, _, data) in enumerate(iter_frames(f)):
                if position % step == me:
                    yield position, f"{f}: record {i}", data
                position += 1

    def __iter__(self):
        items = self._records()
        if self.shuffle_queue_size > 0:
            items = _buffer_shuffle(items, self.shuffle_queue_size, [self.seed, self.epoch])
        for position, where, data in items:
            yield self._make_sample(data, position, where)


def _buffer_shuffle(items, size: int, seed) -> Iterator:
    rng = np.random.default_rng(seed)
    buffer = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


__all__ = ["KVDataset", "ShardSource", "TFDataset", "TFStreamDataset", "resolve_source"]
