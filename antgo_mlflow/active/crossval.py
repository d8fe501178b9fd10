"""Out-of-sample probabilities by K-fold cross-validation: K models trained through the engine.

A model scores the samples it was trained on too well — in-sample probabilities agree with the
given labels, wrong ones included — so cleanlab needs each sample scored by a model that never saw
it. Fold k's model trains (``Runner(cfg, work_dir=…, seed=…).train()``) on the other folds, packed
as TFRecord shards into ``cfg.data.train``, and predicts fold k with the shared loader from its
checkpoint. Each fold is a child MLflow run of the caller's run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from antgo_mlflow.errors import ConfigError, DataError, UsageError

FOLD_PREFIX = "fold"


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """(N,) fold index of each sample: every class spread evenly over the ``k`` folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold[members] = (np.arange(len(members)) + offset) % k
        offset += len(members)  # the next class starts where this one stopped: balanced sizes
    return fold


def check_folds(k, n: int) -> int:
    """UsageError unless 2 <= k <= n (the number of samples)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise UsageError(f"--cv-folds must be an integer >= 2, got {k!r}")
    if k > n:
        raise UsageError(f"--cv-folds={k} is more than the {n} samples")
    return int(k)


def _subset_gt(data, indices: Sequence[int], folder: Path) -> Path:
    """A GT file of ``indices`` whose ``image_file`` paths are absolute (shard images written)."""
    from antgo_mlflow.gt import save_gt

    samples = []
    for i in indices:
        s = dict(data.samples[i])
        if data.base is not None:
            s["image_file"] = str((data.base / s["image_file"]).resolve())
        else:
            blob, ext = data.image_bytes(i)
            path = folder / "images" / f"{i:06d}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            s["image_file"] = str(path)
        samples.append(s)
    return save_gt(folder / "annotation.json", samples)


def _fold_config(config: str, shards: list[str], cfg_options: Sequence[str], epochs: int | None):
    from antgo_mlflow.config import Config

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_overrides(list(cfg_options))
    train = (cfg.get("data") or {}).get("train")
    if not isinstance(train, dict) or "data_path_list" not in train:
        raise ConfigError(
            f"{config}: data.train.data_path_list is needed (cross-validation trains each fold "
            "on TFRecord shards of the other folds)"
        )
    cfg.merge_overrides([f"data.train.data_path_list={shards!r}"])
    if epochs is not None:
        cfg.merge_overrides([f"max_epochs={int(epochs)}"])
    log_cfg = dict(cfg.get("log_config") or {})
    hooks = [h for h in (log_cfg.get("hooks") or []) if h.get("type") != "MlflowLoggerHook"]
    # a fold's run logs its params, metrics and config; the model itself is not worth logging
    hooks.append(dict(type="MlflowLoggerHook", log_model=False, log_artifacts="none"))
    cfg.merge_overrides([f"log_config.hooks={hooks!r}"])
    return cfg


def _checkpoint(work_dir: Path) -> Path:
    for name in ("best.pth", "latest.pth"):
        if (work_dir / name).is_file():
            return work_dir / name
    epochs = sorted(work_dir.glob("epoch_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    if not epochs:
        raise DataError(f"{work_dir}: the fold's training wrote no checkpoint")
    return epochs[-1]


def out_of_fold_probs(
    data,
    labels: np.ndarray,
    folds: int,
    config: str | os.PathLike,
    seed: int = 0,
    epochs: int | None = None,
    cfg_options: Sequence[str] = (),
    parent_run_id: str | None = None,
    batch_size: int = 64,
    work_root: str | os.PathLike | None = None,
) -> np.ndarray:
    """(N, C) probabilities of each sample from the fold model that did not train on it."""
    import mlflow
    from mlflow import MlflowClient

    from antgo_mlflow.engine.runner import Runner
    from antgo_mlflow.inference import load_model
    from antgo_mlflow.tools.package_tfrecord import package_tfrecord

    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id if parent_run_id else None
    fold_of = stratified_folds(labels, folds, seed)
    probs: np.ndarray | None = None
    with tempfile.TemporaryDirectory(prefix="antgo-cv-", dir=work_root) as tmp:
        for k in range(folds):
            fold_dir = Path(tmp) / f"{FOLD_PREFIX}{k}"
            held = np.flatnonzero(fold_of == k)
            gt = _subset_gt(data, np.flatnonzero(fold_of != k), fold_dir / "gt")
            # the fold GT names the user's images by absolute path: allow their dataset folder
            roots = [str(data.base.resolve())] if data.base is not None else None
            summary = package_tfrecord(str(gt), str(fold_dir / "shards"), "train", data_roots=roots)
            cfg = _fold_config(str(config), [str(p) for p in summary.shards], cfg_options, epochs)
            run_id = None
            if parent_run_id:
                # created explicitly: under `mlflow run`, start_run() would reuse MLFLOW_RUN_ID
                run_id = client.create_run(
                    experiment_id,
                    run_name=f"cv-fold-{k}",
                    tags={
                        "mlflow.parentRunId": parent_run_id,
                        "antgo.process": "active-cv-fold",
                        "antgo.cv.fold": str(k),
                    },
                ).info.run_id
            nested = mlflow.active_run() is not None
            with mlflow.start_run(run_id=run_id, run_name=f"cv-fold-{k}", nested=nested):
                Runner(cfg, work_dir=str(fold_dir / "work"), seed=seed + k).train()
                model = load_model(str(_checkpoint(fold_dir / "work")), batch_size=batch_size)
                fold_probs = model.predict_proba(data.iter_images(held))
                if probs is None:
                    probs = np.zeros((len(labels), fold_probs.shape[1]))
                if fold_probs.shape[1] != probs.shape[1]:
                    raise DataError("the fold models disagree on the number of classes")
                probs[held] = fold_probs
                accuracy = float((fold_probs.argmax(1) == labels[held]).mean())
                mlflow.log_metric("cv/held_out_accuracy", accuracy)
    return probs
