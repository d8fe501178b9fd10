"""Pseudo-labels from detectors: each model's boxes, fused by weighted box fusion, per image.

For every image the models' detections (original pixels) are fused
(:func:`antgo_mlflow.models.detectors.fusion.fuse_for_pseudo_labels`): the fused boxes scoring
>= ``threshold`` become the sample's ``bboxes`` / ``labels`` (``box_visibility`` 1); every fused
box, its score, the image's certainty ``image_score`` and each model's own boxes go into
``predictions``. An image is confident when none of its fused boxes scores between
``1 - threshold`` and ``threshold`` (``image_score >= threshold``).

Example:
    >>> rows = label_images(detectors, data, weights=[0.5, 0.5], threshold=0.7, batch_size=32)
    >>> rows[0]["bboxes"], rows[0]["predictions"]["image_score"], rows[0]["confident"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from antgo_mlflow.errors import UsageError

#: Boxes of the same class overlapping by more than this are one object (WBF's default).
IOU_THR = 0.55
#: Detections below this score take no part in the fusion.
SKIP_SCORE = 0.05
# the per-instance fields of an input sample that new boxes replace
_INSTANCE_FIELDS = ("bboxes", "labels", "box_visibility", "segments")


def check_same_task(models: Sequence) -> str:
    """The task all ``models`` share; UsageError (one line) naming them when they differ."""
    tasks = {m.task for m in models}
    if len(tasks) > 1:
        listed = ", ".join(f"{m.uri} is a {m.task} model" for m in models)
        raise UsageError(f"--models: mix no detectors with classifiers: {listed}")
    return tasks.pop() if tasks else "classification"


def label_images(models, data, weights, threshold: float, batch_size: int) -> list[dict]:
    """Per sample of ``data``: the fused pseudo-label fields (``fuse_for_pseudo_labels``)."""
    from antgo_mlflow.models.detectors.fusion import fuse_for_pseudo_labels
    from antgo_mlflow.progress import progress

    n = len(data.samples)
    uris = [m.uri for m in models]
    rows: list[dict] = []
    steps = range(0, n, batch_size)
    for start in progress(
        steps, total=math.ceil(n / batch_size), desc="pseudo-label", unit="batch"
    ):
        idx = range(start, min(n, start + batch_size))
        images = [data.images(i) for i in idx]
        per_model = [m.predict(images) for m in models]
        for k in range(len(idx)):
            rows.append(
                fuse_for_pseudo_labels(
                    [preds[k] for preds in per_model],
                    uris,
                    weights,
                    threshold,
                    iou_thr=IOU_THR,
                    skip_score=SKIP_SCORE,
                )
            )
    return rows


def apply(sample: dict, fields: dict, weights: Sequence[float]) -> dict:
    """A copy of ``sample`` with the fused boxes as its instances and the ``predictions``."""
    out = {k: v for k, v in sample.items() if k not in _INSTANCE_FIELDS}
    out["bboxes"] = fields["bboxes"]
    out["labels"] = fields["labels"]
    out["box_visibility"] = [1] * len(fields["labels"])
    out["predictions"] = {
        **(sample.get("predictions") or {}),
        **fields["predictions"],
        "confident": bool(fields["confident"]),
        "weights": list(weights),
    }
    return out


def image_scores(rows: Sequence[dict]) -> np.ndarray:
    """(N,) the images' certainties (``predictions.image_score``)."""
    return np.asarray([r["predictions"]["image_score"] for r in rows], dtype=np.float64)


__all__ = ["IOU_THR", "SKIP_SCORE", "apply", "check_same_task", "image_scores", "label_images"]
