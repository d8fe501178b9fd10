"""``TorchvisionDetector``: one wrapper that puts torchvision's detectors behind the model contract.

A family (``FCOS``, ``RetinaNet``, ``FasterRCNN``) is a small subclass that builds its torchvision
model from a backbone (MODELS), ``num_classes`` and its ``head`` settings; everything else is here:

* ``train_step(batch, optim_wrapper)``: per-image targets from the batch's ``bboxes`` / ``labels`` /
  ``box_visibility`` (lists of tensors or arrays, pixels of the batch image), the torchvision
  losses, ``optim_wrapper.update_params(loss)``; returns ``loss`` and each ``loss_*``.
* ``val_step(batch)``: one ``{"bboxes" (K, 4) xyxy, "scores" (K,), "labels" (K,) int64}`` per image,
  in the pixels of the *original* image: the resize/pad the pipeline applied is undone from
  ``image_meta`` (``affine``, written by ResizeS / KeepRatio / RandomFlipImage) and boxes are
  clipped to the original size.
* ``forward(image)``: the same detections for a batch tensor (what ONNX export traces).

The data pipeline sizes and normalises the images (as for the classifiers): torchvision's own
resize is switched off, and ``image_mean`` / ``image_std`` (optional) normalise inside the model.

Box rule (one, documented for users): boxes are clipped to the image; a box with no area left
(outside the image, or zero width/height) is dropped and counted (``boxes_dropped`` in the
training logs, one warning line per sample for the first few); a non-finite coordinate, a label
outside ``0..num_classes-1`` or a box/label count mismatch is refused: a DataError naming the
sample and the field (exit 2). A sample without boxes is a valid negative -- unless it has an
``image_label`` >= 0, which means a classification GT was given to a detector (refused too).
Crowd boxes (``box_visibility`` 0) are ignored in the loss (each family says how).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from antgo_mlflow.data.transforms.annotations import map_boxes
from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.models._build import build_module, config_path
from antgo_mlflow.models.base import BaseModel
from antgo_mlflow.registry import MODELS, did_you_mean

log = logging.getLogger(__name__)

# How many samples with dropped boxes are named in a warning before the count alone is kept.
_WARN_SAMPLES = 5


class _BatchTransform(nn.Module):
    """torchvision's GeneralizedRCNNTransform without the resize: the pipeline sizes the images.

    Takes the batch tensor (N, C, H, W) (or a list of equal-size images), optionally normalises
    it, and returns ``ImageList`` + the targets unchanged; ``postprocess`` is the identity.
    """

    def __init__(self, image_mean: Sequence[float] | None, image_std: Sequence[float] | None):
        super().__init__()
        self.normalise = image_mean is not None
        if self.normalise:
            self.register_buffer(
                "mean", torch.tensor(image_mean, dtype=torch.float32).view(-1, 1, 1)
            )
            self.register_buffer("std", torch.tensor(image_std, dtype=torch.float32).view(-1, 1, 1))

    def normalised(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` normalised with ``image_mean`` / ``image_std`` (as given without them)."""
        return (images - self.mean) / self.std if self.normalise else images

    def forward(self, images, targets=None):
        from torchvision.models.detection.image_list import ImageList

        if isinstance(images, (list, tuple)):
            images = torch.stack(list(images))
        images = self.normalised(images)
        h, w = int(images.shape[-2]), int(images.shape[-1])
        return ImageList(images, [(h, w)] * int(images.shape[0])), targets

    def postprocess(self, result, image_shapes, original_image_sizes):
        return result


def resolve_classes(
    num_classes: int | None, meta: str | None, class_names: Sequence[str] | None, path: str
) -> tuple[int, list[str]]:
    """``(num_classes, class names)`` from ``num_classes``, ``class_names`` or a ``meta.json``.

    ``meta`` is a meta.json file, or a folder / GT JSON file with ``meta.json`` beside it; its
    ``meta.category`` lists the classes in index order.
    """
    names = [str(n) for n in class_names] if class_names else []
    if meta:
        from antgo_mlflow.gt import read_meta

        file = Path(str(meta)).expanduser()
        if file.suffix == ".json" and file.name != "meta.json":
            file = file.parent
        found = read_meta(file)
        if found is None:
            raise ConfigError(f"{path}.meta: no meta.json at {meta}")
        names = list(found.get("meta", {}).get("category") or [])
        if not names:
            raise ConfigError(f"{path}.meta: {meta} lists no classes in meta.category")
    if num_classes is None:
        if not names:
            raise ConfigError(f"{path}: give num_classes, class_names or meta (a meta.json)")
        num_classes = len(names)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"{path}.num_classes: expected a positive integer, got {num_classes!r}")
    if names and len(names) != num_classes:
        raise ConfigError(
            f"{path}.num_classes: {num_classes} classes but {len(names)} class names ({names[:5]})"
        )
    return num_classes, names or [str(i) for i in range(num_classes)]


def _check_keys(given: Mapping | None, defaults: Mapping, path: str) -> dict:
    given = dict(given or {})
    for key in given:
        if key not in defaults:
            raise ConfigError(
                f"{path}.{key}: unknown setting{did_you_mean(key, defaults)} "
                f"(known: {', '.join(sorted(defaults))})"
            )
    return {**defaults, **given}


def _as_numpy(value, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _item(batch: Mapping, key: str, i: int):
    """Sample ``i``'s value of a per-sample batch field (a list, or a stacked tensor/array)."""
    values = batch[key]
    return values[i]


def sample_name(batch: Mapping, i: int) -> str:
    """How errors name sample ``i`` of a batch: its image file when the pipeline kept it."""
    metas = batch.get("image_meta")
    meta = metas[i] if isinstance(metas, (list, tuple)) and i < len(metas) else None
    if isinstance(meta, Mapping):
        for key in ("image_file", "image_url", "id"):
            if meta.get(key):
                return f"sample {meta[key]}"
    for key in ("image_file", "image_url"):
        values = batch.get(key)
        if isinstance(values, (list, tuple)) and i < len(values) and values[i]:
            return f"sample {values[i]}"
    return f"sample {i} of the batch"


def boxes_to_original(boxes: torch.Tensor, meta: Mapping | None) -> torch.Tensor:
    """Boxes in the pipeline's output pixels -> the original image's (``annotations.map_boxes``)."""
    return map_boxes(boxes, meta if isinstance(meta, dict) else None, to_original=True)


class TorchvisionDetector(BaseModel):
    """Base of the detector families; see the module docstring for the contract.

    Args:
        backbone: MODELS config of a detection backbone (``TinyFPN``, ``ResNetFPN``,
            ``MobileNetV3FPN``): ordered feature maps + ``out_channels`` + ``strides``.
        head: the family's head settings (``HEAD_DEFAULTS`` of the subclass).
        num_classes: object classes (no background); or give ``class_names`` or ``meta``.
        meta: a ``meta.json`` (or the folder / GT JSON beside it) whose categories name the classes.
        class_names: class names in index order.
        image_mean, image_std: normalisation inside the model (None: the pipeline normalised).
        test_cfg: post-processing (``TEST_DEFAULTS`` of the subclass: score threshold, NMS, ...).
        train_cfg: accepted for antgo/mmdet configs; training settings live in ``head``.
    """

    #: The predictor task inference/ loads this model as (``antgo.task`` in exported metadata).
    task = "detection"
    #: The family's head settings and their defaults (subclasses override).
    HEAD_DEFAULTS: dict[str, Any] = {}
    #: Post-processing settings and their defaults (subclasses override).
    TEST_DEFAULTS: dict[str, Any] = {}
    #: Added to the labels given to torchvision (Faster R-CNN: 1, class 0 is the background).
    label_offset = 0
    #: torchvision's loss names -> the suffixes logged as ``loss_<suffix>``.
    LOSS_NAMES: dict[str, str] = {}

    def __init__(
        self,
        backbone: Mapping | nn.Module,
        head: Mapping | None = None,
        num_classes: int | None = None,
        meta: str | None = None,
        class_names: Sequence[str] | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        test_cfg: Mapping | None = None,
        train_cfg: Mapping | None = None,
    ):
        super().__init__()
        path = config_path("model")
        self.num_classes, self.class_names = resolve_classes(num_classes, meta, class_names, path)
        if (image_mean is None) != (image_std is None):
            raise ConfigError(f"{path}: give both image_mean and image_std, or neither")
        body = build_module(MODELS, backbone, f"{path}.backbone")
        for attr in ("out_channels", "strides"):
            if not hasattr(body, attr):
                raise ConfigError(
                    f"{path}.backbone: {type(body).__name__} is not a detection backbone "
                    f"(needs '{attr}'; use TinyFPN, ResNetFPN or MobileNetV3FPN)"
                )
        head_cfg = _check_keys(head, self.HEAD_DEFAULTS, f"{path}.head")
        test = _check_keys(test_cfg, self.TEST_DEFAULTS, f"{path}.test_cfg")
        self.detector = self.build_detector(
            body, self.num_classes + self.label_offset, head_cfg, test
        )
        self.detector.transform = _BatchTransform(image_mean, image_std)
        self.train_cfg = train_cfg
        self.boxes_dropped = 0
        self._warned = 0

    # -- the family's part -------------------------------------------------------------------------
    def build_detector(self, backbone: nn.Module, num_classes: int, head: dict, test: dict):
        """The torchvision model (subclasses implement)."""
        raise NotImplementedError

    def adapt_targets(self, targets: list[dict]) -> list[dict]:
        """The family's last word on the checked targets (default: as they are)."""
        return targets

    # -- targets -----------------------------------------------------------------------------------
    def targets_from_batch(self, batch: Mapping, image: torch.Tensor) -> list[dict]:
        """Per-image torchvision targets (``boxes``, ``labels``, ``crowd``), checked (module rule)."""
        n = int(image.shape[0])
        h, w = int(image.shape[-2]), int(image.shape[-1])
        if "bboxes" not in batch or "labels" not in batch:
            missing = [k for k in ("bboxes", "labels") if k not in batch]
            hint = ""
            if "label" in batch or "image_label" in batch:
                hint = " (it has image labels: a classification GT given to a detector?)"
            raise DataError(
                f"{sample_name(batch, 0)}: field {missing[0]!r} missing from the batch "
                f"(fields: {', '.join(sorted(map(str, batch)))}); a detector needs 'bboxes' and "
                f"'labels' per image{hint} -- keep them in the pipeline's inputs_def"
            )
        device = image.device
        # NumPy for the per-image bookkeeping: torch would wake its intra-op threads for each of
        # these tiny ops (see data/transforms/formatting.py); tensors are made once at the end
        vis_all = batch.get("box_visibility")
        targets = []
        for i in range(n):
            boxes = _as_numpy(_item(batch, "bboxes", i), np.float32)
            labels = _as_numpy(_item(batch, "labels", i), np.float64).reshape(-1)
            where = sample_name(batch, i)
            if boxes.size % 4:
                raise DataError(
                    f"{where}, field 'bboxes': expected (N, 4) xyxy, got {tuple(boxes.shape)}"
                )
            boxes = boxes.reshape(-1, 4)
            if labels.size != boxes.shape[0]:
                raise DataError(
                    f"{where}, field 'labels': {labels.size} labels for {boxes.shape[0]} boxes"
                )
            if boxes.shape[0] == 0:
                image_label = self._image_label(batch, i)
                if image_label is not None and image_label >= 0:
                    raise DataError(
                        f"{where}, field 'bboxes': empty, but image_label={image_label}: a "
                        "classification GT given to a detector (it needs bboxes + labels; an "
                        "image without objects has image_label -1)"
                    )
            bad = ~np.isfinite(boxes).all(axis=1)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{where}, field 'bboxes': box {k} is not finite: {boxes[k].tolist()}"
                )
            wrong = (labels < 0) | (labels >= self.num_classes) | (labels != np.round(labels))
            if wrong.any():
                k = int(np.flatnonzero(wrong)[0])
                raise DataError(
                    f"{where}, field 'labels': label {labels[k]:g} of box {k} is not a "
                    f"class index in 0..{self.num_classes - 1} (the model has "
                    f"{self.num_classes} classes: {', '.join(self.class_names[:8])})"
                )
            crowd = np.zeros(boxes.shape[0], dtype=bool)
            if vis_all is not None:
                v = _as_numpy(vis_all[i], np.float32).reshape(-1)
                if v.size == boxes.shape[0]:
                    crowd = v == 0
            boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            if not keep.all():
                self._count_dropped(where, int((~keep).sum()))
                boxes, labels, crowd = boxes[keep], labels[keep], crowd[keep]
            targets.append(
                {
                    "boxes": torch.from_numpy(np.ascontiguousarray(boxes)).to(device),
                    "labels": torch.from_numpy(labels.astype(np.int64) + self.label_offset).to(
                        device
                    ),
                    "crowd": torch.from_numpy(crowd).to(device),
                }
            )
        return targets

    @staticmethod
    def _image_label(batch: Mapping, i: int) -> int | None:
        for key in ("image_label", "label"):
            values = batch.get(key)
            if values is None:
                continue
            try:
                value = values[i]
                return int(value.item() if hasattr(value, "item") else value)
            except (TypeError, ValueError, IndexError, RuntimeError):
                return None
        return None

    def _count_dropped(self, where: str, count: int) -> None:
        self.boxes_dropped += count
        if self._warned < _WARN_SAMPLES:
            self._warned += 1
            more = "" if self._warned < _WARN_SAMPLES else " (further samples only counted)"
            log.warning(
                "%s: dropped %d box(es) with no area inside the image%s", where, count, more
            )

    # -- the model contract ------------------------------------------------------------------------
    def train_step(self, batch: Mapping, optim_wrapper) -> dict[str, torch.Tensor | float]:
        """Losses on one batch, one optimiser update; returns the scalars to log."""
        image = batch["image"]
        targets = self.adapt_targets(self.targets_from_batch(batch, image))
        if not self.training:
            self.train()
        with optim_wrapper.optim_context(self):
            losses = self.detector(image, targets)
        loss = sum(losses.values())
        optim_wrapper.update_params(loss)
        out: dict[str, torch.Tensor | float] = {"loss": loss.detach()}
        out.update({f"loss_{self.LOSS_NAMES.get(k, k)}": v.detach() for k, v in losses.items()})
        out["boxes_dropped"] = float(self.boxes_dropped)
        return out

    @torch.no_grad()
    def predict_boxes(self, image: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Detections in the pixels of ``image`` (N, C, H, W), labels as class indices.

        Single-stage families run ``forward`` (the whole batch in a few tensor ops; the same
        detections as torchvision's per-image post-processing, ``torchvision_predictions``).
        """
        was_training = self.training
        self.eval()
        try:
            return unpad_detections(self(image))
        finally:
            self.train(was_training)

    @torch.no_grad()
    def torchvision_predictions(self, image: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Detections from torchvision's own eval path (the reference ``forward`` must match)."""
        was_training = self.detector.training
        self.detector.eval()
        try:
            dets = self.detector(image)
        finally:
            self.detector.train(was_training)
        return [
            {
                "bboxes": d["boxes"],
                "scores": d["scores"],
                "labels": d["labels"].to(torch.int64) - self.label_offset,
            }
            for d in dets
        ]

    def val_step(self, batch: Mapping) -> list[dict[str, torch.Tensor]]:
        """One prediction dict per image, boxes in the original image's pixels."""
        preds = self.predict_boxes(batch["image"])
        metas = batch.get("image_meta")
        for i, pred in enumerate(preds):
            meta = metas[i] if isinstance(metas, (list, tuple)) and i < len(metas) else None
            pred["bboxes"] = boxes_to_original(pred["bboxes"], meta)
        return preds

    def test_step(self, batch: Mapping) -> list[dict[str, torch.Tensor]]:
        """Same as ``val_step``."""
        return self.val_step(batch)

    def extract_features(self, batch: Mapping) -> torch.Tensor:
        """Image embeddings (N, D): the coarsest pyramid level, average-pooled."""
        image = batch["image"] if isinstance(batch, Mapping) else batch
        images, _ = self.detector.transform(image)
        feats = self.detector.backbone(images.tensors)
        last = list(feats.values())[-1]
        return last.mean(dim=(-2, -1))

    # -- deployment -------------------------------------------------------------------------------
    #: What ``forward`` returns (the ONNX output name) and the meaning of its last axis.
    OUTPUT_NAME = "detections"
    OUTPUT_COLUMNS = ("x0", "y0", "x1", "y1", "score", "label")
    #: ONNX Runtime vs PyTorch: the largest box/score difference allowed after matching.
    EXPORT_ATOL = 1e-3

    def output_difference(self, reference, other) -> float:
        """How far two ``detections`` outputs are apart (``detection_difference``, matched rows)."""
        det = self.detector
        thresh = getattr(det, "score_thresh", None)  # Faster R-CNN keeps it in its RoI heads
        if thresh is None:
            thresh = getattr(getattr(det, "roi_heads", None), "score_thresh", 0.0)
        return detection_difference(reference, other, float(thresh), self.EXPORT_ATOL)

    def forward(self, image: torch.Tensor, **kwargs) -> torch.Tensor:
        """The deployment graph: ``detections`` (N, K, 6) for a batch tensor (N, C, H, W).

        Each row is ``x0, y0, x1, y1, score, label`` in the pixels of ``image``, best first;
        unused rows have label -1 (K = ``detections_per_img``). They are the detections of
        torchvision's post-processing (``torchvision_predictions``), re-written in batch tensor ops, so an
        ONNX export keeps NMS in the graph and a dynamic batch axis, and MLflow's pyfunc gets
        one tensor. ``unpad_detections`` turns it back into prediction dicts.
        """
        det = self.detector
        x = det.transform.normalised(image)
        feats = list(det.backbone(x).values())
        boxes, scores = self.dense_predictions(feats, x)
        h, w = x.shape[-2], x.shape[-1]
        return select_detections(
            boxes,
            scores,
            (h, w),
            float(det.score_thresh),
            float(det.nms_thresh),
            int(det.topk_candidates),
            int(det.detections_per_img),
        )

    def dense_predictions(
        self, feats: list[torch.Tensor], image: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per pyramid level: decoded boxes (N, L, 4) and class scores (N, L, C) (single-stage
        families implement it)."""
        raise NotImplementedError

    def level_anchors(self, feats: list[torch.Tensor], image: torch.Tensor) -> list[torch.Tensor]:
        """The anchors of one image, split by level ((L_l, 4) each; every image has the same)."""
        from torchvision.models.detection.image_list import ImageList

        det = self.detector
        h, w = image.shape[-2], image.shape[-1]
        one = ImageList(image[:1], [(h, w)])
        anchors = det.anchor_generator(one, [f[:1] for f in feats])[0]
        sizes = [
            f.shape[-2] * f.shape[-1] * det.anchor_generator.num_anchors_per_location()[k]
            for k, f in enumerate(feats)
        ]
        return list(anchors.split(sizes))


def select_detections(
    boxes: list[torch.Tensor],
    scores: list[torch.Tensor],
    hw: tuple,
    score_thresh: float,
    nms_thresh: float,
    topk: int,
    k: int,
) -> torch.Tensor:
    """torchvision's single-stage post-processing on a whole batch: (N, k, 6) detection rows.

    Per level: the ``topk`` best (location, class) scores above ``score_thresh``; then
    class-wise NMS per image (one ``nms`` call, boxes offset by image and class), then the ``k``
    best per image. Only tensor ops: a traced graph keeps the batch size symbolic.
    """
    from torchvision.ops import nms

    n = boxes[0].shape[0]
    num_classes = scores[0].shape[-1]
    device = boxes[0].device
    h, w = hw
    cand_scores, cand_boxes, cand_labels = [], [], []
    for level_boxes, level_scores in zip(boxes, scores):
        flat = level_scores.reshape(n, -1)
        top, idx = flat.topk(min(topk, flat.shape[1]), dim=1)
        location = torch.div(idx, num_classes, rounding_mode="floor")
        picked = torch.gather(level_boxes, 1, location[..., None].expand(-1, -1, 4))
        cand_scores.append(top)
        cand_boxes.append(picked)
        cand_labels.append(idx % num_classes)
    score = torch.cat(cand_scores, 1).reshape(-1)
    box = torch.cat(cand_boxes, 1).reshape(-1, 4)
    label = torch.cat(cand_labels, 1).reshape(-1)
    image = torch.arange(n, device=device)[:, None].expand(-1, score.shape[0] // n).reshape(-1)
    box = torch.stack(
        [
            box[:, 0].clamp(0, w),
            box[:, 1].clamp(0, h),
            box[:, 2].clamp(0, w),
            box[:, 3].clamp(0, h),
        ],
        dim=1,
    )
    keep = score > score_thresh
    score, box, label, image = score[keep], box[keep], label[keep], image[keep]
    # one NMS for the batch: boxes of different (image, class) groups never overlap
    group = (image * num_classes + label).to(box.dtype)
    span = torch.maximum(torch.as_tensor(h), torch.as_tensor(w)).to(box.dtype) + 1.0
    kept = nms(box + (group * span)[:, None], score, nms_thresh)
    score, box, label, image = score[kept], box[kept], label[kept], image[kept]
    one_hot = (image[:, None] == torch.arange(n, device=device)[None, :]).to(torch.int64)
    rank = (one_hot.cumsum(0) * one_hot).sum(1) - 1  # kept is sorted by score: rank per image
    sel = rank < k
    score, box, label, image, rank = score[sel], box[sel], label[sel], image[sel], rank[sel]
    slot = image * k + rank
    rows = torch.cat([box, score[:, None], label[:, None].to(box.dtype)], dim=1)
    empty = torch.zeros(n * k, 6, dtype=box.dtype, device=device)
    empty[:, 5] = -1.0
    return empty.index_put((slot,), rows).reshape(n, k, 6)


def pad_detections(preds: list[dict[str, torch.Tensor]], k: int) -> torch.Tensor:
    """Prediction dicts -> ``forward``'s ``detections`` (N, k, 6) (label -1 in unused rows)."""
    out = torch.zeros(len(preds), k, 6)
    out[:, :, 5] = -1.0
    for i, pred in enumerate(preds):
        m = min(k, len(pred["scores"]))
        out[i, :m, :4] = pred["bboxes"][:m]
        out[i, :m, 4] = pred["scores"][:m]
        out[i, :m, 5] = pred["labels"][:m].to(out.dtype)
    return out


def unpad_detections(detections) -> list[dict[str, torch.Tensor]]:
    """``forward``'s ``detections`` (N, K, 6) (a tensor or an array) -> one dict per image."""
    rows = torch.as_tensor(detections)
    out = []
    for image in rows:
        used = image[image[:, 5] >= 0]
        out.append(
            {"bboxes": used[:, :4], "scores": used[:, 4], "labels": used[:, 5].to(torch.int64)}
        )
    return out


def detection_difference(reference, other, score_thresh: float = 0.0, atol: float = 1e-3) -> float:
    """The largest box/score difference between two ``detections`` outputs, after matching.

    Rows are matched per image by class and best IoU (greedy, best score first), so near-equal
    scores listed in another order do not count. A detection without a partner counts only if
    it is not borderline: it scores above ``score_thresh + atol`` and above the other side's
    lowest kept score + ``atol`` (a cut by ``detections_per_img`` can drop either of two ties).
    Returns ``inf`` when such a detection exists.
    """
    from torchvision.ops import box_iou

    worst = 0.0
    for ref, got in zip(unpad_detections(reference), unpad_detections(other)):
        used = torch.zeros(len(got["scores"]), dtype=torch.bool)
        iou = (
            box_iou(ref["bboxes"].float(), got["bboxes"].float())
            if len(ref["scores"]) and len(got["scores"])
            else None
        )
        lonely_ref = []
        for i in torch.argsort(ref["scores"], descending=True).tolist():
            if iou is None:
                lonely_ref.append(i)
                continue
            cand = iou[i].clone()
            cand[used | (got["labels"] != ref["labels"][i])] = -1.0
            j = int(cand.argmax())
            if cand[j] < 0.5:
                lonely_ref.append(i)
                continue
            used[j] = True
            worst = max(
                worst,
                float((ref["bboxes"][i] - got["bboxes"][j]).abs().max()),
                float((ref["scores"][i] - got["scores"][j]).abs()),
            )

        def borderline(score, side) -> bool:
            floor = float(side["scores"].min()) if len(side["scores"]) else score_thresh
            return score <= score_thresh + atol or score <= floor + atol

        for i in lonely_ref:
            if not borderline(float(ref["scores"][i]), got):
                return float("inf")
        for j in (~used).nonzero().flatten().tolist():
            if not borderline(float(got["scores"][j]), ref):
                return float("inf")
    return worst
