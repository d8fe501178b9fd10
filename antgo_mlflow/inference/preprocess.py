"""The training preprocessing for inference: HWC uint8 RGB images -> a normalised NCHW batch.

Where it comes from, per model source: an MLflow model's metadata ``antgo.preprocess`` (written by
export), else the training run's config (a checkpoint's config data, or the run's logged params:
the test/val/train pipeline's ``Normalize`` and ``export.input_shape_list``), else the recipes'
defaults (CIFAR statistics at 32x32, as in antgo's mvp config).

Example:
    >>> pre = preprocess_of(cfg)            # Preprocess(size=(32, 32), mean=(...), std=(...))
    >>> batch = pre([image_a, image_b])     # float32 (2, 3, 32, 32)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError

DEFAULT_MEAN = (0.491400, 0.482158, 0.4465231)
DEFAULT_STD = (0.247032, 0.243485, 0.2615877)
DEFAULT_SIZE = (32, 32)
_SPLITS = ("test", "val", "train")


@dataclass
class Preprocess:
    """How a model wants its input: resized to ``size`` (H, W), scaled to 0..1, normalised."""

    size: tuple[int, int] = DEFAULT_SIZE
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """HWC uint8 RGB images -> an NCHW float32 batch."""
        from PIL import Image

        h, w = self.size
        out = np.empty((len(images), 3, h, w), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        for i, image in enumerate(images):
            if image.shape[:2] != (h, w):
                image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
            out[i] = (image.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std
        return out

    @classmethod
    def from_dict(cls, pre: Mapping, size: tuple[int, int] | None = None) -> Preprocess:
        """From ``{"size", "mean", "std"}`` (any may be missing: the defaults fill in).

        DataError (one line) if a value is malformed (model metadata is only data, but not ours).
        """
        try:
            out = cls(
                size=tuple(int(v) for v in (pre.get("size") or size or DEFAULT_SIZE)),
                mean=tuple(float(v) for v in (pre.get("mean") or DEFAULT_MEAN)),
                std=tuple(float(v) for v in (pre.get("std") or DEFAULT_STD)),
            )
        except (TypeError, ValueError, AttributeError):
            out = None
        if out is None or len(out.size) != 2 or len(out.mean) != 3 or len(out.std) != 3:
            raise DataError(
                f"antgo.preprocess: expected size (H, W), 3 means, 3 stds; got {pre!r}"[:300]
            )
        return out


def preprocess_of(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Input size, mean and std read from a config (test pipeline's Normalize, export shape).

    Keys that are missing or malformed are left out (the defaults then apply).
    """
    info: dict[str, Any] = {}
    export = cfg.get("export")
    shapes = export.get("input_shape_list") if isinstance(export, Mapping) else None
    try:
        shape = (shapes or [[1, 3, 32, 32]])[0]
        info["size"] = [int(shape[2]), int(shape[3])]
    except (TypeError, ValueError, IndexError, KeyError):
        pass
    data = cfg.get("data")
    for split in _SPLITS:
        section = data.get(split) if isinstance(data, Mapping) else None
        steps = section.get("pipeline") if isinstance(section, Mapping) else None
        for step in steps if isinstance(steps, list) else []:
            if isinstance(step, Mapping) and step.get("type") == "Normalize":
                try:
                    info["mean"] = [float(v) for v in step.get("mean", ())]
                    info["std"] = [float(v) for v in step.get("std", ())]
                except (TypeError, ValueError):
                    info.pop("mean", None)
                return info
    return info


def preprocess_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The same from a training run's params (the config flattened by the MLflow logger)."""
    nested: dict[str, Any] = {}
    shape = params.get("export.input_shape_list")
    if shape:
        try:
            nested["export"] = {"input_shape_list": json.loads(shape)}
        except ValueError:
            pass
    data: dict[str, Any] = {}
    for split in _SPLITS:
        steps: dict[int, dict[str, Any]] = {}
        prefix = f"data.{split}.pipeline."
        for key, value in params.items():
            if not key.startswith(prefix):
                continue
            index, _, field = key[len(prefix) :].partition(".")
            if index.isdigit() and field in ("type", "mean", "std"):
                steps.setdefault(int(index), {})[field] = _param_value(value)
        if steps:
            data[split] = {"pipeline": [steps[i] for i in sorted(steps)]}
    nested["data"] = data
    info = preprocess_of(nested)
    if "export" not in nested:  # the size above is preprocess_of's default, not the run's
        info.pop("size", None)
    return info


def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
