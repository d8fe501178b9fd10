"""Weighted box fusion of several detectors' boxes for one image (vectorised on torchvision.ops),
and the pseudo-label fields made from them (``fuse_for_pseudo_labels``).

Why not ``ensemble-boxes`` (the reference WBF): its last release (1.0.9) is from 2022 and pulls
numba and pandas for a loop over Python lists; this is ~40 lines of tensor ops instead.

The rule (Solovyev et al.'s WBF, "avg" confidence, with one documented difference):

* model ``m`` has weight ``w_m``; its box ``b`` with score ``s_b`` has weight ``ws_b = w_m * s_b``;
  boxes scoring below ``skip_score``, and boxes without area (a detector's box clipped to an
  image edge), are left out;
* clusters are formed per class in decreasing ``ws`` order, NMS-style: the best remaining box
  opens a cluster and every box with IoU > ``iou_thr`` with it (same class) joins it. The
  original compares each box with the cluster's running fused box instead; the two agree
  whenever a cluster's boxes agree with its best one -- the case fusion is for -- and this one
  is a single ``nms`` + one IoU matrix;
* the fused box is the ``ws``-weighted mean of the cluster's boxes; the fused score is
  ``sum(ws) / sum(w_m)``: each model's confidence averaged over *all* models (a model that saw
  nothing there counts as 0). With at most one box per model in a cluster this is exactly
  WBF's ``mean(ws) * min(count, M) / sum(w)``.

Example:
    >>> boxes, scores, labels = weighted_box_fusion(
    ...     [{"bboxes": b1, "scores": s1, "labels": l1}, {"bboxes": b2, "scores": s2, "labels": l2}],
    ...     weights=[2, 1], iou_thr=0.55)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def weighted_box_fusion(
    predictions: Sequence[Mapping],
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_score: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fuse one image's detections from several models (see the module docstring).

    Args:
        predictions: one dict per model with ``bboxes`` (K, 4) xyxy, ``scores`` (K,), ``labels`` (K,).
        weights: one non-negative weight per model (default: equal).
        iou_thr: boxes of a class overlapping the cluster's best box by more than this join it.
        skip_score: boxes with a lower score are ignored.

    Returns:
        ``(boxes (F, 4), scores (F,), labels (F,))`` sorted by decreasing score.
    """
    from torchvision.ops import box_iou, nms

    if weights is None:
        weights = [1.0] * len(predictions)
    if len(weights) != len(predictions):
        raise ValueError(f"{len(weights)} weights for {len(predictions)} models")
    boxes, ws, labels = [], [], []
    for pred, weight in zip(predictions, weights):
        b = torch.as_tensor(pred["bboxes"], dtype=torch.float32).reshape(-1, 4)
        s = torch.as_tensor(pred["scores"], dtype=torch.float32).reshape(-1)
        lab = torch.as_tensor(pred["labels"], dtype=torch.int64).reshape(-1)
        # a box without area overlaps nothing (IoU 0/0), not even its copies: it is no object
        keep = (s >= skip_score) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        boxes.append(b[keep])
        ws.append(s[keep] * float(weight))
        labels.append(lab[keep])
    total_weight = float(sum(weights))
    box, w, label = torch.cat(boxes), torch.cat(ws), torch.cat(labels)
    if not len(box) or total_weight <= 0:
        return torch.zeros((0, 4)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64)
    # classes never overlap: offset each class's boxes into its own region
    span = float(box.max()) + 1.0
    shifted = box + (label.to(box.dtype) * span)[:, None]
    seeds = nms(shifted, w, iou_thr)  # the clusters' best boxes, best first
    overlap = box_iou(shifted, shifted[seeds]) > iou_thr
    overlap[seeds, torch.arange(len(seeds))] = True  # a seed is in its own cluster
    # each box joins the best seed it overlaps (the one whose NMS pass removed it)
    cluster = torch.where(overlap.any(1), overlap.to(torch.int8).argmax(1), -1)
    member = cluster >= 0
    cluster, box, w = cluster[member], box[member], w[member]
    mass = torch.zeros(len(seeds)).index_add_(0, cluster, w)
    fused = torch.zeros((len(seeds), 4)).index_add_(0, cluster, box * w[:, None])
    fused = fused / mass.clamp(min=1e-12)[:, None]
    score = mass / total_weight
    order = torch.argsort(score, descending=True, stable=True)
    return fused[order], score[order], label[seeds][order]


def image_certainty(scores, threshold: float) -> float:
    """How sure the fused detections of one image are: 1 - the most ambiguous box's ambiguity.

    A box scoring ``s`` is certain to be an object when ``s >= threshold`` and certain not to be
    when ``s <= 1 - threshold``; the image's certainty is ``min over boxes of max(s, 1 - s)``
    (1.0 without boxes), so an image is *confident* (certainty >= ``threshold``) exactly when
    none of its boxes scores between ``1 - threshold`` and ``threshold``.
    """
    s = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
    if not len(s):
        return 1.0
    return float(torch.maximum(s, 1 - s).min())


def fuse_for_pseudo_labels(
    per_model: Sequence[Mapping],
    names: Sequence[str],
    weights: Sequence[float] | None = None,
    threshold: float = 0.7,
    iou_thr: float = 0.55,
    skip_score: float = 0.05,
) -> dict:
    """One image's pseudo-label fields from several models' detections.

    Returns ``{"bboxes", "labels"}`` (the fused boxes scoring >= ``threshold``: the pseudo
    labels), ``"predictions"`` (every fused box with its score, the per-image ``image_score``
    (``image_certainty``) and each model's own boxes under ``models``) and ``"confident"``.
    """
    boxes, scores, labels = weighted_box_fusion(per_model, weights, iou_thr, skip_score)
    keep = scores >= threshold
    certainty = image_certainty(scores, threshold)

    def rows(b, s, lab) -> dict:
        return {
            "bboxes": [[round(float(v), 3) for v in box] for box in b],
            "labels": [int(v) for v in lab],
            "scores": [round(float(v), 5) for v in s],
        }

    models = {}
    for name, pred in zip(names, per_model):
        models[name] = rows(
            torch.as_tensor(pred["bboxes"]).reshape(-1, 4),
            torch.as_tensor(pred["scores"]).reshape(-1),
            torch.as_tensor(pred["labels"]).reshape(-1),
        )
    fused = rows(boxes, scores, labels)
    return {
        "bboxes": [b for b, k in zip(fused["bboxes"], keep.tolist()) if k],
        "labels": [v for v, k in zip(fused["labels"], keep.tolist()) if k],
        "predictions": {**fused, "image_score": round(certainty, 5), "models": models},
        "confident": certainty >= threshold,
    }


__all__ = ["fuse_for_pseudo_labels", "image_certainty", "weighted_box_fusion"]
