"""COCO-style detection metrics (METRICS): ``DetectionEval`` (alias ``CocoMetric``).

It follows the metric protocol: ``reset()``, ``process(predictions, batch)`` once per validation
batch (``predictions`` as the detectors' ``val_step`` returns them: boxes xyxy in the original
image's pixels), ``compute() -> dict[str, float]`` and ``artifacts(out_dir, class_names)``.

Ground truth comes from the same batch (``bboxes``, ``labels``, ``box_visibility``, in the pixels
the pipeline produced): it is mapped back to the original image with ``image_meta`` exactly like
the predictions, so both meet in original pixels. Crowd boxes (``box_visibility`` 0) become
COCO ``iscrowd`` annotations: detections on them are neither true nor false positives.

Returned keys: ``mAP`` (AP averaged over IoU 0.50:0.95), ``mAP50``, ``mAP75``, ``mAP_small`` /
``mAP_medium`` / ``mAP_large``, ``mAR100``, and ``AP_<class>`` (AP 0.50:0.95 of each class that
has ground truth). ``evaluation.save_best='mAP'`` keeps the best checkpoint by ``mAP``.

Backends compute the same COCO numbers: ``faster_coco_eval`` (the default, measured fastest here:
``benchmarks/bench_detection.py``), ``pycocotools`` and ``torchmetrics``.

Example:
    >>> metric = METRICS.build(dict(type="DetectionEval", class_names=["cat", "dog"]))
    >>> metric.reset(); metric.process(model.val_step(batch), batch); metric.compute()["mAP50"]
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from antgo_mlflow.data.transforms.annotations import map_boxes
from antgo_mlflow.engine.metrics import BaseMetric
from antgo_mlflow.errors import ConfigError, DataError, MissingDependencyError
from antgo_mlflow.fileio import atomic_write_bytes, atomic_write_text
from antgo_mlflow.registry import METRICS, current_path

BACKENDS = ("faster_coco_eval", "pycocotools", "torchmetrics")
# image ids are rank * _RANK_STRIDE + the image's number on that rank (unique under DDP)
_RANK_STRIDE = 10**9
_STAT_KEYS = {
    0: "mAP",
    1: "mAP50",
    2: "mAP75",
    3: "mAP_small",
    4: "mAP_medium",
    5: "mAP_large",
    8: "mAR100",
}


def _numpy(value, dtype=np.float64) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _apply(boxes: np.ndarray, meta, inverse: bool) -> np.ndarray:
    """Boxes between pipeline pixels and original pixels (``inverse``: pipeline -> original)."""
    return map_boxes(boxes, meta if isinstance(meta, dict) else None, to_original=inverse)


def _group(rows: np.ndarray) -> dict[float, np.ndarray]:
    """Rows grouped by their first column (the image id), order kept."""
    if not len(rows):
        return {}
    order = np.argsort(rows[:, 0], kind="stable")
    rows = rows[order]
    ids, starts = np.unique(rows[:, 0], return_index=True)
    ends = np.append(starts[1:], len(rows))
    return {float(i): rows[a:b] for i, a, b in zip(ids, starts, ends)}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name)) or "_"


class _Image:
    """One evaluated image: ground truth and detections in original pixels."""

    __slots__ = ("gt", "gt_labels", "crowd", "boxes", "scores", "labels", "hw")

    def __init__(self, gt, gt_labels, crowd, boxes, scores, labels, hw):
        self.gt, self.gt_labels, self.crowd = gt, gt_labels, crowd
        self.boxes, self.scores, self.labels, self.hw = boxes, scores, labels, hw


@METRICS.register_module(name=["DetectionEval", "CocoMetric"])
class DetectionEval(BaseMetric):
    """COCO mAP@[.5:.95], mAP50, mAP75, per-class AP; PR curves and drawn detections as artifacts.

    Under DDP every process's images are gathered (rows of tensors, no pickles) before
    ``compute``; the drawn images are the main process's first ones.

    Args:
        class_names: names for the ``AP_<class>`` keys (default: the class indices).
        meta: or a ``meta.json`` (or the folder / GT JSON beside it) whose categories name them.
        backend: ``faster_coco_eval`` (default), ``pycocotools`` or ``torchmetrics``.
        max_dets: detections per image considered (COCO: 100).
        num_draw: images drawn into ``detections.png`` (predictions vs ground truth).
        draw_score: lowest score drawn.
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        backend: str = "faster_coco_eval",
        max_dets: int = 100,
        num_draw: int = 8,
        draw_score: float = 0.3,
        meta: str | None = None,
    ):
        super().__init__()
        path = current_path("evaluation.metric")
        if meta and not class_names:
            from antgo_mlflow.models.detectors.base import resolve_classes

            class_names = resolve_classes(None, meta, None, path)[1]
        if backend not in BACKENDS:
            raise ConfigError(
                f"{path}.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}"
            )
        self.class_names = [str(n) for n in class_names] if class_names else None
        self.backend = backend
        self.max_dets = int(max_dets)
        self.num_draw = int(num_draw)
        self.draw_score = float(draw_score)
        self.reset()

    # -- protocol ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything processed so far."""
        super().reset()
        self._count = 0
        self._drawn: list = []
        self._precision: np.ndarray | None = None
        self._cat_ids: list[int] = []

    def process(self, predictions: Sequence[Mapping], batch: Mapping) -> None:
        """Add one batch: ``predictions[i]`` (bboxes, scores, labels) and the batch's ground truth."""
        from antgo_mlflow.engine import dist

        if "bboxes" not in batch or "labels" not in batch:
            raise DataError(
                "evaluation.metric: DetectionEval needs 'bboxes' and 'labels' in the validation "
                f"batch (fields: {', '.join(sorted(map(str, batch)))}); a classification GT?"
            )
        metas = batch.get("image_meta")
        vis_all = batch.get("box_visibility")
        rank = dist.get_rank()
        images, gts, dets = [], [], []
        for i, pred in enumerate(predictions):
            meta = metas[i] if isinstance(metas, (list, tuple)) and i < len(metas) else None
            uid = float(rank * _RANK_STRIDE + self._count)
            self._count += 1
            gt_pipe = _numpy(batch["bboxes"][i]).reshape(-1, 4)
            gt_labels = _numpy(batch["labels"][i]).reshape(-1)
            crowd = np.zeros(len(gt_pipe))
            if vis_all is not None:
                vis = _numpy(vis_all[i]).reshape(-1)
                if len(vis) == len(gt_pipe):
                    crowd = (vis == 0).astype(np.float64)
            boxes = _numpy(pred["bboxes"]).reshape(-1, 4)
            scores = _numpy(pred["scores"]).reshape(-1)
            labels = _numpy(pred["labels"]).reshape(-1)
            hw = meta.get("ori_shape") if isinstance(meta, Mapping) else None
            images.append([uid, *(hw if hw is not None else (-1.0, -1.0))])
            gt = _apply(gt_pipe, meta, True)
            gts.append(np.column_stack([np.full(len(gt), uid), gt, gt_labels, crowd]))
            dets.append(np.column_stack([np.full(len(boxes), uid), boxes, scores, labels]))
            if len(self._drawn) < self.num_draw and "image" in batch:
                draw = (_display(batch["image"][i]), gt_pipe, gt_labels, _apply(boxes, meta, False))
                self._drawn.append((*draw, scores, labels))
        self.add_rows(
            images=np.asarray(images, np.float64).reshape(-1, 3),
            gt=np.concatenate(gts).reshape(-1, 7) if gts else np.zeros((0, 7)),
            dets=np.concatenate(dets).reshape(-1, 7) if dets else np.zeros((0, 7)),
        )

    def evaluated_images(self) -> list[_Image]:
        """Every processed image (of every process), ground truth and detections."""
        rows = self.gathered()
        if not rows:
            return []
        gt_of, det_of = _group(rows["gt"]), _group(rows["dets"])
        empty = np.zeros((0, 7))
        out = []
        for uid, h, w in rows["images"]:
            g, d = gt_of.get(uid, empty), det_of.get(uid, empty)
            out.append(
                _Image(
                    g[:, 1:5],
                    g[:, 5].astype(np.int64),
                    g[:, 6] > 0,
                    d[:, 1:5],
                    d[:, 5],
                    d[:, 6].astype(np.int64),
                    (h, w) if h >= 0 else None,
                )
            )
        return out

    def compute(self) -> dict[str, float]:
        """The COCO numbers over everything processed since ``reset``."""
        images = self.evaluated_images()
        categories = sorted(
            {int(v) for im in images for v in im.gt_labels}
            | {int(v) for im in images for v in im.labels}
        )
        out = {v: 0.0 for v in _STAT_KEYS.values()}
        if not images or not any(len(im.gt) for im in images):
            return out
        stats, precision, cat_ids, per_class = _EVALUATORS[self.backend](
            images, categories, self.max_dets
        )
        self._precision, self._cat_ids = precision, cat_ids
        for k, name in _STAT_KEYS.items():
            out[name] = max(float(stats[k]), 0.0)
        for cat, ap in per_class.items():
            if ap >= 0:
                out[f"AP_{_safe_name(self._name(cat))}"] = float(ap)
        return out

    def __call__(self, predictions, batch) -> dict[str, float]:
        """One-shot: ``reset``, ``process`` one batch, ``compute``."""
        self.reset()
        self.process(predictions, batch)
        return self.compute()

    def _name(self, cat: int, class_names: Sequence[str] | None = None) -> str:
        names = class_names or self.class_names
        if names and 0 <= cat < len(names):
            return str(names[cat])
        return str(cat)

    # -- artifacts ---------------------------------------------------------------------------------
    def artifacts(self, out_dir, class_names: Sequence[str] | None = None) -> list[Path]:
        """Write ``pr_curve.png`` (IoU 0.5, per class), ``detections.png`` and ``pr_curve.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        if self._precision is None:
            self.compute()
        if self._precision is not None:
            curves = {
                self._name(cat, class_names): self._precision[0, :, k, 0, -1].tolist()
                for k, cat in enumerate(self._cat_ids)
            }
            png, data = out / "pr_curve.png", out / "pr_curve.json"
            atomic_write_bytes(png, render_pr_png(curves))
            import json

            recall = np.linspace(0, 1, 101).tolist()
            atomic_write_text(data, json.dumps({"iou": 0.5, "recall": recall, "precision": curves}))
            paths += [png, data]
        if self._drawn:
            png = out / "detections.png"
            atomic_write_bytes(
                png,
                render_detections_png(
                    self._drawn, self.draw_score, lambda c: self._name(c, class_names)
                ),
            )
            paths.append(png)
        return paths


# -- evaluators ------------------------------------------------------------------------------------


def coco_inputs(images: Sequence[_Image], categories: Sequence[int]) -> tuple[dict, np.ndarray]:
    """The COCO ground-truth dict and the (D, 7) detection array for ``images``."""
    gt_images, anns, rows = [], [], []
    ann_id = 1
    for image_id, im in enumerate(images, start=1):
        entry = {"id": image_id}
        if im.hw is not None:
            entry["height"], entry["width"] = int(im.hw[0]), int(im.hw[1])
        gt_images.append(entry)
        for box, label, crowd in zip(im.gt, im.gt_labels, im.crowd):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h,
                    "iscrowd": int(bool(crowd)),
                }
            )
            ann_id += 1
        if len(im.boxes):
            b = im.boxes
            rows.append(
                np.column_stack(
                    [
                        np.full(len(b), image_id, np.float64),
                        b[:, 0],
                        b[:, 1],
                        b[:, 2] - b[:, 0],
                        b[:, 3] - b[:, 1],
                        im.scores,
                        im.labels + 1,
                    ]
                )
            )
    gt = {
        "images": gt_images,
        "annotations": anns,
        "categories": [{"id": c + 1, "name": str(c)} for c in categories],
    }
    dets = np.concatenate(rows) if rows else np.zeros((0, 7))
    return gt, dets


def _per_class(precision: np.ndarray, cat_ids: Sequence[int]) -> dict[int, float]:
    out = {}
    for k, cat in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[int(cat)] = float(p.mean()) if p.size else -1.0
    return out


def _run_cocoeval(gt_cls, eval_cls, images, categories, max_dets, **kwargs):
    gt_dict, dets = coco_inputs(images, categories)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        gt = gt_cls()
        gt.dataset = gt_dict
        gt.createIndex()
        if len(dets):
            dt = gt.loadRes(dets)
        else:  # loadRes refuses an empty array: an empty result set
            dt = gt_cls()
            dt.dataset = {
                "images": gt_dict["images"],
                "annotations": [],
                "categories": gt_dict["categories"],
            }
            dt.createIndex()
        evaluator = eval_cls(gt, dt, "bbox", **kwargs)
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    cat_ids = [c - 1 for c in evaluator.params.catIds]
    precision = np.asarray(evaluator.eval["precision"])
    return np.asarray(evaluator.stats), precision, cat_ids, _per_class(precision, cat_ids)


def _faster_coco_eval(images, categories, max_dets):
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError as exc:
        raise MissingDependencyError(
            f"DetectionEval backend faster_coco_eval: pip install faster-coco-eval ({exc})"
        ) from exc

    def noop(*args, **kwargs):
        return None

    return _run_cocoeval(COCO, COCOeval_faster, images, categories, max_dets, print_function=noop)


def _pycocotools(images, categories, max_dets):
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise MissingDependencyError(
            f"DetectionEval backend pycocotools: pip install pycocotools ({exc})"
        ) from exc
    return _run_cocoeval(COCO, COCOeval, images, categories, max_dets)


def _torchmetrics(images, categories, max_dets):
    try:
        import torch
        from torchmetrics.detection import MeanAveragePrecision
    except ImportError as exc:
        raise MissingDependencyError(
            f"DetectionEval backend torchmetrics: pip install torchmetrics ({exc})"
        ) from exc
    metric = MeanAveragePrecision(
        box_format="xyxy",
        iou_type="bbox",
        class_metrics=True,
        extended_summary=True,
        max_detection_thresholds=[1, 10, max_dets],
        backend="faster_coco_eval",
    )
    preds, targets = [], []
    for im in images:
        preds.append(
            {
                "boxes": torch.as_tensor(im.boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.as_tensor(im.scores, dtype=torch.float32),
                "labels": torch.as_tensor(im.labels, dtype=torch.int64),
            }
        )
        targets.append(
            {
                "boxes": torch.as_tensor(im.gt, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.as_tensor(im.gt_labels, dtype=torch.int64),
                "iscrowd": torch.as_tensor(im.crowd, dtype=torch.int64),
            }
        )
    metric.update(preds, targets)
    res = metric.compute()
    stats = np.full(12, -1.0)
    for k, key in {
        0: "map",
        1: "map_50",
        2: "map_75",
        3: "map_small",
        4: "map_medium",
        5: "map_large",
        8: f"mar_{max_dets}",
    }.items():
        stats[k] = float(res[key])
    classes = [int(c) for c in torch.atleast_1d(res["classes"]).tolist()]
    precision = res["precision"].numpy()
    per_class = {
        c: float(v) for c, v in zip(classes, torch.atleast_1d(res["map_per_class"]).tolist())
    }
    return stats, precision, classes, per_class


_EVALUATORS = {
    "faster_coco_eval": _faster_coco_eval,
    "pycocotools": _pycocotools,
    "torchmetrics": _torchmetrics,
}


# -- drawing ---------------------------------------------------------------------------------------


def _display(image: Any) -> np.ndarray:
    """A pipeline image (CHW tensor, maybe normalised) as HWC uint8 for drawing (min-max scaled)."""
    arr = _numpy(image, np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= 1.0 + 1e-6 and lo >= 0.0:
        arr = arr * 255.0
    elif hi > lo and (hi > 255.0 or lo < 0.0):
        arr = (arr - lo) / (hi - lo) * 255.0
    return np.clip(arr, 0, 255).astype(np.uint8)


def render_detections_png(drawn, min_score: float, name_of) -> bytes:
    """A grid of images: ground truth in green, detections (score >= ``min_score``) in red."""
    from PIL import Image, ImageDraw

    tiles = []
    for image, gt, gt_labels, boxes, scores, labels in drawn:
        tile = Image.fromarray(image).convert("RGB")
        scale = max(1, 256 // max(tile.size))
        if scale > 1:
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        for box, label in zip(gt * scale, gt_labels):
            draw.rectangle([float(v) for v in box], outline=(0, 255, 0), width=2)
            draw.text(
                (float(box[0]) + 2, float(box[3]) - 11), name_of(int(label)), fill=(0, 255, 0)
            )
        for box, score, label in zip(boxes * scale, scores, labels):
            if score < min_score:
                continue
            draw.rectangle([float(v) for v in box], outline=(255, 0, 0), width=1)
            draw.text(
                (float(box[0]) + 2, float(box[1]) + 1),
                f"{name_of(int(label))} {score:.2f}",
                fill=(255, 0, 0),
            )
        tiles.append(tile)
    cols = min(4, len(tiles))
    rows = -(-len(tiles) // cols)
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    grid = Image.new("RGB", (cols * w, rows * h), (32, 32, 32))
    for k, tile in enumerate(tiles):
        grid.paste(tile, ((k % cols) * w, (k // cols) * h))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()


def render_pr_png(curves: Mapping[str, Sequence[float]]) -> bytes:
    """PNG bytes of precision-recall curves at IoU 0.5 (one line per class)."""
    recall = np.linspace(0, 1, 101)
    buf = io.BytesIO()
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return _render_pr_with_pil(curves)
    fig = Figure(figsize=(6, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for name, precision in curves.items():
        p = np.asarray(precision, np.float64)
        ax.plot(recall[p >= 0], p[p >= 0], label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall, IoU 0.5")
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _render_pr_with_pil(curves) -> bytes:
    from PIL import Image, ImageDraw

    size = 400
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    for k, (name, precision) in enumerate(curves.items()):
        pts = [
            (20 + r * (size - 40) / 100, size - 20 - p * (size - 40))
            for r, p in enumerate(precision)
            if p >= 0
        ]
        if len(pts) > 1:
            draw.line(pts, fill=colours[k % len(colours)], width=2)
        draw.text((size - 120, 20 + 12 * k), name, fill=colours[k % len(colours)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["BACKENDS", "DetectionEval", "coco_inputs"]
