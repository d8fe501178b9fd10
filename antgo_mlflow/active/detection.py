"""Detection: image-level uncertainty from per-box scores, ensemble box disagreement, box label quality.

Predictions follow the model contract's detection dict, one per image: ``bboxes`` (K, 4) xyxy in the
original image's pixels, ``scores`` (K,), ``labels`` (K,) — tensors, arrays or lists. Scores follow
the strategies' convention: higher = more uncertain = label sooner.

* ``mean_entropy`` / ``max_entropy``: binary entropy H(s) of each box's score, averaged / maxed
  over the image's boxes (an image without boxes scores 0: nothing uncertain was found).
* ``least_confidence``: 1 − the image's highest box score (an image without boxes scores 1).
* ``disagreement``: over two or more models, the mean over model pairs of
  1 − (Σ IoU of matched boxes) / max(#boxes), boxes matched greedily by IoU within a class.
* :func:`box_label_quality`: cleanlab's ``object_detection.rank.get_label_quality_scores`` for
  labelled boxes (lower = more likely a labelling error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError, require

METHODS = ("mean_entropy", "max_entropy", "least_confidence", "disagreement")
_EPS = 1e-12


def _arr(value: Any, dtype, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    out = np.asarray(value if value is not None else [], dtype=dtype)
    if out.size == 0:
        return out.reshape((0, *shape_tail))
    return out


def as_boxes(pred: Mapping[str, Any], where: str = "prediction") -> tuple[np.ndarray, ...]:
    """(bboxes (K, 4), scores (K,), labels (K,)) as numpy arrays from a detection prediction dict."""
    if not isinstance(pred, Mapping):
        raise DataError(
            f"{where}: expected a dict with bboxes/scores/labels, got {type(pred).__name__}"
        )
    boxes = _arr(pred.get("bboxes"), np.float64, (4,))
    scores = _arr(pred.get("scores"), np.float64)
    labels = _arr(pred.get("labels"), np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{where}: bboxes must be (K, 4), got {boxes.shape}")
    if len(scores) != len(boxes) or len(labels) != len(boxes):
        raise DataError(f"{where}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise DataError(f"{where}: NaN or infinite boxes or scores (a broken model?)")
    return boxes, scores, labels


def binary_entropy(scores: np.ndarray) -> np.ndarray:
    """H(s) = −s ln s − (1 − s) ln(1 − s) per box (nats; 0 at s ∈ {0, 1}, ln 2 at 0.5)."""
    s = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
    return -(s * np.log(s) + (1 - s) * np.log(1 - s))


def image_uncertainty(pred: Mapping[str, Any], method: str, min_score: float = 0.05) -> float:
    """One image's uncertainty from its boxes (see the module docstring for ``method``).

    Boxes scoring below ``min_score`` are ignored (detectors emit many near-zero boxes).
    """
    _, scores, _ = as_boxes(pred)
    scores = scores[scores >= min_score]
    if method == "least_confidence":
        return 1.0 - float(scores.max()) if len(scores) else 1.0
    if method in ("mean_entropy", "max_entropy"):
        if not len(scores):
            return 0.0
        h = binary_entropy(scores)
        return float(h.mean() if method == "mean_entropy" else h.max())
    raise ValueError(f"method={method!r} must be one of {', '.join(METHODS[:3])}")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, _EPS), 0.0)


def _pair_disagreement(a, b, iou_threshold: float) -> float:
    (ba, _, la), (bb, _, lb) = a, b
    if not len(ba) and not len(bb):
        return 0.0
    iou = iou_matrix(ba, bb)
    iou = np.where(la[:, None] == lb[None, :], iou, 0.0)
    matched = 0.0
    used_a, used_b = set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < iou_threshold:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matched += iou[i, j]
    return 1.0 - matched / max(len(ba), len(bb))


def box_disagreement(
    preds: Sequence[Mapping[str, Any]], iou_threshold: float = 0.5, min_score: float = 0.3
) -> float:
    """Ensemble disagreement on one image: the models' predictions for it (two or more)."""
    if len(preds) < 2:
        return 0.0
    kept = []
    for k, pred in enumerate(preds):
        boxes, scores, labels = as_boxes(pred, f"model {k}")
        keep = scores >= min_score
        kept.append((boxes[keep], scores[keep], labels[keep]))
    pairs = [
        _pair_disagreement(kept[i], kept[j], iou_threshold)
        for i in range(len(kept))
        for j in range(i + 1, len(kept))
    ]
    return float(np.mean(pairs))


def detection_uncertainty(
    per_model: Sequence[Sequence[Mapping[str, Any]]], method: str = "mean_entropy", **kwargs
) -> np.ndarray:
    """(N,) image-level scores for P models × N images of detection predictions.

    Entropy and confidence methods average the per-model image scores; ``disagreement`` needs
    two or more models.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {', '.join(METHODS)}")
    if not per_model:
        raise DataError("detection scoring: no model predictions")
    n = len(per_model[0])
    if any(len(m) != n for m in per_model):
        raise DataError("detection scoring: the models predicted different numbers of images")
    if method == "disagreement":
        if len(per_model) < 2:
            raise DataError("detection disagreement needs two or more models")
        return np.array([box_disagreement([m[i] for m in per_model], **kwargs) for i in range(n)])
    return np.array(
        [np.mean([image_uncertainty(m[i], method, **kwargs) for m in per_model]) for i in range(n)]
    )


def to_cleanlab_prediction(pred: Mapping[str, Any], num_classes: int) -> np.ndarray:
    """A contract detection dict → cleanlab's per-image format: K arrays of (M_k, 5) [xyxy, score]."""
    boxes, scores, labels = as_boxes(pred)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"prediction: box labels must be in 0..{num_classes - 1}")
    per_class = np.empty(num_classes, dtype=object)
    for k in range(num_classes):
        keep = labels == k
        per_class[k] = np.concatenate([boxes[keep], scores[keep, None]], axis=1).astype(np.float32)
    return per_class


def to_cleanlab_label(sample: Mapping[str, Any], index: int = 0) -> dict[str, np.ndarray]:
    """A GT sample's boxes → cleanlab's label dict ``{'bboxes': (L, 4), 'labels': (L,)}``."""
    boxes = _arr(sample.get("bboxes"), np.float64, (4,))
    labels = _arr(sample.get("labels"), np.int64)
    if len(labels) != len(boxes):
        raise DataError(f"sample {index}: {len(boxes)} bboxes but {len(labels)} labels")
    return {"bboxes": boxes.reshape(-1, 4), "labels": labels}


def box_label_quality(
    samples: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    num_classes: int,
) -> np.ndarray:
    """(N,) cleanlab label-quality score per image of labelled boxes (lower = likelier wrong)."""
    od_rank = require("cleanlab.object_detection.rank", "active")
    if len(samples) != len(predictions):
        raise DataError(f"{len(samples)} samples but {len(predictions)} predictions")
    labels = [to_cleanlab_label(s, i) for i, s in enumerate(samples)]
    preds = [to_cleanlab_prediction(p, num_classes) for p in predictions]
    return np.asarray(od_rank.get_label_quality_scores(labels, preds, verbose=False), dtype=float)
