"""Schema 1 of the standard GT sample: field names kept from antgo, one hand-written validator.

A sample is a dict. Known fields are checked; unknown fields are kept untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real
from typing import Any

from antgo_mlflow.errors import GTFormatError

SCHEMA_VERSION = 1

# The fields every tool writes, with antgo's defaults.
DEFAULTS: dict[str, Any] = {
    "image_file": "",
    "image_url": "",
    "height": 0,
    "width": 0,
    "tag": "",
    "image_label": -1,
    "image_label_name": "",
    "bboxes": [],
    "labels": [],
    "box_visibility": [],
    "joints2d": [],
    "joints_vis": [],
    "segments": [],
    "predictions": {},
}


def new_sample(**fields: Any) -> dict[str, Any]:
    """A schema-1 sample with antgo's defaults, overridden by ``fields``."""
    sample = {k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in DEFAULTS.items()}
    sample.update(fields)
    sample["schema_version"] = SCHEMA_VERSION
    return sample


def _is_num(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_point(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) >= 2 and all(_is_num(x) for x in v)


class _Problem(Exception):
    pass


def _check_str(v):
    if not isinstance(v, str):
        raise _Problem(f"expected a string, got {type(v).__name__}")


def _check_size(v):
    if not _is_int(v) or v < 0:
        raise _Problem(f"expected an integer >= 0, got {v!r}")


def _check_label(v):
    if not _is_int(v) or v < -1:
        raise _Problem(f"expected an integer class index (-1 = none), got {v!r}")


def _check_bboxes(v):
    if not isinstance(v, list):
        raise _Problem(f"expected a list of [x0, y0, x1, y1], got {type(v).__name__}")
    for i, box in enumerate(v):
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_num(x) for x in box)):
            raise _Problem(f"box {i} must be 4 numbers [x0, y0, x1, y1], got {box!r}")
        if box[2] < box[0] or box[3] < box[1]:
            raise _Problem(f"box {i} has x1 < x0 or y1 < y0 (xyxy expected): {box!r}")


def _check_int_list(v):
    if not isinstance(v, list) or not all(_is_int(x) for x in v):
        raise _Problem(f"expected a list of integers, got {v!r:.80}")


def _check_num_list(v):
    if not isinstance(v, list) or not all(_is_num(x) for x in v):
        raise _Problem(f"expected a list of numbers, got {v!r:.80}")


def _check_joints(v):
    if not isinstance(v, list):
        raise _Problem("expected a list (one entry per instance) of [[x, y], ...]")
    for i, inst in enumerate(v):
        if not isinstance(inst, list) or not all(_is_point(p) for p in inst):
            raise _Problem(f"instance {i} must be a list of [x, y] points")


def _check_joints_vis(v):
    if not isinstance(v, list):
        raise _Problem("expected a list (one entry per instance) of visibility lists")
    for i, inst in enumerate(v):
        if not isinstance(inst, list) or not all(_is_num(x) for x in inst):
            raise _Problem(f"instance {i} must be a list of numbers")


def _check_segments(v):
    # Per instance: a polygon [[x, y], ...], COCO polygons [[x0, y0, x1, y1, ...], ...],
    # or a COCO RLE dict {"size": [h, w], "counts": ...} kept as given.
    if not isinstance(v, list):
        raise _Problem("expected a list (one entry per instance)")
    for i, seg in enumerate(v):
        if isinstance(seg, dict):
            if "counts" not in seg or "size" not in seg:
                raise _Problem(f"instance {i}: an RLE segment needs 'size' and 'counts'")
        elif isinstance(seg, list):
            for part in seg:
                ok = _is_point(part) or (
                    isinstance(part, list) and all(_is_num(x) or _is_point(x) for x in part)
                )
                if not ok and not _is_num(part):
                    raise _Problem(f"instance {i}: polygon points must be numbers")
        else:
            raise _Problem(f"instance {i}: expected a polygon list or an RLE dict")


def _check_dict(v):
    if not isinstance(v, dict):
        raise _Problem(f"expected an object, got {type(v).__name__}")


def _check_version(v):
    if v != SCHEMA_VERSION:
        raise _Problem(f"unsupported schema_version {v!r} (this build reads {SCHEMA_VERSION})")


CHECKS = {
    "image_file": _check_str,
    "image_url": _check_str,
    "height": _check_size,
    "width": _check_size,
    "tag": _check_str,
    "image_label": _check_label,
    "image_label_name": _check_str,
    "bboxes": _check_bboxes,
    "labels": _check_int_list,
    "box_visibility": _check_num_list,
    "joints2d": _check_joints,
    "joints_vis": _check_joints_vis,
    "segments": _check_segments,
    "predictions": _check_dict,
    "schema_version": _check_version,
}

# Per-instance fields whose length must match `bboxes` when both are present.
_PER_INSTANCE = ("labels", "box_visibility")


def validate_sample(sample: Any, index: int = 0, source: str = "") -> None:
    """Raise GTFormatError naming ``source``, the sample index and the field if ``sample`` is bad."""
    where = f"{source}: " if source else ""
    if not isinstance(sample, dict):
        raise GTFormatError(
            f"{where}sample {index}: expected an object, got {type(sample).__name__}"
        )
    for field, check in CHECKS.items():
        if field in sample and sample[field] is not None:
            try:
                check(sample[field])
            except _Problem as exc:
                raise GTFormatError(f"{where}sample {index}, field '{field}': {exc}") from None
    if not sample.get("image_file") and not sample.get("image_url"):
        raise GTFormatError(f"{where}sample {index}: needs a non-empty 'image_file' or 'image_url'")
    boxes = sample.get("bboxes") or []
    for field in _PER_INSTANCE:
        values = sample.get(field) or []
        if values and len(values) != len(boxes):
            raise GTFormatError(
                f"{where}sample {index}, field '{field}': {len(values)} entries for "
                f"{len(boxes)} boxes"
            )


def validate_samples(samples: Iterable[Any], source: str = "") -> None:
    """Validate every sample; the first problem raises GTFormatError."""
    for i, sample in enumerate(samples):
        validate_sample(sample, i, source)
