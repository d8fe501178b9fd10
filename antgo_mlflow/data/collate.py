"""Collate functions registered in COLLATE: sample dicts -> the batch dict a model's step receives.

``DefaultCollate`` (the default) stacks equal-shape tensors/arrays (``image`` (N, C, H, W)),
turns numbers into tensors (``label`` (N,)), keeps variable-length fields as lists of tensors
(``bboxes`` (Ki, 4), ``labels`` (Ki,), ``box_visibility`` ... always lists, even when every sample
happens to have the same count, so a model sees one type), keeps ``image_meta`` and strings as
lists, and batches multi-view samples (a dataset with ``weak_pipeline`` / ``strong_pipeline``
returns ``[weak, strong]``) into ``image_weak`` / ``image_strong`` plus the weak view's other fields.

A dataloader picks one with ``data.<split>_dataloader.collate_fn=dict(type='DefaultCollate')``.

Example:
    >>> batch = DefaultCollate()([{"image": torch.zeros(3, 8, 8), "label": 1}] * 2)
    >>> batch["image"].shape, batch["label"]
    (torch.Size([2, 3, 8, 8]), tensor([1, 1]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from antgo_mlflow.errors import DataError
from antgo_mlflow.registry import COLLATE

#: Fields whose length differs between samples (detection / keypoints): always lists.
LIST_FIELDS = (
    "bboxes",
    "labels",
    "box_visibility",
    "joints2d",
    "joints_vis",
    "segments",
    "image_meta",
)


def _stack(values: list) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        try:
            return torch.stack(values)  # fast path; raises on ragged shapes
        except (RuntimeError, TypeError):
            return values
    if isinstance(first, np.ndarray):
        try:
            return torch.from_numpy(np.stack(values))
        except (ValueError, TypeError):
            return values
    if isinstance(first, (bool, int, float, np.number)):
        try:
            return torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError):
            return values
    return values


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


@COLLATE.register_module()
class DefaultCollate:
    """Batch sample dicts (see the module docstring).

    Args:
        list_fields: fields that always stay lists (default ``LIST_FIELDS``).
    """

    def __init__(self, list_fields: Sequence[str] = LIST_FIELDS):
        self.list_fields = frozenset(list_fields)

    def __call__(self, samples: Sequence[Any]) -> dict[str, Any]:
        first = samples[0]
        if isinstance(first, (list, tuple)):
            return self._views(samples)
        if not isinstance(first, Mapping):
            raise DataError(
                f"collate: samples must be dicts (or [weak, strong] pairs), got {type(first).__name__}"
            )
        out: dict[str, Any] = {}
        for key in first:
            values = [s[key] for s in samples]
            if key in self.list_fields:
                out[key] = [_as_tensor(v) for v in values]
            else:
                out[key] = _stack(values)
        return out

    def _views(self, samples: Sequence[Any]) -> dict[str, Any]:
        if any(len(s) != 2 for s in samples):
            raise DataError("collate: multi-view samples must be [weak, strong] pairs")
        weak = self([s[0] for s in samples])
        strong = self([s[1] for s in samples])
        if "image" not in weak or "image" not in strong:
            raise DataError("collate: both views of a multi-view sample need an 'image'")
        weak["image_weak"] = weak.pop("image")
        weak["image_strong"] = strong["image"]
        return weak


def collate(samples: Sequence[Any]) -> dict[str, Any]:
    """``DefaultCollate()(samples)``."""
    return _DEFAULT(samples)


_DEFAULT = DefaultCollate()
