"""Data registrations of a project: ``add train/label|train/unlabel|val|test``, ``del``, and a helper
that logs the registered data as ``mlflow.data`` inputs of a training run.

A registration is the experiment tag ``antgo.data.<split>.<tag>`` holding JSON
``{split, tag, address, kind, num, digest, added_by, added_at}``. ``address`` is either

* a shard prefix (``/data/train`` for ``/data/train-00000-of-00002-tfrecord`` …, or the
  ``<prefix>-manifest.json`` itself): ``antgo_mlflow.data.manifest.verify_shards`` checks every
  shard and index it lists (size + sha256); ``digest`` is the sha256 of the manifest file; or
* a standard GT JSON (or a folder holding ``annotation.json``), validated against schema 1;
  ``digest`` is the sha256 of the JSON file.

``train/label`` and ``train/unlabel`` hold any number of tags; ``val`` and ``test`` hold one
registration each (as in antgo, adding another replaces it).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.project.projects import (
    DATA_PREFIX,
    check_name,
    delete_tag,
    get_client,
    get_project,
    utc_now,
    whoami,
)

MANIFEST_SUFFIX = "-manifest.json"
SPLITS = ("train/label", "train/unlabel", "val", "test")
SINGLE_SPLITS = ("val", "test")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UsageError(f"{split!r}: no such data split (choose {', '.join(SPLITS)})")
    return split


def _check_shards(prefix: str) -> tuple[str, int | None]:
    """Verify shards + index + manifest at ``prefix``; returns (manifest sha256, sample count)."""
    from antgo_mlflow.data.manifest import MANIFEST_SUFFIX, sha256_file, verify_shards

    manifest = verify_shards(prefix)  # ShardError names the missing/corrupt file
    total = manifest.get("total")
    return sha256_file(prefix + MANIFEST_SUFFIX), total if isinstance(total, int) else None


def inspect_address(address: str) -> dict[str, Any]:
    """Check that ``address`` holds data; returns ``{address, kind, num, digest}``."""
    if not address:
        raise UsageError("--address is required (a shard prefix or a GT JSON)")
    if "://" in address:
        raise DataError(f"--address={address}: only local paths can be checked and registered")
    path = Path(address).expanduser().absolute()
    if path.name.endswith(MANIFEST_SUFFIX):
        path = path.with_name(path.name[: -len(MANIFEST_SUFFIX)])
    gt_file = path / "annotation.json" if path.is_dir() else path
    if path.suffix == ".json" or path.is_dir():
        if not gt_file.is_file():
            raise DataError(f"--address={address}: no such GT file {gt_file}")
        from antgo_mlflow.data.manifest import sha256_file
        from antgo_mlflow.gt import load_gt

        samples = load_gt(gt_file, validate=True)
        return {
            "address": str(gt_file),
            "kind": "gt",
            "num": len(samples),
            "digest": sha256_file(gt_file),
        }
    digest, num = _check_shards(str(path))
    return {"address": str(path), "kind": "shards", "num": num, "digest": digest}


def add_data(project: str, split: str, address: str, tag: str, num: int | None = None) -> dict:
    """Register data ``address`` under ``split``/``tag`` on ``project`` after checking it."""
    _check_split(split)
    check_name(tag, "--tags")
    client = get_client()
    experiment = get_project(project, client)
    info = inspect_address(address)
    if num is not None:
        if num < 0:
            raise UsageError(f"--num={num}: must be >= 0")
        if info["num"] is not None and num != info["num"]:
            raise DataError(f"--num={num}: {info['address']} holds {info['num']} samples")
    record = {
        "split": split,
        "tag": tag,
        **info,
        "num": info["num"] if info["num"] is not None else num,
        "added_by": whoami(),
        "added_at": utc_now(),
    }
    if split in SINGLE_SPLITS:
        for key in list(experiment.tags):
            if key.startswith(f"{DATA_PREFIX}{split}.") and key != f"{DATA_PREFIX}{split}.{tag}":
                client.delete_experiment_tag(experiment.experiment_id, key)
    client.set_experiment_tag(
        experiment.experiment_id, f"{DATA_PREFIX}{split}.{tag}", json.dumps(record, sort_keys=True)
    )
    return record


def delete_data(project: str, split: str, tag: str) -> dict:
    """Remove registration ``split``/``tag``; error if it does not exist."""
    _check_split(split)
    check_name(tag, "--tags")
    client = get_client()
    experiment = get_project(project, client)
    key = f"{DATA_PREFIX}{split}.{tag}"
    if key not in experiment.tags:
        have = ", ".join(r["tag"] for r in list_data(project, client).get(split, [])) or "none"
        raise UsageError(
            f"--tags={tag}: project {project} has no {split} data with that tag (have: {have})"
        )
    record = json.loads(experiment.tags[key])
    delete_tag(client, experiment, key)
    return record


def list_data(project: str, client=None) -> dict[str, list[dict]]:
    """``{split: [registration, ...]}`` of the project, every split present (maybe empty)."""
    client = client or get_client()
    experiment = get_project(project, client)
    out: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for key, value in sorted(experiment.tags.items()):
        if not key.startswith(DATA_PREFIX):
            continue
        try:
            record = json.loads(value)
        except json.JSONDecodeError:
            continue
        if record.get("split") in out:
            out[record["split"]].append(record)
    return out


def project_datasets(project: str, splits: tuple[str, ...] = SPLITS, client=None) -> list:
    """The registrations as ``mlflow.data`` datasets: ``[(split, MetaDataset), ...]``."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    out = []
    for split, records in list_data(project, client).items():
        if split not in splits:
            continue
        for record in records:
            with warnings.catch_warnings():
                # Two local-path sources are registered in MLflow; both are the same class.
                warnings.simplefilter("ignore", UserWarning)
                source = resolve_dataset_source(record["address"])
            dataset = MetaDataset(
                source, name=f"{split}:{record['tag']}", digest=record["digest"][:32]
            )
            out.append((split, dataset))
    return out


def log_project_datasets(
    run_id: str, project: str, splits: tuple[str, ...] = SPLITS, client=None
) -> int:
    """Log the project's registered data as inputs of run ``run_id`` (context = split); returns count.

    Example:
        >>> log_project_datasets(mlflow.active_run().info.run_id, "mycls")  # in a training script
    """
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    client = client or get_client()
    inputs = [
        DatasetInput(ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)])
        for split, ds in project_datasets(project, splits, client)
    ]
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
    return len(inputs)
