"""Annotation bookkeeping shared by geometric transforms: per-instance fields, points, label maps.

Geometric ops move every point-like annotation of a sample with the image:
``bboxes`` (N, 4) xyxy, ``joints2d`` (N, K, 2) and polygon ``segments``. Points of joints and
polygons are gathered into one (M, 2) array so that an op transforms them in one call, then split
back into their original containers (arrays keep shape and dtype, lists stay lists).
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np

# Fields holding one entry per box; they are filtered together with `bboxes` when boxes leave
# the image (only when their length equals the number of boxes, so image-level fields survive).
INSTANCE_FIELDS = ("labels", "box_visibility", "joints2d", "joints_vis", "segments")


def num_boxes(sample: dict[str, Any]) -> int:
    """Number of boxes in ``sample['bboxes']`` (0 when absent or empty)."""
    boxes = sample.get("bboxes")
    if boxes is None:
        return 0
    return int(np.asarray(boxes).reshape(-1).size // 4)


def keep_instances(sample: dict[str, Any], keep: np.ndarray) -> None:
    """Keep the boxes selected by ``keep`` (bool mask or indices) and the matching instance fields."""
    n = num_boxes(sample)
    keep = np.asarray(keep)
    if keep.dtype == bool:
        if keep.all():
            return
        index = np.flatnonzero(keep)
    else:
        index = keep.astype(np.int64)
        if index.size == n and (index == np.arange(n)).all():
            return
    for field in ("bboxes", *INSTANCE_FIELDS):
        value = sample.get(field)
        if value is None or isinstance(value, (str, bytes, dict)):
            continue
        if len(value) != n:
            continue
        if isinstance(value, np.ndarray):
            sample[field] = value[index]
        else:
            sample[field] = [value[i] for i in index]


def is_label_map(value: Any, hw: tuple[int, int]) -> bool:
    """True when ``segments`` is one (H, W) integer label map of the image, not polygons."""
    return (
        isinstance(value, np.ndarray)
        and value.ndim == 2
        and value.dtype.kind in "iub"
        and tuple(value.shape) == tuple(hw)
    )


# -- points ------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (Real, np.number)) and not isinstance(x, bool)


class PointSet:
    """All joint and polygon points of a sample as one (M, 2) float32 array, and the way back.

    Example:
        >>> ps = PointSet.from_sample(sample)
        >>> ps.points = ps.points + 1.0      # move every point
        >>> ps.write_back(sample)            # joints2d and segments updated in place of the old
    """

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._joints: tuple[Any, ...] | None = None
        self._segments: Any = None
        self.points = np.zeros((0, 2), np.float32)

    # joints2d: (N, K, 2+) array or nested lists; extra columns (x, y, v) are kept.
    def _add_joints(self, joints: Any) -> None:
        arr = np.asarray(joints, dtype=np.float32)
        if arr.size == 0 or arr.shape[-1] < 2:
            return
        xy = arr[..., :2].reshape(-1, 2)
        self._joints = (len(self._chunks), arr, isinstance(joints, np.ndarray), joints)
        self._chunks.append(xy)

    def _collect(self, obj: Any) -> Any:
        """Return a template for ``obj``; numeric leaves become chunk references."""
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "fiu" and obj.size and obj.size % 2 == 0:
                self._chunks.append(obj.reshape(-1, 2).astype(np.float32))
                return ("array", len(self._chunks) - 1, obj.shape, obj.dtype)
            return ("keep", obj)
        if isinstance(obj, (list, tuple)) and obj:
            if all(_is_number(x) for x in obj):
                if len(obj) % 2:
                    return ("keep", obj)
                self._chunks.append(np.asarray(obj, np.float32).reshape(-1, 2))
                return ("flat", len(self._chunks) - 1, len(obj))
            first = obj[0]
            if isinstance(first, (list, tuple)) and all(
                isinstance(x, (list, tuple))
                and len(x) == len(first)
                and all(_is_number(v) for v in x)
                for x in obj
            ):
                arr = np.asarray(obj, np.float32)
                if arr.shape[-1] % 2 == 0:
                    self._chunks.append(arr.reshape(-1, 2))
                    return ("rows", len(self._chunks) - 1, arr.shape)
            return ("list", [self._collect(x) for x in obj])
        return ("keep", obj)

    @classmethod
    def from_sample(cls, sample: dict[str, Any], hw: tuple[int, int] | None = None) -> PointSet:
        """Gather ``joints2d`` and polygon ``segments`` (label maps and RLE dicts are skipped)."""
        ps = cls()
        joints = sample.get("joints2d")
        if joints is not None and len(joints):
            ps._add_joints(joints)
        segs = sample.get("segments")
        if segs is not None and not isinstance(segs, dict) and len(segs):
            if not (hw is not None and is_label_map(segs, hw)):
                ps._segments = ps._collect(segs)
        if ps._chunks:
            ps.points = np.concatenate(ps._chunks, axis=0)
        return ps

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def _chunk(self, i: int) -> np.ndarray:
        start = sum(c.shape[0] for c in self._chunks[:i])
        return self.points[start : start + self._chunks[i].shape[0]]

    def _rebuild(self, tpl: Any) -> Any:
        kind = tpl[0]
        if kind == "keep":
            return tpl[1]
        if kind == "array":
            return self._chunk(tpl[1]).reshape(tpl[2]).astype(tpl[3])
        if kind == "flat":
            return self._chunk(tpl[1]).reshape(-1).tolist()
        if kind == "rows":
            return self._chunk(tpl[1]).reshape(tpl[2]).tolist()
        return [self._rebuild(t) for t in tpl[1]]

    def write_back(self, sample: dict[str, Any], hw: tuple[int, int] | None = None) -> None:
        """Put the (moved) points back into ``joints2d``/``segments``; hide joints outside ``hw``."""
        if self._joints is not None:
            idx, arr, was_array, _ = self._joints
            xy = self._chunk(idx).reshape(*arr.shape[:-1], 2)
            out = arr.copy()
            out[..., :2] = xy
            sample["joints2d"] = out if was_array else out.tolist()
            if hw is not None:
                hide_outside_joints(sample, xy, hw)
        if self._segments is not None:
            sample["segments"] = self._rebuild(self._segments)


def hide_outside_joints(sample: dict[str, Any], xy: np.ndarray, hw: tuple[int, int]) -> None:
    """Set ``joints_vis`` to 0 for joints outside the image (x, y in [0, W) x [0, H))."""
    vis = sample.get("joints_vis")
    if vis is None:
        return
    h, w = hw
    outside = (xy[..., 0] < 0) | (xy[..., 1] < 0) | (xy[..., 0] >= w) | (xy[..., 1] >= h)
    if not outside.any():
        return
    was_array = isinstance(vis, np.ndarray)
    arr = np.array(vis)
    if arr.shape != outside.shape:
        return
    arr[outside] = 0
    sample["joints_vis"] = arr if was_array else arr.tolist()


def drop_lost_boxes(
    sample: dict[str, Any], before: np.ndarray, after: np.ndarray, hw: tuple[int, int]
) -> None:
    """Clip ``after`` boxes to the image, store them and drop those that became empty.

    A box is dropped (with its labels and other instance fields) when it had a positive area
    before the op and has none after clipping; boxes that were already degenerate are kept.
    """
    h, w = hw
    # A new array (np.clip without out=): `after` may share memory with the caller's boxes.
    after = np.clip(after, 0, np.array([w, h, w, h], np.float32)).astype(np.float32, copy=False)
    sample["bboxes"] = after
    had_area = (before[:, 2] > before[:, 0]) & (before[:, 3] > before[:, 1])
    has_area = (after[:, 2] > after[:, 0]) & (after[:, 3] > after[:, 1])
    lost = had_area & ~has_area
    if lost.any():
        keep_instances(sample, ~lost)


# -- the pipeline's geometry, recorded in image_meta ------------------------------------------------


def record_affine(
    meta: dict[str, Any],
    scale: tuple[float, float],
    shift: tuple[float, float],
    hw: tuple[int, int],
) -> None:
    """Compose x -> x * s + d into ``meta['affine']`` (original -> current pixels).

    ``hw`` is the image size before this op; the first op to record keeps it as
    ``meta['ori_shape']``. ResizeS, KeepRatio and RandomFlipImage call this, so that
    ``map_boxes`` can bring predictions back to the original image.
    """
    meta.setdefault("ori_shape", (int(hw[0]), int(hw[1])))
    sx0, sy0, dx0, dy0 = meta.get("affine", (1.0, 1.0, 0.0, 0.0))
    sx, sy = float(scale[0]), float(scale[1])
    dx, dy = float(shift[0]), float(shift[1])
    meta["affine"] = [sx0 * sx, sy0 * sy, dx0 * sx + dx, dy0 * sy + dy]


def _meta_affine(meta: Any) -> tuple[float, float, float, float]:
    if not isinstance(meta, dict):
        return 1.0, 1.0, 0.0, 0.0
    if meta.get("affine") is not None:
        sx, sy, dx, dy = (float(v) for v in meta["affine"])
        return sx, sy, dx, dy
    # only antgo's fields: an offset is taken as applied after the scale
    scale = meta.get("scale_factor") or (1.0, 1.0)
    offset = meta.get("offset") or (0.0, 0.0)
    return float(scale[0]), float(scale[1]), float(offset[0]), float(offset[1])


def map_boxes(boxes: Any, meta: Any, to_original: bool = True) -> Any:
    """Move xyxy boxes (numpy array or torch tensor, (N, 4)) between pipeline and original pixels.

    Reads ``meta['affine']`` (see ``record_affine``), else antgo's ``scale_factor``/``offset``.
    ``to_original`` also clips to ``meta['ori_shape']`` when known. Returns a new array/tensor.
    """
    if len(boxes) == 0:
        return boxes
    sx, sy, dx, dy = _meta_affine(meta)
    is_numpy = isinstance(boxes, np.ndarray)
    out = boxes.astype(np.float64, copy=True) if is_numpy else boxes.clone()
    if to_original:
        out[:, 0::2] = (out[:, 0::2] - dx) / sx
        out[:, 1::2] = (out[:, 1::2] - dy) / sy
    else:
        out[:, 0::2] = out[:, 0::2] * sx + dx
        out[:, 1::2] = out[:, 1::2] * sy + dy
    if sx < 0:  # a flip: x0 and x1 swap roles
        out[:, [0, 2]] = out[:, [2, 0]]
    if sy < 0:
        out[:, [1, 3]] = out[:, [3, 1]]
    shape = meta.get("ori_shape") if to_original and isinstance(meta, dict) else None
    if shape is not None:
        h, w = float(shape[0]), float(shape[1])
        if is_numpy:
            out[:, 0::2] = out[:, 0::2].clip(0, w)
            out[:, 1::2] = out[:, 1::2].clip(0, h)
        else:
            out[:, 0::2] = out[:, 0::2].clamp(0, w)
            out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out
