"""``DetectionPredictor`` (PREDICTORS ``"detection"``): boxes, scores and labels for images.

A detector's deployment graph (its ``forward``, and so its ONNX export) maps ``image``
(N, 3, H, W) to ``detections`` (N, K, 6): rows ``x0, y0, x1, y1, score, label`` in the network
input's pixels, label -1 for unused rows. The predictor runs it on the resized batch, drops the
unused rows and maps the boxes back to each original image's pixels (``image_meta``'s
``scale_factor``), clipped to the image.

Example:
    >>> det = load_model("runs:/0a1b.../onnx_model")        # a detector: task 'detection'
    >>> det.predict([image])[0]   # {'bboxes': (K, 4) float32, 'scores': (K,), 'labels': (K,) int64}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError
from antgo_mlflow.inference.predictor import PREDICTORS, Predictor


def split_detections(out: np.ndarray, image_meta: list[dict[str, Any]]) -> list[dict]:
    """``detections`` (N, K, 6) in network pixels -> one dict per image in original pixels."""
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 3 or out.shape[-1] != 6 or out.shape[0] != len(image_meta):
        raise DataError(
            f"a detector returned shape {out.shape}; expected ({len(image_meta)}, K, 6) "
            "detections (x0, y0, x1, y1, score, label)"
        )
    preds = []
    for rows, meta in zip(out, image_meta):
        rows = rows[rows[:, 5] >= 0]
        sx, sy = meta.get("scale_factor", (1.0, 1.0))
        oh, ow = meta.get("ori_shape", (np.inf, np.inf))
        boxes = rows[:, :4] / np.asarray([sx, sy, sx, sy], dtype=np.float32)
        boxes = np.clip(boxes, 0.0, np.asarray([ow, oh, ow, oh], dtype=np.float32))
        preds.append(
            {
                "bboxes": boxes.astype(np.float32),
                "scores": rows[:, 4].astype(np.float32),
                "labels": rows[:, 5].astype(np.int64),
            }
        )
    return preds


@PREDICTORS.register_module("detection")
class DetectionPredictor(Predictor):
    """Detections for images: ``{"bboxes" (K, 4) xyxy original pixels, "scores", "labels"}``."""

    task = "detection"

    def predict_batch(self, batch: np.ndarray, image_meta: list[dict[str, Any]]) -> list[dict]:
        return split_detections(self.runtime.outputs(batch), image_meta)

    @property
    def class_names(self) -> list[str]:
        """Class names in index order: recorded with the model, else the module's own."""
        names = super().class_names
        module = self.runtime.module
        own = [str(n) for n in (getattr(module, "class_names", None) or [])]
        return names or (own if len(own) == self.num_classes else [])

    def _probe_classes(self) -> int:
        # a detector's output does not show its class count: the module or its class names do
        module = self.runtime.module
        count = getattr(module, "num_classes", None) if module is not None else None
        if isinstance(count, int) and count > 0:
            return count
        meta = self.info.metadata.get("antgo.num_classes")
        if isinstance(meta, (int, str)) and str(meta).isdigit():
            return int(meta)
        return len(self._class_names)


__all__ = ["DetectionPredictor", "split_detections"]
