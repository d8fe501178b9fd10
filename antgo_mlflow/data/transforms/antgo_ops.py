"""Ports of the antgo augmentation ops configs rely on (ResizeS, KeepRatio, RandomFlipImage, ...).

They keep antgo's names and arguments, work on ``sample['image']`` as an HWC numpy image
(encoded bytes and PIL images are converted first) and move ``bboxes``, ``joints2d``/``joints_vis``
and ``segments`` with the image. Known antgo bugs are fixed: boxes written to ``boxes`` instead of
``bboxes`` by MixupImage, inverted probabilities in ColorDistort, hue wrapped at 360 on OpenCV's
0-180 scale, and a brightness "delta" of 0.5-1.5 grey levels.

Randomness comes from Python's ``random`` (torchvision's from torch): ``random.seed`` makes a run
repeatable, and DataLoader gives every worker its own seed.

Coordinates follow torchvision (and so the registered torchvision ops): a horizontal flip maps box
edges x -> W - x and points x -> W - 1 - x; a resize scales x -> x * sx. ResizeS, KeepRatio and
RandomFlipImage also compose what they did into ``image_meta['affine']`` (original -> current
pixels, ``annotations.record_affine``), so detectors map their boxes back to the original image.

Mixing contract (MixupImage, CutmixImage):
    * per sample: the dataset (or an earlier op) puts a second, already decoded sample dict under
      ``sample['mixup']`` / ``sample['cutmix']`` (name set by ``partner_key``); the op mixes it in
      and removes that key. Without a partner the op only does the label bookkeeping below.
    * per batch: when ``sample['image']`` is a (B, C, H, W) tensor, each image is mixed with its
      neighbour in the batch (``roll(1)``), like torchvision's MixUp/CutMix.
    * classification: with ``num_classes`` set, ``label`` always becomes a float32 soft-label vector
      (num_classes,) (or (B, num_classes) for a batch) - one-hot when no mixing happened - so that
      every sample of a batch has the same type. Without ``num_classes`` ``label`` is left alone.
    * detection: the partner's ``bboxes``/``labels`` (and ``box_visibility``, ``joints2d``,
      ``joints_vis``, ``segments`` when both samples have compatible values) are appended
      (CutmixImage: only with ``mix_ann=True``, clipped to the pasted patch).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from antgo_mlflow.data.transforms.annotations import (
    PointSet,
    drop_lost_boxes,
    is_label_map,
    num_boxes,
    record_affine,
)
from antgo_mlflow.data.transforms.base import BaseTransform, as_numpy_image
from antgo_mlflow.errors import DataError
from antgo_mlflow.registry import TRANSFORMS

_INTERP = {"NEAREST": 0, "LINEAR": 1, "CUBIC": 2, "AREA": 3, "LANCZOS4": 4}  # cv2.INTER_* values


def _image(sample: dict[str, Any], op: str) -> np.ndarray:
    """``sample['image']`` as a writable, contiguous HWC numpy array (stored back in the sample)."""
    if "image" not in sample:
        raise DataError(f"{op}: sample has no field 'image'")
    img = as_numpy_image(sample["image"])
    if not img.flags.writeable or not img.flags.c_contiguous:
        img = np.array(img, copy=True, order="C")
    sample["image"] = img
    return img


def _meta(sample: dict[str, Any]) -> dict[str, Any]:
    meta = sample.get("image_meta")
    if not isinstance(meta, dict):
        meta = sample["image_meta"] = {}
    return meta


def _boxes(sample: dict[str, Any]) -> np.ndarray:
    n = num_boxes(sample)
    return (
        np.asarray(sample["bboxes"], dtype=np.float32).reshape(n, 4)
        if n
        else np.zeros((0, 4), np.float32)
    )


def _affine_annotations(
    sample: dict[str, Any],
    scale: tuple[float, float],
    shift: tuple[float, float],
    hw: tuple[int, int],
) -> None:
    """Apply x -> x * sx + dx, y -> y * sy + dy to boxes and points; clip/drop boxes to ``hw``."""
    sx, sy = scale
    dx, dy = shift
    boxes = _boxes(sample)
    if len(boxes):
        new = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array(
            [dx, dy, dx, dy], np.float32
        )
        drop_lost_boxes(sample, boxes, new, hw)
    points = PointSet.from_sample(sample)
    if len(points):
        points.points = points.points * np.array([sx, sy], np.float32) + np.array(
            [dx, dy], np.float32
        )
        points.write_back(sample, hw)


@TRANSFORMS.register_module()
class ResizeS(BaseTransform):
    """Resize the image to ``target_dim`` = (w, h) (or a square int) and scale the annotations.

    Args:
        target_dim: output (width, height) or one int for a square.
        interp: NEAREST, LINEAR, CUBIC, AREA, LANCZOS4 or RANDOM (one picked per call).
        prob: probability of resizing (otherwise only ``image_meta`` is filled).
        keys: label-map fields of the image size resized with nearest interpolation
            (``segments`` when it is one (H, W) map; polygons are always scaled).
    """

    def __init__(
        self,
        target_dim: int | Sequence[int] = (),
        interp: str = "LINEAR",
        prob: float = 1.0,
        keys: Sequence[str] = ("segments",),
    ):
        super().__init__(keys)
        if isinstance(target_dim, int):
            target_dim = (target_dim, target_dim)
        if len(target_dim) != 2 or any(int(v) <= 0 for v in target_dim):
            raise ValueError(f"target_dim must be (width, height) > 0, got {target_dim!r}")
        self.target_dim = (int(target_dim[0]), int(target_dim[1]))
        interp = str(interp).upper()
        if interp != "RANDOM" and interp not in _INTERP:
            raise ValueError(f"interp must be RANDOM or one of {sorted(_INTERP)}, got {interp!r}")
        self.interp = interp
        self.prob = prob

    def __call__(self, sample):
        import cv2

        img = _image(sample, "ResizeS")
        h, w = img.shape[:2]
        tw, th = self.target_dim
        meta = _meta(sample)
        if random.random() >= self.prob or (w, h) == (tw, th):
            sample["height"], sample["width"] = h, w
            meta["image_shape"] = (h, w)
            meta["scale_factor"] = [1.0, 1.0, 1.0, 1.0]
            record_affine(meta, (1.0, 1.0), (0.0, 0.0), (h, w))
            return sample
        interp = random.choice(list(_INTERP)) if self.interp == "RANDOM" else self.interp
        sx, sy = tw / w, th / h
        for k in self.keys:
            value = sample.get(k)
            if value is not None and is_label_map(value, (h, w)):
                sample[k] = cv2.resize(value, (tw, th), interpolation=cv2.INTER_NEAREST)
        sample["image"] = cv2.resize(img, (tw, th), interpolation=_INTERP[interp])
        _affine_annotations(sample, (sx, sy), (0.0, 0.0), (th, tw))
        sample["height"], sample["width"] = th, tw
        meta["image_shape"] = (th, tw)
        meta["scale_factor"] = [sx, sy, sx, sy]
        record_affine(meta, (sx, sy), (0.0, 0.0), (h, w))
        return sample


@TRANSFORMS.register_module()
class KeepRatio(BaseTransform):
    """Pad (and optionally crop to the objects first) so that width / height == ``aspect_ratio``.

    Args:
        aspect_ratio: target width / height.
        focus_on_center: pad evenly on both sides instead of at a random offset.
        focus_on_objects: first crop to the union of the boxes (plus ``margin`` pixels).
        fill: padding value of the image (label maps are padded with 255, "ignore").
        margin: pixels kept around the objects when ``focus_on_objects``.
    """

    def __init__(
        self,
        aspect_ratio: float = 1.0,
        focus_on_center: bool = False,
        focus_on_objects: bool = False,
        fill: int = 0,
        margin: int = 10,
    ):
        super().__init__(("image",))
        if aspect_ratio <= 0:
            raise ValueError(f"aspect_ratio must be > 0, got {aspect_ratio!r}")
        self.aspect_ratio = float(aspect_ratio)
        self.focus_on_center = focus_on_center
        self.focus_on_objects = focus_on_objects
        self.fill = fill
        self.margin = margin

    def __call__(self, sample):
        import cv2

        img = _image(sample, "KeepRatio")
        h, w = img.shape[:2]
        meta = _meta(sample)
        meta["image_shape"] = (h, w)
        meta["offset"] = [0, 0, 0, 0]
        if abs(w / h - self.aspect_ratio) <= 1e-6:
            record_affine(meta, (1.0, 1.0), (0.0, 0.0), (h, w))
            return sample
        segs = sample.get("segments")
        label_map = segs is not None and is_label_map(segs, (h, w))
        left = top = 0
        boxes = _boxes(sample)
        if self.focus_on_objects and len(boxes):
            left = int(max(math.floor(boxes[:, 0].min()) - self.margin, 0))
            top = int(max(math.floor(boxes[:, 1].min()) - self.margin, 0))
            right = int(min(math.ceil(boxes[:, 2].max()) + self.margin, w))
            bottom = int(min(math.ceil(boxes[:, 3].max()) + self.margin, h))
            if right > left and bottom > top:
                img = img[top:bottom, left:right]
                if label_map:
                    segs = segs[top:bottom, left:right]
            else:
                left = top = 0
        ch, cw = img.shape[:2]
        if cw / ch > self.aspect_ratio:
            nw, nh = cw, max(int(round(cw / self.aspect_ratio)), ch)
        else:
            nw, nh = max(int(round(ch * self.aspect_ratio)), cw), ch
        if self.focus_on_center:
            pad_top, pad_left = (nh - ch) // 2, (nw - cw) // 2
        else:
            pad_top, pad_left = random.randint(0, nh - ch), random.randint(0, nw - cw)
        border = (pad_top, nh - ch - pad_top, pad_left, nw - cw - pad_left)
        fill = [self.fill] * (img.shape[2] if img.ndim == 3 else 1)
        sample["image"] = cv2.copyMakeBorder(
            np.ascontiguousarray(img), *border, cv2.BORDER_CONSTANT, value=fill
        )
        if label_map:
            sample["segments"] = cv2.copyMakeBorder(
                np.ascontiguousarray(segs), *border, cv2.BORDER_CONSTANT, value=255
            )
        dx, dy = pad_left - left, pad_top - top
        _affine_annotations(sample, (1.0, 1.0), (dx, dy), (nh, nw))
        sample["height"], sample["width"] = nh, nw
        meta["image_shape"] = (nh, nw)
        meta["offset"] = [dx, dy, dx, dy]
        record_affine(meta, (1.0, 1.0), (dx, dy), (h, w))
        return sample


def _swap(arr: np.ndarray, a: Sequence[int], b: Sequence[int]) -> np.ndarray:
    out = arr.copy()
    out[:, list(a)] = arr[:, list(b)]
    out[:, list(b)] = arr[:, list(a)]
    return out


@TRANSFORMS.register_module()
class RandomFlipImage(BaseTransform):
    """Flip the image left-right with probability ``prob``, with boxes, joints and segments.

    Args:
        prob: flip probability.
        swap_ids: antgo format ``[[left ids...], [right ids...]]``: joint columns exchanged after
            a flip (left wrist <-> right wrist). None: no exchange.
        swap_labels: ``[[from, to], ...]`` box label renames after a flip (``[[0, 1], [1, 0]]``).
        keypoints_key / keypoints_visible: the joint fields (``joints2d`` / ``joints_vis``).
    """

    def __init__(
        self,
        prob: float = 0.5,
        swap_ids: Sequence[Sequence[int]] | None = None,
        swap_labels: Sequence[Sequence[int]] | None = None,
        keypoints_key: str = "joints2d",
        keypoints_visible: str = "joints_vis",
    ):
        super().__init__(("image",))
        if swap_ids is not None and (len(swap_ids) != 2 or len(swap_ids[0]) != len(swap_ids[1])):
            raise ValueError("swap_ids must be [[left ids...], [right ids...]] of equal length")
        self.prob = prob
        self.swap_ids = [list(swap_ids[0]), list(swap_ids[1])] if swap_ids else None
        self.swap_labels = [tuple(p) for p in swap_labels] if swap_labels else []
        self.keypoints_key = keypoints_key
        self.keypoints_visible = keypoints_visible

    def __call__(self, sample):
        if random.random() >= self.prob:
            return sample
        img = _image(sample, "RandomFlipImage")
        h, w = img.shape[:2]
        sample["image"] = np.ascontiguousarray(img[:, ::-1])
        boxes = _boxes(sample)
        if len(boxes):
            flipped = boxes.copy()
            flipped[:, 0] = w - boxes[:, 2]
            flipped[:, 2] = w - boxes[:, 0]
            sample["bboxes"] = flipped
            if self.swap_labels and "labels" in sample:
                labels = np.asarray(sample["labels"])
                out = labels.copy()
                for before, after in self.swap_labels:
                    out[labels == before] = after
                sample["labels"] = out if isinstance(sample["labels"], np.ndarray) else out.tolist()
        joints = sample.get(self.keypoints_key)
        if joints is not None and len(joints):
            arr = np.array(joints, dtype=np.float32)
            arr[..., 0] = w - 1 - arr[..., 0]
            vis = sample.get(self.keypoints_visible)
            if self.swap_ids and arr.ndim == 3:
                arr = _swap(arr, *self.swap_ids)
                if vis is not None and len(vis):
                    v = _swap(np.asarray(vis), *self.swap_ids)
                    sample[self.keypoints_visible] = (
                        v if isinstance(vis, np.ndarray) else v.tolist()
                    )
            sample[self.keypoints_key] = arr if isinstance(joints, np.ndarray) else arr.tolist()
        segs = sample.get("segments")
        if segs is not None and len(segs):
            if is_label_map(segs, (h, w)):
                sample["segments"] = np.ascontiguousarray(segs[:, ::-1])
            else:
                holder = {"segments": segs}
                ps = PointSet.from_sample(holder)
                if len(ps):
                    ps.points = ps.points.copy()
                    ps.points[:, 0] = w - 1 - ps.points[:, 0]
                    ps.write_back(holder)
                    sample["segments"] = holder["segments"]
        meta = _meta(sample)
        meta["flipped"] = True
        record_affine(meta, (-1.0, 1.0), (float(w), 0.0), (h, w))
        return sample


@TRANSFORMS.register_module()
class ColorDistort(BaseTransform):
    """Random brightness, contrast, saturation and hue; each given as ``[low, high, prob]``.

    brightness and contrast multiply (contrast around the mean grey), saturation blends with
    the grey image, hue shifts in degrees. Each is applied with its probability; contrast comes
    before or after the colour changes at random, as in antgo.
    """

    def __init__(
        self,
        hue: Sequence[float] = (-18, 18, 0.5),
        saturation: Sequence[float] = (0.5, 1.5, 0.5),
        contrast: Sequence[float] = (0.5, 1.5, 0.5),
        brightness: Sequence[float] = (0.5, 1.5, 0.5),
        random_channel: bool = False,
    ):
        super().__init__(("image",))
        for name, value in (
            ("hue", hue),
            ("saturation", saturation),
            ("contrast", contrast),
            ("brightness", brightness),
        ):
            if len(value) != 3:
                raise ValueError(f"{name} must be [low, high, prob], got {value!r}")
        self.hue, self.saturation = tuple(hue), tuple(saturation)
        self.contrast, self.brightness = tuple(contrast), tuple(brightness)
        self.random_channel = random_channel

    @staticmethod
    def _draw(setting) -> float | None:
        low, high, prob = setting
        return random.uniform(low, high) if random.random() < prob else None

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        d = self._draw(self.contrast)
        if d is None:
            return img
        mean = img.mean()
        return (img - mean) * d + mean

    def __call__(self, sample):
        import cv2

        src = _image(sample, "ColorDistort")
        if src.ndim != 3 or src.shape[2] != 3:
            return sample  # colour ops need RGB; grey images pass through
        img = src.astype(np.float32)
        d = self._draw(self.brightness)
        if d is not None:
            img *= d
        contrast_first = random.random() < 0.5
        if contrast_first:
            img = self._contrast(img)
        d = self._draw(self.saturation)
        if d is not None:
            grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
            img = grey[..., None] + (img - grey[..., None]) * d
        d = self._draw(self.hue)
        if d is not None:
            hsv = cv2.cvtColor(np.clip(img, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = (hsv[..., 0] + d) % 360.0
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        if not contrast_first:
            img = self._contrast(img)
        if self.random_channel and random.random() < 0.5:
            img = img[..., random.sample(range(3), 3)]
        sample["image"] = np.clip(img, 0, 255).astype(src.dtype) if src.dtype == np.uint8 else img
        return sample


@TRANSFORMS.register_module()
class RandomErasingImage(BaseTransform):
    """Erase a random rectangle inside each box (or the image when there are no boxes).

    Args:
        prob: probability per box (or for the image).
        sl, sh: erased area as a fraction of the box area, drawn in [sl, sh].
        r1: aspect ratio of the rectangle, drawn in [r1, 1 / r1].
        fill: value written into the rectangle.
    """

    def __init__(
        self, prob: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3, fill: int = 0
    ):
        super().__init__(("image",))
        if not 0 < r1 <= 1 or not 0 <= sl <= sh <= 1:
            raise ValueError("need 0 <= sl <= sh <= 1 and 0 < r1 <= 1")
        self.prob, self.sl, self.sh, self.r1, self.fill = prob, sl, sh, r1, fill

    def __call__(self, sample):
        img = _image(sample, "RandomErasingImage").copy()  # never write into the caller's array
        sample["image"] = img
        h, w = img.shape[:2]
        regions = _boxes(sample)
        if not len(regions):
            regions = np.array([[0, 0, w, h]], np.float32)
        for x1, y1, x2, y2 in regions:
            if random.random() >= self.prob:
                continue
            bw, bh = x2 - x1, y2 - y1
            area = random.uniform(self.sl, self.sh) * bw * bh
            ratio = random.uniform(self.r1, 1 / self.r1)
            eh = int(round(math.sqrt(area * ratio)))
            ew = int(round(math.sqrt(area / ratio)))
            if 0 < ew < bw and 0 < eh < bh:
                ox = int(x1) + random.randint(0, int(bw - ew))
                oy = int(y1) + random.randint(0, int(bh - eh))
                img[max(oy, 0) : max(oy + eh, 0), max(ox, 0) : max(ox + ew, 0)] = self.fill
        return sample


# -- mixing -------------------------------------------------------------------------------------


def _soft_label(label: Any, num_classes: int) -> np.ndarray:
    arr = np.asarray(label)
    if arr.ndim == 1 and arr.shape[0] == num_classes and arr.dtype.kind == "f":
        return arr.astype(np.float32)
    index = int(arr.reshape(-1)[0]) if arr.size else -1
    out = np.zeros(num_classes, np.float32)
    if 0 <= index < num_classes:
        out[index] = 1.0
    return out


def _concat_instances(
    sample: dict[str, Any], other: dict[str, Any], other_boxes: np.ndarray
) -> None:
    """Append the partner's boxes and per-instance fields where both sides are compatible."""
    n = num_boxes(sample)
    m = other_boxes.shape[0]
    if not m:
        return
    mine = _boxes(sample)
    sample["bboxes"] = np.concatenate([mine, other_boxes.astype(np.float32)], axis=0)
    for field in ("labels", "box_visibility", "joints2d", "joints_vis", "segments"):
        a, b = sample.get(field), other.get(field)
        if a is None or b is None or len(a) != n or len(b) != m:
            continue
        if isinstance(a, list) or isinstance(b, list):
            sample[field] = list(a) + list(b)
            continue
        a, b = np.asarray(a), np.asarray(b)
        if a.shape[1:] == b.shape[1:] or n == 0:
            sample[field] = np.concatenate([a.reshape(-1, *b.shape[1:]), b], axis=0)


def _batch_labels(label: Any, num_classes: int | None):
    import torch

    lab = torch.as_tensor(label)
    if num_classes is None:
        return lab
    if lab.ndim == 1 and not lab.is_floating_point():
        return torch.nn.functional.one_hot(lab.long(), num_classes).float()
    return lab.float()


class _Mix(BaseTransform):
    partner_default = "mixup"

    def __init__(
        self,
        prob: float,
        alpha: float,
        beta: float,
        num_classes: int | None,
        partner_key: str | None,
    ):
        super().__init__(("image",))
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be > 0, got {alpha!r}, {beta!r}")
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.prob, self.alpha, self.beta = prob, alpha, beta
        self.num_classes = int(num_classes) if num_classes is not None else None
        self.partner_key = partner_key or self.partner_default

    def _factor(self) -> float | None:
        """Weight of the sample itself, or None when no mixing happens this time."""
        if random.random() >= self.prob:
            return None
        f = min(max(random.betavariate(self.alpha, self.beta), 0.0), 1.0)
        return None if f >= 1.0 else f

    def _labels(self, sample, other, weight: float | None) -> None:
        if self.num_classes is None or "label" not in sample:
            return
        own = _soft_label(sample["label"], self.num_classes)
        if weight is not None and other is not None and "label" in other:
            own = weight * own + (1 - weight) * _soft_label(other["label"], self.num_classes)
        sample["label"] = own.astype(np.float32)

    def __call__(self, sample):
        import torch

        img = sample.get("image")
        if isinstance(img, torch.Tensor) and img.ndim == 4:
            return self._batch(sample)
        other = sample.pop(self.partner_key, None)
        weight = self._factor() if other is not None else None
        if weight is None:
            self._labels(sample, None, None)
            return sample
        weight = self._mix(sample, other, weight)
        self._labels(sample, other, weight)
        return sample


@TRANSFORMS.register_module()
class MixupImage(_Mix):
    """Blend the sample with a partner: ``w * a + (1 - w) * b``, w ~ Beta(alpha, beta).

    See the module docstring for the partner/batch contract and the soft labels.

    Args:
        prob: probability of mixing.
        alpha, beta: Beta distribution parameters.
        num_classes: set it for classification: ``label`` becomes a soft float vector.
        partner_key: sample field holding the partner sample (default ``mixup``).
    """

    partner_default = "mixup"

    def __init__(
        self,
        prob: float = 0.5,
        alpha: float = 1.5,
        beta: float = 1.5,
        num_classes: int | None = None,
        partner_key: str = "mixup",
    ):
        super().__init__(prob, alpha, beta, num_classes, partner_key)

    def _mix(self, sample, other, weight: float) -> float:
        a = _image(sample, "MixupImage")
        b = as_numpy_image(other.get("image"))
        h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
        out = np.zeros((h, w, *a.shape[2:]), np.float32)
        out[: a.shape[0], : a.shape[1]] = a.astype(np.float32) * weight
        out[: b.shape[0], : b.shape[1]] += b.astype(np.float32).reshape(
            *b.shape[:2], *a.shape[2:]
        ) * (1 - weight)
        sample["image"] = np.clip(out, 0, 255).astype(np.uint8) if a.dtype == np.uint8 else out
        _concat_instances(sample, other, _boxes(other))
        if "height" in sample:
            sample["height"], sample["width"] = h, w
        return weight

    def _batch(self, sample):
        images = sample["image"]
        weight = self._factor()
        labels = _batch_labels(sample["label"], self.num_classes) if "label" in sample else None
        if weight is not None:
            sample["image"] = images * weight + images.roll(1, 0) * (1 - weight)
            if labels is not None and labels.is_floating_point():
                labels = labels * weight + labels.roll(1, 0) * (1 - weight)
        if labels is not None:
            sample["label"] = labels
        return sample


def _cut_region(h: int, w: int, weight: float) -> tuple[int, int, int, int]:
    cut = math.sqrt(1.0 - weight)
    cw, ch = int(w * cut), int(h * cut)
    cx, cy = random.randrange(w), random.randrange(h)
    x1, x2 = int(np.clip(cx - cw // 2, 0, w)), int(np.clip(cx + cw // 2, 0, w))
    y1, y2 = int(np.clip(cy - ch // 2, 0, h)), int(np.clip(cy + ch // 2, 0, h))
    return x1, y1, x2, y2


@TRANSFORMS.register_module()
class CutmixImage(_Mix):
    """Paste a random patch of the partner into the sample (CutMix); the label weight is the area kept.

    The partner is resized to the sample's size first. See the module docstring for the contract.

    Args:
        prob: probability of mixing.
        alpha, beta: Beta distribution parameters (patch area = 1 - w).
        num_classes: set it for classification: ``label`` becomes a soft float vector.
        mix_ann: add the partner's boxes that fall in the patch (clipped to it).
        avoid_overlap: keep the sample's own boxes visible (their pixels are not overwritten).
        partner_key: sample field holding the partner sample (default ``cutmix``).
    """

    partner_default = "cutmix"

    def __init__(
        self,
        prob: float = 0.5,
        alpha: float = 1.5,
        beta: float = 1.5,
        num_classes: int | None = None,
        mix_ann: bool = False,
        avoid_overlap: bool = False,
        partner_key: str = "cutmix",
    ):
        super().__init__(prob, alpha, beta, num_classes, partner_key)
        self.mix_ann = mix_ann
        self.avoid_overlap = avoid_overlap

    def _mix(self, sample, other, weight: float) -> float:
        import cv2

        a = _image(sample, "CutmixImage").copy()  # never write into the caller's array
        sample["image"] = a
        h, w = a.shape[:2]
        b = np.ascontiguousarray(as_numpy_image(other.get("image")))
        other_boxes = _boxes(other)
        if b.shape[:2] != (h, w):
            sx, sy = w / b.shape[1], h / b.shape[0]
            b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
            other_boxes = other_boxes * np.array([sx, sy, sx, sy], np.float32)
        x1, y1, x2, y2 = _cut_region(h, w, weight)
        if x2 <= x1 or y2 <= y1:
            return 1.0
        keep = a.copy() if self.avoid_overlap else None
        a[y1:y2, x1:x2] = b[y1:y2, x1:x2].reshape(a[y1:y2, x1:x2].shape)
        if keep is not None:
            for bx1, by1, bx2, by2 in _boxes(sample).astype(int):
                a[by1:by2, bx1:bx2] = keep[by1:by2, bx1:bx2]
        if self.mix_ann and len(other_boxes):
            clipped = other_boxes.copy()
            np.clip(clipped[:, 0::2], x1, x2, out=clipped[:, 0::2])
            np.clip(clipped[:, 1::2], y1, y2, out=clipped[:, 1::2])
            inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
            partner = {k: other[k] for k in ("labels", "box_visibility") if k in other}
            for k, v in partner.items():
                partner[k] = np.asarray(v)[inside] if len(v) == len(other_boxes) else v
            _concat_instances(sample, partner, clipped[inside])
        return 1.0 - (x2 - x1) * (y2 - y1) / float(h * w)

    def _batch(self, sample):
        images = sample["image"]
        weight = self._factor()
        labels = _batch_labels(sample["label"], self.num_classes) if "label" in sample else None
        if weight is not None:
            h, w = images.shape[-2:]
            x1, y1, x2, y2 = _cut_region(h, w, weight)
            images = images.clone()
            images[..., y1:y2, x1:x2] = images.roll(1, 0)[..., y1:y2, x1:x2]
            sample["image"] = images
            lam = 1.0 - (x2 - x1) * (y2 - y1) / float(h * w)
            if labels is not None and labels.is_floating_point():
                labels = labels * lam + labels.roll(1, 0) * (1 - lam)
        if labels is not None:
            sample["label"] = labels
        return sample


__all__ = [
    "ColorDistort",
    "CutmixImage",
    "KeepRatio",
    "MixupImage",
    "RandomErasingImage",
    "RandomFlipImage",
    "ResizeS",
]
