"""What a shard dataset holds, per shard set: where it is, its digest, fields, samples and labels.

Training runs log this as their ``mlflow.data`` inputs (one per shard set) and check it before the
first step (samples without a class label). One :class:`SetProfile` per ``data_path_list`` entry:

* ``uri``: the ``-manifest.json`` that describes the set, else the shard file, folder or prefix
  (absolute), so the MLflow UI shows a path a person can open;
* ``digest``: the manifest's digest of the shards used (sha256 and count per shard, as
  ``manifest.compute_digest``), or names and sizes of the files for shards without a manifest;
* ``fields``: field -> type of the records (``string``, ``long``, ``float``, ``binary``,
  ``array<float32>``, ``json``...), read from the first few records;
* ``label_counts``: ``image_label`` -> samples (-1 = no class label) from the manifest's
  per-shard counts, or, for shards packed before manifests had them, by reading every record's
  label (~50 us a record) up to ``scan_limit`` records per dataset; beyond that: unknown (None).

Datasets other than the shard readers may offer ``profile_sets() -> list[SetProfile]``.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Records read for their labels per dataset when manifests carry no label counts (~10 s).
SCAN_LIMIT = 200_000
#: Records whose fields make up a set's schema (a field missing in some is optional).
SCHEMA_RECORDS = 8


@dataclass
class SetProfile:
    """One shard set of a dataset (see the module docstring)."""

    uri: str
    name: str
    digest: str
    samples: int | None
    fields: dict[str, str] = field(default_factory=dict)
    optional: set[str] = field(default_factory=set)
    label_counts: dict[int, int] | None = None
    class_names: list[str] = field(default_factory=list)
    format: str = "tfrecord"
    shards: int = 0

    @property
    def unlabelled(self) -> int | None:
        """Samples without a class label (``image_label`` < 0), None when unknown."""
        if self.label_counts is None:
            return None
        return sum(n for label, n in self.label_counts.items() if label < 0)


def _value_type(value: Any) -> str:
    import numpy as np

    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary"
    if isinstance(value, np.ndarray):
        return f"array<{value.dtype.name}>"
    return "json"  # dicts, string lists: JSON text in the record


def record_fields(records: Iterable[bytes]) -> tuple[dict[str, str], set[str]]:
    """``({field: type}, optional fields)`` over ``records`` (serialized antgo records)."""
    from antgo_mlflow.data.records import decode_features, parse_example

    fields: dict[str, str] = {}
    seen: list[set[str]] = []
    for data in records:
        sample = decode_features(parse_example(data))
        seen.append(set(sample))
        for key, value in sample.items():
            fields.setdefault(key, _value_type(value))
    optional = {k for k in fields if any(k not in s for s in seen)}
    return dict(sorted(fields.items())), optional


def _count_labels(records: Iterable[bytes]) -> dict[int, int]:
    from antgo_mlflow.data.pack import record_label

    return dict(sorted(Counter(record_label(data) for data in records).items()))


def _manifest_labels(info: list[dict[str, Any] | None]) -> dict[int, int] | None:
    """Label counts summed from manifest entries, None if any entry has none."""
    total: Counter = Counter()
    for shard in info:
        if shard is None or not isinstance(shard.get("label_counts"), dict):
            return None
        try:
            total.update({int(k): int(v) for k, v in shard["label_counts"].items()})
        except (TypeError, ValueError):  # a hand-edited manifest: fall back to reading
            return None
    return dict(sorted(total.items()))


def _digest(fmt: str, files: list[Path], info: list[dict[str, Any] | None]) -> str:
    from antgo_mlflow.data.manifest import compute_digest

    if info and all(s is not None and "sha256" in s for s in info):
        return compute_digest(fmt, info)  # the manifest's own digest when the whole set is used
    h = hashlib.sha256(fmt.encode())
    for f in files:
        try:
            h.update(f"{f.name}:{f.stat().st_size};".encode())
        except OSError:
            h.update(f"{f.name}:?;".encode())
    return h.hexdigest()[:16]


def _sidecar(source) -> dict[str, Any] | None:
    """The manifest a lone shard file was matched to (checked when the source was resolved)."""
    if source.sidecar is None:
        return None
    from antgo_mlflow.data.manifest import read_manifest

    try:
        return read_manifest(source.sidecar)
    except Exception:  # changed since: the profile just loses its name and class names
        return None


def _uri_and_name(source) -> tuple[str, str]:
    """Where a set is (its manifest when one describes exactly these shards) and a short name."""
    from antgo_mlflow.data.manifest import MANIFEST_SUFFIX

    manifest = None
    if len(source.manifest_paths) == 1:
        manifest = Path(source.manifest_paths[0])
    elif source.sidecar is not None and len((_sidecar(source) or {}).get("shards", [])) == 1:
        manifest = Path(source.sidecar)  # the one shard file is the whole set
    if manifest is not None:
        return str(manifest.resolve()), manifest.name[: -len(MANIFEST_SUFFIX)]
    if len(source.files) == 1:
        path = Path(source.files[0])
        return str(path.resolve()), path.name
    path = Path(source.entry.rstrip("*") or ".").expanduser()
    return str(path.resolve()), path.name


def _class_names(source) -> list[str]:
    for manifest in [*source.manifests, _sidecar(source) or {}]:
        if manifest.get("class_names"):
            return [str(n) for n in manifest["class_names"]]
    return []


def _first(records: Iterator[bytes], n: int) -> list[bytes]:
    out = []
    for data in records:
        out.append(bytes(data))
        if len(out) >= n:
            break
    return out


def _reader_records(readers: list) -> Iterator[bytes]:
    for reader in readers:
        for i in range(len(reader)):
            yield reader.read(i)


def _frames(files: list[Path]) -> Iterator[bytes]:
    from antgo_mlflow.data.tfrecord import iter_frames

    for f in files:
        for _, _, data in iter_frames(f):
            yield data


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def profile_sets(dataset: Any, scan_limit: int = SCAN_LIMIT) -> list[SetProfile] | None:
    """One SetProfile per shard set of ``dataset``; None when it is not a shard dataset.

    Computed once per dataset object (the label check and the MLflow inputs share it).

    Example:
        >>> [p.label_counts for p in profile_sets(TFDataset(data_path_list=["shards/train"]))]
        [{0: 40, 1: 38, -1: 2}]
    """
    try:
        return _cache[dataset]
    except (KeyError, TypeError):  # TypeError: an object that takes no weak reference
        pass
    result = _profile_sets(dataset, scan_limit)
    try:
        _cache[dataset] = result
    except TypeError:
        pass
    return result


def _profile_sets(dataset: Any, scan_limit: int) -> list[SetProfile] | None:
    own = getattr(dataset, "profile_sets", None)
    if callable(own):
        return own()
    sources = getattr(dataset, "sources", None)
    if not sources or not all(hasattr(s, "files") and hasattr(s, "shard_info") for s in sources):
        return None
    readers = list(getattr(dataset, "readers", None) or [])
    fmt = getattr(dataset, "FORMAT", "tfrecord")
    budget = scan_limit
    out, start = [], 0
    for source in sources:
        mine = readers[start : start + len(source.files)] if readers else []
        start += len(source.files)
        if mine:
            samples = sum(len(r) for r in mine)
        elif all(s is not None for s in source.shard_info):
            samples = sum(int(s["count"]) for s in source.shard_info)
        else:
            samples = None
        records = _reader_records(mine) if mine else _frames(source.files)
        fields, optional = record_fields(_first(records, SCHEMA_RECORDS))
        labels = _manifest_labels(source.shard_info)
        if labels is None and mine and samples is not None and samples <= budget:
            labels = _count_labels(_reader_records(mine))
            budget -= samples
        uri, name = _uri_and_name(source)
        out.append(
            SetProfile(
                uri=uri,
                name=name,
                digest=_digest(fmt, list(source.files), list(source.shard_info)),
                samples=samples,
                fields=fields,
                optional=optional,
                label_counts=labels,
                class_names=_class_names(source),
                format=fmt,
                shards=len(source.files),
            )
        )
    return out


def label_counts(dataset: Any, scan_limit: int = SCAN_LIMIT) -> dict[int, int] | None:
    """``image_label`` -> samples over the whole dataset; None when unknown."""
    sets = profile_sets(dataset, scan_limit)
    if not sets or any(s.label_counts is None for s in sets):
        return None
    total: Counter = Counter()
    for s in sets:
        total.update(s.label_counts)
    return dict(sorted(total.items()))


def where(sets: list[SetProfile]) -> str:
    """The sets' locations as one short text (for error messages)."""
    uris = [s.uri for s in sets]
    return uris[0] if len(uris) == 1 else f"{uris[0]} (+{len(uris) - 1} more)"


__all__ = ["SCAN_LIMIT", "SetProfile", "label_counts", "profile_sets", "record_fields", "where"]
