"""A run's ``mlflow.data`` inputs: one per shard set it trains, validates or tests on.

What the MLflow UI's Datasets panel shows for each: the set's name and digest, its source (the
``-manifest.json`` or shard path, as a ``local`` source the UI can copy), its schema (the records'
fields and types) and its profile (samples, shards, labelled/unlabelled samples, class counts).
Shard datasets are described by ``antgo_mlflow.data.profile``; other datasets by what they expose
(``manifests`` dicts with ``name``/``digest``/``path``, ``sources`` paths) or by the config's
data paths.

Example:
    >>> client.log_inputs(run_id, datasets=dataset_inputs(dataset, cfg.data.train, "train", "train"))
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag

from antgo_mlflow.data.profile import SetProfile, profile_sets

_DATA_PATH_KEYS = (
    "data_path_list",
    "data_path",
    "data_folder",
    "data_root",
    "dir",
    "root",
    "path",
    "ann_file",
    "src",
    "gt_file",
)
#: Classes listed by name in a profile's ``class_counts`` (the UI shows one line per key).
MAX_CLASSES_SHOWN = 100


class ShardSetDataset(MetaDataset):
    """A shard set as MLflow records it: source, digest, schema and a flat profile dict."""

    def __init__(self, source, name: str, digest: str, schema=None, profile: dict | None = None):
        self._profile = dict(profile or {})
        super().__init__(source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict:
        """Samples, shards, labelled/unlabelled counts, class counts (flat: the UI lists keys)."""
        return self._profile

    def to_dict(self) -> dict[str, str]:
        config = super().to_dict()
        if self._profile:
            config["profile"] = json.dumps(self._profile)
        return config


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_source(uri: str):
    """An ``mlflow.data`` source for ``uri``: ``local`` for a path, else what MLflow resolves."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if "://" not in uri:  # a path: MLflow's ``local`` source wants it absolute
        uri = str(Path(uri).expanduser().absolute())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return resolve_dataset_source(uri)
    except Exception:  # not a URI any registered source understands
        return CodeDatasetSource({"antgo.source": uri})


def _column_type(kind: str):
    from mlflow.types import DataType
    from mlflow.types.schema import Array

    scalars = {
        "string": DataType.string,
        "long": DataType.long,
        "float": DataType.float,
        "boolean": DataType.boolean,
        "binary": DataType.binary,
        "json": DataType.string,  # dicts and string lists are JSON text in the record
    }
    if kind in scalars:
        return scalars[kind]
    if kind.startswith("array<"):
        dtype = kind[len("array<") : -1]
        items = {"float32": DataType.float, "float64": DataType.double, "int64": DataType.long}
        return Array(items.get(dtype, DataType.integer))
    return DataType.string


def set_schema(profile: SetProfile):
    """The set's fields as an MLflow column schema (optional = missing in some records)."""
    from mlflow.types import ColSpec, Schema

    if not profile.fields:
        return None
    return Schema(
        [
            ColSpec(_column_type(kind), name, required=name not in profile.optional)
            for name, kind in profile.fields.items()
        ]
    )


def set_profile(profile: SetProfile) -> dict[str, Any]:
    """The flat profile dict of a set (what the UI lists as ``key: value``)."""
    out: dict[str, Any] = {"samples": profile.samples, "shards": profile.shards}
    out["format"] = profile.format
    counts = profile.label_counts
    if counts is not None:
        labelled = {k: v for k, v in sorted(counts.items()) if k >= 0}
        out["labelled"] = sum(labelled.values())
        out["unlabelled"] = profile.unlabelled
        out["classes"] = len(labelled)
        names = profile.class_names

        def label(k: int) -> str:
            return f"{names[k]} ({k})" if k < len(names) and names[k] != str(k) else str(k)

        shown = [f"{label(k)}: {n}" for k, n in list(labelled.items())[:MAX_CLASSES_SHOWN]]
        if len(labelled) > MAX_CLASSES_SHOWN:
            shown.append(f"(+{len(labelled) - MAX_CLASSES_SHOWN} more classes)")
        out["class_counts"] = ", ".join(shown)
    else:
        out["labels"] = "not counted (no label counts in the manifest; too many records to read)"
    if profile.fields:
        out["fields"] = len(profile.fields)
    return out


def _config_paths(data_cfg: Any) -> list[str]:
    paths: list[str] = []
    if isinstance(data_cfg, Mapping):
        for key, value in data_cfg.items():
            if key in _DATA_PATH_KEYS:
                items = value if isinstance(value, (list, tuple)) else [value]
                paths.extend(str(v) for v in items if isinstance(v, (str, os.PathLike)))
            elif isinstance(value, Mapping) or (
                isinstance(value, (list, tuple)) and key not in ("pipeline",)
            ):
                for sub in value.values() if isinstance(value, Mapping) else value:
                    paths.extend(_config_paths(sub))
    return paths


def _file_fingerprint(path: str) -> Any:
    p = Path(path)
    try:
        if p.is_file():
            st = p.stat()
            return [path, st.st_size, int(st.st_mtime)]
        if p.is_dir():
            return [
                path,
                sorted((f.name, f.stat().st_size) for f in p.iterdir() if f.is_file())[:1000],
            ]
    except OSError:
        pass
    return [path]


def _input(ds: MetaDataset, context: str) -> DatasetInput:
    return DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


def shard_set_datasets(dataset: Any) -> list[ShardSetDataset]:
    """One ShardSetDataset per shard set of ``dataset`` (empty when it is no shard dataset)."""
    return [
        ShardSetDataset(
            dataset_source(p.uri),
            name=p.name,
            digest=p.digest,
            schema=set_schema(p),
            profile=set_profile(p),
        )
        for p in profile_sets(dataset) or []
    ]


def _other_datasets(dataset: Any, data_cfg: Mapping | None, split: str) -> list[MetaDataset]:
    """Datasets that are not shard readers: their ``manifests`` dicts, else the config's paths."""
    out = []
    sources = [
        str(s) for s in getattr(dataset, "sources", None) or [] if isinstance(s, (str, os.PathLike))
    ]
    for i, manifest in enumerate(getattr(dataset, "manifests", None) or []):
        if not isinstance(manifest, Mapping):
            continue
        uri = str(
            manifest.get("path") or manifest.get("uri") or (sources[i] if i < len(sources) else "")
        )
        if not uri:
            continue
        name = str(manifest.get("name") or manifest.get("prefix") or Path(uri).name or split)
        digest = str(manifest.get("digest") or _digest(manifest))[:36]
        out.append(MetaDataset(dataset_source(uri), name=name, digest=digest))
    if out:
        return out
    paths = sources or _config_paths(data_cfg)
    type_name = (data_cfg or {}).get("type") if isinstance(data_cfg, Mapping) else None
    try:
        count = len(dataset)
    except TypeError:
        count = None
    digest = _digest({"paths": [_file_fingerprint(p) for p in paths], "cfg": data_cfg, "n": count})
    if paths:
        source = dataset_source(paths[0])
    else:  # nothing path-like to point at: say where it is configured
        from mlflow.data.code_dataset_source import CodeDatasetSource

        source = CodeDatasetSource({"antgo.source": f"config data.{split}"})
    profile = {"samples": count} if count is not None else {}
    return [
        ShardSetDataset(
            source, name=f"{type_name or 'dataset'}:{split}", digest=digest, profile=profile
        )
    ]


def run_datasets(dataset: Any, data_cfg: Mapping | None, split: str) -> list[MetaDataset]:
    """The ``mlflow.data`` datasets describing ``dataset`` (config ``data_cfg``, split name)."""
    return shard_set_datasets(dataset) or _other_datasets(dataset, data_cfg, split)


def dataset_inputs(
    dataset: Any, data_cfg: Mapping | None, split: str, context: str
) -> list[DatasetInput]:
    """``mlflow.data`` inputs for ``dataset``, tagged ``mlflow.data.context=<context>``."""
    return [_input(ds, context) for ds in run_datasets(dataset, data_cfg, split)]
