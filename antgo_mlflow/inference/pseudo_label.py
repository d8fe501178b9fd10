"""Pseudo-labelling with expert models: average their class probabilities (or fuse their boxes),
keep the confident ones.

Models are anything :func:`antgo_mlflow.inference.load_model` loads: ``runs:/<run_id>[/<path>]``,
``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``models:/m-<id>`` (ONNX or PyTorch
flavor), or a local ``.onnx`` file or ``.pth`` checkpoint (rebuilt from the config data it
records; never from code it carries). The models must agree on the number of classes; their
probabilities are averaged (weighted when weights are given). Every input sample gets
``predictions`` (probabilities, entropy, label, score, models); samples whose top probability
reaches ``threshold`` also get ``image_label``. Detectors (task ``detection``) instead give each
sample the boxes fused by weighted box fusion as ``bboxes``/``labels`` and ``predictions``
(fused boxes, scores, the per-image ``image_score``, each model's boxes): see
``pseudo_label_detection.py``.

Outputs in ``output`` (written together, or not at all):
``pseudo-label.json`` (every sample), ``confident.json``, ``uncertain.json``, ``meta.json`` and,
for shard input, ``images/`` (the shards' images, so the GT files stand on their own).

Example:
    >>> result = pseudo_label(["models:/digits@champion", "runs:/0a1b.../onnx_model"],
    ...                       "unlabeled/annotation.json", "out", threshold=0.9)
    >>> result.counts  # {'total': 359, 'confident': 351, 'uncertain': 8}
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.inference import pseudo_label_detection as detection
from antgo_mlflow.inference.inputs import read_input
from antgo_mlflow.inference.loader import load_model
from antgo_mlflow.inference.predictor import check_same_classes

ALL_FILE = "pseudo-label.json"
CONFIDENT_FILE = "confident.json"
UNCERTAIN_FILE = "uncertain.json"


# -- the job ---------------------------------------------------------------------------------------
@dataclass
class PseudoLabelResult:
    """What :func:`pseudo_label` wrote."""

    output: Path
    files: dict[str, Path]
    counts: dict[str, int]
    probabilities: np.ndarray  # detection: (N,) the images' certainties
    models: list[str]
    weights: list[float]
    mean_entropy: float  # detection: nan (the images' mean certainty is mean_image_score)
    task: str = "classification"
    mean_image_score: float = float("nan")


def check_arguments(
    models: Sequence[str], threshold: float, weights: Sequence[float] | None, batch_size: int
) -> list[float]:
    """Validate the job's parameters (one-line UsageError); return the normalised weights."""
    if not models:
        raise UsageError("--models: give at least one model URI or file")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0.0 <= float(threshold) <= 1.0
        or math.isnan(threshold)
    ):
        raise UsageError(f"--threshold must be between 0 and 1, got {threshold}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if weights is None or len(weights) == 0:
        return [1.0 / len(models)] * len(models)
    if len(weights) != len(models):
        raise UsageError(f"--weights: {len(weights)} weights for {len(models)} models")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise UsageError(f"--weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def average_probabilities(per_model: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of per-model (N, C) probability arrays (weights sum to 1)."""
    shapes = {p.shape for p in per_model}
    if len(shapes) != 1:
        raise DataError(
            f"the models disagree on the number of classes: {sorted(s[1] for s in shapes)}"
        )
    return sum(w * p for w, p in zip(weights, per_model))


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(probs * np.log(p)).sum(axis=1)


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def pseudo_label(
    models: Sequence[str],
    input: str | os.PathLike,
    output: str | os.PathLike,
    threshold: float = 0.9,
    weights: Sequence[float] | None = None,
    batch_size: int = 64,
    config: str | None = None,
    trust_checkpoint_config: bool = False,
) -> PseudoLabelResult:
    """Label ``input`` with the averaged probabilities of ``models``; write the GT files to ``output``.

    Args:
        models: model URIs or local ``.onnx``/``.pth`` files.
        input: a GT JSON (or folder), or TFRecord shards (manifest or shard file).
        output: the folder for ``pseudo-label.json``, ``confident.json``, ``uncertain.json``.
        threshold: a sample is confident when its top averaged probability is >= this.
        weights: one weight per model (normalised); default equal weights.
        batch_size: images per inference batch.
        config: a config file that builds ``.pth`` checkpoints (instead of their recorded one).
        trust_checkpoint_config: let old checkpoints' config *text* run (it is code).

    Returns:
        PseudoLabelResult with the files written and the counts.
    """
    from antgo_mlflow.progress import progress

    norm_weights = check_arguments(models, threshold, weights, batch_size)
    output = Path(output).expanduser()
    if output.exists() and (output / ALL_FILE).exists():
        raise UsageError(f"--output: {output} already holds {ALL_FILE}; choose another folder")
    data = read_input(input)
    if not data.samples:
        raise DataError(f"--input: {input} has no samples")
    loaded = [
        load_model(
            uri,
            config=config,
            trust_checkpoint_config=trust_checkpoint_config,
            batch_size=batch_size,
        )
        for uri in models
    ]
    task = detection.check_same_task(loaded)
    check_same_classes(loaded)
    if task == "detection":
        rows = detection.label_images(loaded, data, norm_weights, threshold, batch_size)
        labelled = [detection.apply(s, r, norm_weights) for s, r in zip(data.samples, rows)]
        sure = [r["confident"] for r in rows]
        names = loaded[0].class_names or data.class_names
        scores = detection.image_scores(rows)
        result = _write(output, data, labelled, sure, names)
        return PseudoLabelResult(
            output,
            result[0],
            result[1],
            scores,
            [m.uri for m in loaded],
            norm_weights,
            float("nan"),
            task,
            float(scores.mean()),
        )
    n = len(data.samples)
    per_model = [[] for _ in loaded]
    for idx in progress(
        _batches(n, batch_size), total=math.ceil(n / batch_size), desc="pseudo-label", unit="batch"
    ):
        images = [data.images(i) for i in idx]
        for k, model in enumerate(loaded):
            per_model[k].append(model.predict_proba(images))
    probs_per_model = [np.concatenate(chunks) for chunks in per_model]
    probs = average_probabilities(probs_per_model, norm_weights)
    ent = entropy(probs)
    labels = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    names = data.class_names if len(data.class_names) == probs.shape[1] else []
    names = names or loaded[0].class_names
    uris = [m.uri for m in loaded]

    labelled, flags = [], []
    for i, sample in enumerate(data.samples):
        out = dict(sample)
        sure = bool(scores[i] >= threshold)
        out["predictions"] = {
            **(sample.get("predictions") or {}),
            "probabilities": [round(float(p), 6) for p in probs[i]],
            "entropy": round(float(ent[i]), 6),
            "label": int(labels[i]),
            "score": round(float(scores[i]), 6),
            "confident": sure,
            "models": uris,
            "weights": norm_weights,
        }
        if sure:
            out["image_label"] = int(labels[i])
            if names:
                out["image_label_name"] = names[int(labels[i])]
        labelled.append(out)
        flags.append(sure)
    files, counts = _write(output, data, labelled, flags, names)
    return PseudoLabelResult(output, files, counts, probs, uris, norm_weights, float(ent.mean()))


def _write(output: Path, data, labelled: list[dict], flags: list[bool], names) -> tuple:
    """Write the GT files (all, confident, uncertain, meta; images of shard input) together."""
    from antgo_mlflow.fileio import StagingDir
    from antgo_mlflow.gt import default_meta, save_gt, write_meta

    everything, confident, uncertain = [], [], []
    for out, sure in zip(labelled, flags):
        if data.base is not None and out.get("image_file"):
            out["image_file"] = os.path.relpath(data.base / out["image_file"], output)
        everything.append(out)
        (confident if sure else uncertain).append(out)
    files = {
        "all": ALL_FILE,
        "confident": CONFIDENT_FILE,
        "uncertain": UNCERTAIN_FILE,
        "meta": "meta.json",
    }
    with StagingDir(output) as stage:
        if data.image_bytes is not None:
            (stage.path / "images").mkdir()
            for i, sample in enumerate(everything):
                blob, _ = data.image_bytes(i)
                (stage.path / sample["image_file"]).write_bytes(blob)
        save_gt(stage.path / CONFIDENT_FILE, confident)
        save_gt(stage.path / UNCERTAIN_FILE, uncertain)
        write_meta(stage.path / "meta.json", default_meta(len(everything), names))
        save_gt(stage.path / ALL_FILE, everything)
        stage.commit(last=[ALL_FILE])
    counts = {"total": len(everything), "confident": len(confident), "uncertain": len(uncertain)}
    return {k: output / v for k, v in files.items()}, counts


def log_to_mlflow(result: PseudoLabelResult, threshold: float, input: str) -> str:
    """Log counts, parameters and the written files to the active run (or a new one); return its id."""
    import mlflow

    active = mlflow.active_run()
    run = active or mlflow.start_run(run_name="pseudo-label")
    try:
        mlflow.set_tags({"antgo.process": "pseudo-label"})
        mlflow.log_params(
            {
                "pseudo_label.models": ",".join(result.models)[:6000],
                "pseudo_label.weights": ",".join(f"{w:.4g}" for w in result.weights),
                "pseudo_label.threshold": threshold,
                "pseudo_label.input": str(input)[:6000],
            }
        )
        total = max(1, result.counts["total"])
        mlflow.log_metrics(
            {
                "pseudo_label/total": result.counts["total"],
                "pseudo_label/confident": result.counts["confident"],
                "pseudo_label/uncertain": result.counts["uncertain"],
                "pseudo_label/confident_ratio": result.counts["confident"] / total,
                **(
                    {"pseudo_label/mean_image_score": result.mean_image_score}
                    if result.task == "detection"
                    else {"pseudo_label/mean_entropy": result.mean_entropy}
                ),
            }
        )
        for key in ("all", "confident", "uncertain", "meta"):
            mlflow.log_artifact(str(result.files[key]), artifact_path="pseudo_label")
        return run.info.run_id
    finally:
        if active is None:
            mlflow.end_run()


__all__ = [
    "PseudoLabelResult",
    "average_probabilities",
    "check_arguments",
    "entropy",
    "log_to_mlflow",
    "pseudo_label",
]
