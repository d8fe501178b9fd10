"""Every torchvision.transforms.v2 class, registered under its own name and run on ``sample[k]``.

``dict(type='RandomCrop', size=32, padding=4, keys=['image'])`` builds ``v2.RandomCrop(size=32,
padding=4)`` wrapped so that one call transforms every key in ``keys`` *and* the sample's
``bboxes``, ``joints2d`` and polygon ``segments`` with the same random parameters (through
``tv_tensors.BoundingBoxes`` / ``KeyPoints`` / ``Mask``). After a geometric op, boxes are clipped
to the new image, boxes that lost all their area are dropped together with their labels and other
per-instance fields, and joints that left the image get ``joints_vis = 0``. ``height``/``width``
follow the image.

Image types: a numpy HWC array comes back as numpy, a PIL image as PIL, a tensor as a tensor
(except for the conversion ops: ToImage, PILToTensor, ToPILImage, ToDtype, ...). Encoded bytes are
decoded first (see ``DecodeImage``). Keys whose name ends in ``mask`` (and ``semantic``,
``label_map``) are treated as segmentation masks (nearest interpolation, no colour change).

Coordinate conventions are torchvision's: a horizontal flip maps box edges x -> W - x and points
x -> W - 1 - x (a point is a pixel index).

``SanitizeKeyPoints`` only marks joints outside the image invisible (deleting points would break
the (N, K) joint layout). ``RandomIoUCrop``/``SanitizeBoundingBoxes`` do nothing on a sample
without boxes. Ops that cannot move boxes (AutoAugment, RandAugment, TrivialAugmentWide, AugMix,
FiveCrop, TenCrop) refuse samples with annotations unless built with ``ignore_annotations=True``.

Not wrapped: ``ToTensor``, ``Normalize``, ``Compose``, ``RandomApply``, ``RandomChoice`` and
``RandomOrder`` have sample-dict versions of their own (formatting.py, compose.py) with the same
arguments. ``MixUp``/``CutMix`` are batch ops: call them on a collated batch dict whose
``image`` is (B, C, H, W) and ``label`` is (B,); ``label`` becomes (B, num_classes).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors as tvt
from torchvision.transforms import v2

from antgo_mlflow.data.transforms.annotations import (
    PointSet,
    drop_lost_boxes,
    hide_outside_joints,
    is_label_map,
    keep_instances,
    num_boxes,
)
from antgo_mlflow.data.transforms.base import ENCODED, BaseTransform, decode_image, is_pil
from antgo_mlflow.errors import DataError
from antgo_mlflow.registry import TRANSFORMS

# Names that have sample-dict implementations of their own elsewhere in this package.
OWN_IMPLEMENTATION = {
    "ToTensor",
    "Normalize",
    "Compose",
    "RandomApply",
    "RandomChoice",
    "RandomOrder",
}

# Ops that never move pixels: annotations are not passed to them (saves the tv_tensor wrapping).
PHOTOMETRIC = {
    "ColorJitter",
    "ConvertImageDtype",
    "GaussianBlur",
    "GaussianNoise",
    "Grayscale",
    "Identity",
    "JPEG",
    "Lambda",
    "LinearTransformation",
    "PILToTensor",
    "RGB",
    "RandomAdjustSharpness",
    "RandomAutocontrast",
    "RandomChannelPermutation",
    "RandomEqualize",
    "RandomErasing",
    "RandomGrayscale",
    "RandomInvert",
    "RandomPhotometricDistort",
    "RandomPosterize",
    "RandomSolarize",
    "ToDtype",
    "ToImage",
    "ToPILImage",
    "ToPureTensor",
    "UniformTemporalSubsample",
}
# Ops whose output type is the point: a numpy input is not turned back into numpy.
CONVERTERS = {
    "ConvertImageDtype",
    "PILToTensor",
    "ToDtype",
    "ToImage",
    "ToPILImage",
    "ToPureTensor",
}
# Geometric ops that cannot move boxes/points (torchvision rejects them, or returns several
# images): on a sample with annotations they raise unless built with ignore_annotations=True.
NO_ANNOTATIONS = {
    "AugMix",
    "AutoAugment",
    "FiveCrop",
    "RandAugment",
    "TenCrop",
    "TrivialAugmentWide",
}
BATCH_OPS = {"MixUp", "CutMix"}
# Detection ops that torchvision rejects on a sample without boxes: there they do nothing.
NEED_BOXES = {"RandomIoUCrop", "SanitizeBoundingBoxes"}

MASK_NAMES = ("semantic", "label_map", "segmentation")


def _is_mask_key(key: str) -> bool:
    return key.endswith("mask") or key in MASK_NAMES


def _as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A tensor view of ``arr`` (no copy, whatever the layout), or a copy for negative strides."""
    if any(st < 0 for st in arr.strides) or not arr.flags.writeable:
        arr = np.array(arr, order="C")
    return torch.from_numpy(arr)


def _wrap(value: Any, key: str) -> tuple[Any, str | None]:
    """Turn ``sample[key]`` into what v2 understands and say how to turn it back."""
    if isinstance(value, ENCODED):
        value = decode_image(value)
    if isinstance(value, np.ndarray):
        if value.ndim not in (2, 3):
            return value, None
        t = _as_tensor(value)
        t = t.permute(2, 0, 1) if t.ndim == 3 else t.unsqueeze(0)
        cls = tvt.Mask if _is_mask_key(key) else tvt.Image
        return cls(t), ("numpy3" if value.ndim == 3 else "numpy2")
    if isinstance(value, torch.Tensor) and not isinstance(value, tvt.TVTensor):
        cls = tvt.Mask if _is_mask_key(key) else tvt.Image
        if value.ndim < 2:
            return value, None
        return cls(value), "tensor"
    return value, None


def _unwrap(value: Any, how: str | None, convert: bool) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v, how, convert) for v in value)
    if isinstance(value, tvt.TVTensor) and isinstance(value, (tvt.Image, tvt.Mask)):
        value = value.as_subclass(torch.Tensor)
    if convert and how and how.startswith("numpy") and isinstance(value, torch.Tensor):
        if how == "numpy3":
            return value.permute(1, 2, 0).numpy()
        return value[0].numpy() if value.ndim == 3 else value.numpy()
    return value


def _hw_of(value: Any) -> tuple[int, int] | None:
    if isinstance(value, torch.Tensor):
        shape = value.shape
        return (int(shape[-2]), int(shape[-1])) if len(shape) >= 2 else None
    if is_pil(value):
        return value.height, value.width
    return None


class TorchvisionTransform(BaseTransform):
    """A torchvision v2 transform applied to ``sample[k]`` for k in ``keys`` plus the annotations.

    Subclasses are generated per torchvision class (``tv_cls``); the constructor takes the
    torchvision arguments and ``keys``.
    """

    tv_cls: type = v2.Identity
    moves_geometry = True
    converts = False
    supports_annotations = True
    needs_boxes = False

    def __init__(self, keys=("image",), ignore_annotations: bool = False, **kwargs):
        super().__init__(keys)
        self.ignore_annotations = ignore_annotations
        self.op = self.tv_cls(**kwargs)

    def _refuse_annotations(self, sample: dict[str, Any]) -> None:
        present = [
            f
            for f in ("bboxes", "joints2d", "segments")
            if sample.get(f) is not None and len(sample[f])
        ]
        if present:
            name = type(self).__name__
            raise DataError(
                f"{name} cannot move {', '.join(present)} with the image (torchvision does not "
                f"support it); use it on classification samples, or pass ignore_annotations=True "
                f"to {name} to leave them unchanged"
            )

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if not self.supports_annotations and not self.ignore_annotations:
            self._refuse_annotations(sample)
        if self.needs_boxes and not num_boxes(sample):
            return sample
        inputs: dict[str, Any] = {}
        how: dict[str, str | None] = {}
        canvas = canvas_key = None
        for k in self.keys:
            inputs[k], how[k] = _wrap(self._get(sample, k), k)
            if canvas is None and not _is_mask_key(k):
                canvas, canvas_key = _hw_of(inputs[k]), k
        boxes = points = None
        n = 0
        if self.moves_geometry and canvas is not None:
            n = num_boxes(sample)
            if n:
                boxes = np.asarray(sample["bboxes"], dtype=np.float32).reshape(n, 4)
                inputs["__boxes"] = tvt.BoundingBoxes(
                    torch.from_numpy(boxes), format="XYXY", canvas_size=canvas
                )
                inputs["labels"] = torch.arange(n)  # survivors of Sanitize*/IoU crops
            points = PointSet.from_sample(sample, canvas)
            if len(points):
                inputs["__points"] = tvt.KeyPoints(
                    torch.from_numpy(points.points), canvas_size=canvas
                )
            segs = sample.get("segments")
            if segs is not None and is_label_map(segs, canvas):
                inputs["__labelmap"] = tvt.Mask(torch.from_numpy(segs).unsqueeze(0))
        try:
            out = self.op(inputs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{type(self).__name__} on {self.keys}: {exc}") from exc
        for k in self.keys:
            sample[k] = _unwrap(out[k], how[k], not self.converts)
        if not self.moves_geometry or canvas is None:
            return sample
        new_hw = _hw_of(out[canvas_key]) or canvas
        if "__labelmap" in out:
            sample["segments"] = out["__labelmap"].as_subclass(torch.Tensor)[0].numpy()
        if points is not None and len(points):
            points.points = out["__points"].as_subclass(torch.Tensor).numpy()
            points.write_back(sample, new_hw)
        if boxes is not None:
            survivors = out["labels"].numpy()
            if survivors.shape[0] != n:
                keep_instances(sample, survivors)
                boxes = boxes[survivors]
            new_boxes = out["__boxes"]
            if new_boxes.format == tvt.BoundingBoxFormat.XYXY:
                drop_lost_boxes(sample, boxes, new_boxes.as_subclass(torch.Tensor).numpy(), new_hw)
            else:  # ConvertBoundingBoxFormat: the user asked for another format
                sample["bboxes"] = new_boxes.as_subclass(torch.Tensor).numpy()
        if "height" in sample and "width" in sample and tuple(new_hw) != tuple(canvas):
            sample["height"], sample["width"] = int(new_hw[0]), int(new_hw[1])
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.op!r}, keys={self.keys})"


class TorchvisionBatchTransform(TorchvisionTransform):
    """MixUp/CutMix on a collated batch: ``sample[keys[0]]`` (B, C, H, W), ``sample[label_key]`` (B,)."""

    moves_geometry = False

    def __init__(self, keys=("image",), label_key: str = "label", **kwargs):
        super().__init__(keys, False, **kwargs)
        self.label_key = label_key

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        images = self._get(sample, self.keys[0])
        labels = torch.as_tensor(self._get(sample, self.label_key))
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise DataError(
                f"{type(self).__name__} works on a batch: {self.keys[0]!r} must be a "
                f"(B, C, H, W) tensor, got {type(images).__name__} {getattr(images, 'shape', '')}"
            )
        try:
            images, labels = self.op(images, labels)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{type(self).__name__} on {self.keys}: {exc}") from exc
        sample[self.keys[0]] = images.as_subclass(torch.Tensor)
        sample[self.label_key] = labels
        return sample


def _make_wrapper(name: str, tv_cls: type) -> type:
    base = TorchvisionBatchTransform if name in BATCH_OPS else TorchvisionTransform
    cls = type(
        name,
        (base,),
        {
            "tv_cls": tv_cls,
            "moves_geometry": name not in PHOTOMETRIC
            and name not in NO_ANNOTATIONS
            and base is TorchvisionTransform,
            "converts": name in CONVERTERS,
            "supports_annotations": name not in NO_ANNOTATIONS,
            "needs_boxes": name in NEED_BOXES,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"torchvision.transforms.v2.{name} on ``sample[k]`` for k in ``keys``.\n\n"
            + (tv_cls.__doc__ or ""),
        },
    )
    # The registry checks config keys against this signature: torchvision's arguments + ours.
    params = [
        p
        for p in inspect.signature(tv_cls).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    params = [p.replace(kind=p.KEYWORD_ONLY) for p in params]
    params.append(inspect.Parameter("keys", inspect.Parameter.KEYWORD_ONLY, default=("image",)))
    if name in NO_ANNOTATIONS:
        params.append(
            inspect.Parameter("ignore_annotations", inspect.Parameter.KEYWORD_ONLY, default=False)
        )
    if base is TorchvisionBatchTransform:
        params.append(
            inspect.Parameter("label_key", inspect.Parameter.KEYWORD_ONLY, default="label")
        )
    cls.__signature__ = inspect.Signature(params)
    return cls


def _register_all() -> list[str]:
    names = []
    for name in sorted(dir(v2)):
        obj = getattr(v2, name)
        if (
            not inspect.isclass(obj)
            or not issubclass(obj, v2.Transform)
            or obj is v2.Transform
            or name.startswith("_")
            or name in OWN_IMPLEMENTATION
            or name in globals()
        ):
            continue
        cls = _make_wrapper(name, obj)
        globals()[name] = cls  # importable by name, so DataLoader workers can pickle it
        TRANSFORMS.register_module(name=name, module=cls)
        names.append(name)
    return names


@TRANSFORMS.register_module()
class SanitizeKeyPoints(BaseTransform):
    """Mark joints outside the image invisible (``joints_vis = 0``).

    torchvision's SanitizeKeyPoints deletes points, which would break the (N, K) joint layout;
    instances are removed with their boxes (SanitizeBoundingBoxes, or any geometric op).
    ``labels_getter`` is accepted for config compatibility and ignored.
    """

    def __init__(self, keys=("image",), labels_getter: Any = None):
        super().__init__(keys)

    def __call__(self, sample):
        joints = sample.get("joints2d")
        canvas = None
        for k in self.keys:
            value = sample.get(k)
            canvas = value.shape[:2] if isinstance(value, np.ndarray) else _hw_of(value)
            if canvas:
                break
        if joints is not None and len(joints) and canvas:
            xy = np.asarray(joints, np.float32)[..., :2]
            hide_outside_joints(sample, xy, tuple(canvas))
        return sample


TORCHVISION_NAMES = _register_all()
