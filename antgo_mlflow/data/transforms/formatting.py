"""Format ops: decode, PIL/numpy/tensor conversion, normalisation and the ``image_meta`` dict.

These are the ops antgo configs start and end their pipelines with::

    dict(type='Meta', keys=['image_file', 'tag']),
    dict(type='INumpyToPIL', keys=['image'], mode='RGB'),
    ...
    dict(type='ToTensor', keys=['image']),
    dict(type='Normalize', mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), keys=['image']),
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from antgo_mlflow.data.transforms.base import (
    ENCODED,
    BaseTransform,
    as_numpy_image,
    decode_image,
    image_hw,
    is_pil,
    load_pil,
)
from antgo_mlflow.errors import DataError
from antgo_mlflow.registry import TRANSFORMS


@TRANSFORMS.register_module()
class Meta(BaseTransform):
    """Copy ``keys`` fields into ``sample['image_meta']`` (a dict, created or extended).

    Args:
        keys: sample fields to copy (``['image_file', 'tag']``); a missing field is a DataError.
        with_sample_shape: also store ``image_shape`` = (H, W) of ``sample['image']``.
    """

    def __init__(self, keys: Sequence[str] = (), with_sample_shape: bool = False):
        super().__init__(keys)
        self.with_sample_shape = with_sample_shape

    def __call__(self, sample):
        meta = sample.get("image_meta")
        if not isinstance(meta, dict):
            meta = sample["image_meta"] = {}
        for k in self.keys:
            meta[k] = self._get(sample, k)
        if self.with_sample_shape:
            img = self._get(sample, "image")
            meta["image_shape"] = image_hw(as_numpy_image(img) if isinstance(img, ENCODED) else img)
        return sample


@TRANSFORMS.register_module()
class DecodeImage(BaseTransform):
    """Decode encoded PNG/JPEG bytes in ``keys`` into HWC uint8 numpy arrays (RGB by default).

    Values that are already decoded pass through. ``height``/``width`` are set from the image.
    """

    def __init__(self, keys: Sequence[str] = ("image",), to_rgb: bool = True):
        super().__init__(keys)
        self.to_rgb = to_rgb

    def __call__(self, sample):
        for k in self.keys:
            value = self._get(sample, k)
            if isinstance(value, ENCODED):
                value = decode_image(value, self.to_rgb)
            elif is_pil(value):
                value = np.asarray(value.convert("RGB"))
            sample[k] = value
        img = sample.get(self.keys[0]) if self.keys else None
        if isinstance(img, np.ndarray):
            sample["height"], sample["width"] = int(img.shape[0]), int(img.shape[1])
        return sample


@TRANSFORMS.register_module()
class INumpyToPIL(BaseTransform):
    """Turn numpy arrays (or encoded bytes) in ``keys`` into PIL images of ``mode`` ('RGB', 'L')."""

    def __init__(self, keys: Sequence[str] = ("image",), mode: str | None = None):
        super().__init__(keys)
        self.mode = mode

    def __call__(self, sample):
        from PIL import Image

        for k in self.keys:
            value = self._get(sample, k)
            if isinstance(value, ENCODED):
                img = load_pil(value)
            elif isinstance(value, np.ndarray):
                try:
                    img = Image.fromarray(value)
                except TypeError as exc:
                    raise DataError(
                        f"INumpyToPIL: field {k!r} ({value.dtype} {value.shape}) is not an image "
                        f"PIL can hold: {exc}"
                    ) from None
            elif is_pil(value):
                img = value
            else:
                raise DataError(
                    f"INumpyToPIL: field {k!r} is {type(value).__name__}, expected a numpy image"
                )
            if self.mode and img.mode != self.mode:
                img = img.convert(self.mode)
            sample[k] = img
        return sample


@TRANSFORMS.register_module()
class IPILToNumpy(BaseTransform):
    """Turn PIL images in ``keys`` into HWC (or HW) uint8 numpy arrays."""

    def __init__(self, keys: Sequence[str] = ("image",)):
        super().__init__(keys)

    def __call__(self, sample):
        for k in self.keys:
            value = self._get(sample, k)
            if is_pil(value) or isinstance(value, ENCODED):
                sample[k] = np.asarray(value) if is_pil(value) else as_numpy_image(value)
        return sample


# Per-sample arithmetic is done in NumPy, not torch: torch runs even a 128x128 image op on all its
# intra-op threads, and on a busy 2-core machine waking them costs ~100x the op itself (measured:
# ToTensor 15 ms vs 0.15 ms, Normalize 22 ms vs 0.3 ms per 128x128 image). Same float32 values.


def _image_to_tensor(value: Any) -> torch.Tensor:
    if is_pil(value):
        value = np.array(value)  # a copy: PIL's buffer is read-only
    if isinstance(value, ENCODED):
        value = decode_image(value)
    if isinstance(value, np.ndarray):
        chw = value.transpose(2, 0, 1) if value.ndim == 3 else value[None]
        if chw.dtype == np.uint8:
            out = chw.astype(np.float32, order="C")
            np.divide(out, np.float32(255.0), out=out)
            return torch.from_numpy(out)
        return torch.from_numpy(np.ascontiguousarray(chw))
    if isinstance(value, torch.Tensor):
        return value.float().div_(255.0) if value.dtype == torch.uint8 else value
    raise DataError(f"ToTensor: expected an image, got {type(value).__name__}")


@TRANSFORMS.register_module()
class ToTensor(BaseTransform):
    """Turn ``keys`` into torch tensors.

    Images (PIL, HWC/HW numpy, bytes) become CHW float32 in [0, 1] (uint8 is divided by 255,
    float arrays keep their values, as torchvision's ToTensor). Other arrays and numbers become
    tensors of their own dtype (``label`` -> int64 scalar).
    """

    def __init__(self, keys: Sequence[str] = ("image",)):
        super().__init__(keys)

    def __call__(self, sample):
        for k in self.keys:
            value = self._get(sample, k)
            if is_pil(value) or isinstance(value, ENCODED):
                sample[k] = _image_to_tensor(value)
            elif isinstance(value, np.ndarray):
                is_image = value.ndim == 3 or (value.ndim == 2 and value.dtype == np.uint8)
                if is_image and not k.endswith("mask"):
                    sample[k] = _image_to_tensor(value)
                else:
                    sample[k] = torch.from_numpy(np.ascontiguousarray(value))
            elif isinstance(value, torch.Tensor):
                sample[k] = _image_to_tensor(value) if value.dtype == torch.uint8 else value
            else:
                try:
                    sample[k] = torch.as_tensor(value)
                except (TypeError, ValueError, RuntimeError) as exc:
                    raise DataError(
                        f"ToTensor: field {k!r} cannot become a tensor: {exc}"
                    ) from None
        return sample


@TRANSFORMS.register_module()
class Normalize(BaseTransform):
    """``(x - mean) / std`` per channel on ``keys``.

    A CHW float tensor (after ToTensor) uses mean/std in its own scale (0-1 for ToTensor output);
    an HWC numpy image becomes float32 normalised over its last axis.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        keys: Sequence[str] = ("image",),
        inplace: bool = False,
    ):
        super().__init__(keys)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        if any(s == 0 for s in self.std):
            raise ValueError("std must not contain 0")
        self.inplace = inplace
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        self._inv_std_t = 1.0 / torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        self._mean_np = np.asarray(self.mean, np.float32)
        self._inv_std_np = 1.0 / np.asarray(self.std, np.float32)

    def __call__(self, sample):
        for k in self.keys:
            value = self._get(sample, k)
            if isinstance(value, torch.Tensor):
                if not value.is_floating_point():
                    raise DataError(
                        f"Normalize: field {k!r} is a {value.dtype} tensor; put ToTensor before "
                        "Normalize"
                    )
                channels = value.shape[-3] if value.ndim >= 3 else 1
                self._check(k, channels)
                if value.device.type == "cpu" and value.dtype == torch.float32 and value.ndim == 3:
                    # NumPy, in place on a copy (see the note above _image_to_tensor)
                    arr = value.numpy() if self.inplace else np.array(value.numpy(), order="C")
                    np.subtract(arr, self._mean_np.reshape(-1, 1, 1), out=arr)
                    np.multiply(arr, self._inv_std_np.reshape(-1, 1, 1), out=arr)
                    sample[k] = value if self.inplace else torch.from_numpy(arr)
                else:
                    x = value if self.inplace else value.clone()
                    sample[k] = x.sub_(self._mean_t).mul_(self._inv_std_t)
            else:
                arr = as_numpy_image(value)
                channels = arr.shape[-1] if arr.ndim == 3 else 1
                self._check(k, channels)
                sample[k] = (arr.astype(np.float32) - self._mean_np) * self._inv_std_np
        return sample

    def _check(self, key: str, channels: int) -> None:
        if len(self.mean) not in (1, channels):
            raise DataError(
                f"Normalize: field {key!r} has {channels} channels but mean/std have "
                f"{len(self.mean)} values"
            )

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std}, keys={self.keys})"
