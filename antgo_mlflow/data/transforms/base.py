"""The transform protocol: a callable on a sample dict that reads and writes ``sample[k]`` for its keys.

A transform is built from a config dict (``dict(type='RandomCrop', size=32, keys=['image'])``),
called once per sample inside the DataLoader worker, and returns the (possibly new) sample dict.
This module also holds the small image helpers every transform family shares (decode, size,
conversions), kept here so that the families do not import each other.

Sample contract (what datasets yield and transforms keep):
    image        encoded bytes (PNG/JPEG), an HWC uint8 RGB numpy array, a PIL image or a
                 CHW torch tensor, depending on how far the pipeline has gone.
    bboxes       float32 (N, 4) xyxy in absolute pixels of the current image.
    labels       int (N,) class per box; ``box_visibility`` (N,) likewise per box.
    joints2d     float32 (N, K, 2) pixel coordinates; ``joints_vis`` (N, K).
    segments     per instance: a polygon ``[[x, y], ...]``, COCO polygons ``[[x0, y0, x1, ...], ...]``
                 or an RLE dict (left untouched); or one (H, W) integer label map.
    label        int image class (classification); becomes a float vector after MixupImage or
                 CutmixImage with ``num_classes``.
    image_meta   dict filled by ``Meta`` (and by a few ops: image_shape, scale_factor, offset).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError

ENCODED = (bytes, bytearray, memoryview)


class BaseTransform:
    """Base of the sample-dict transforms: holds ``keys`` and a readable repr.

    Subclasses implement ``__call__(sample) -> sample``. They may change ``sample`` in place and
    must return it (returning a new dict is allowed too).
    """

    def __init__(self, keys: Sequence[str] | str = ("image",)):
        self.keys = [keys] if isinstance(keys, str) else list(keys)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _get(self, sample: dict[str, Any], key: str) -> Any:
        """``sample[key]`` or a DataError naming the transform, the key and the fields present."""
        try:
            return sample[key]
        except KeyError:
            raise DataError(
                f"{type(self).__name__}: sample has no field {key!r} "
                f"(fields: {', '.join(sorted(map(str, sample)))})"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={self.keys})"


# -- image helpers ------------------------------------------------------------------------------


def decode_image(data: bytes | bytearray | memoryview, to_rgb: bool = True) -> np.ndarray:
    """Decode PNG/JPEG bytes into an HWC uint8 array (RGB, or BGR with ``to_rgb=False``).

    Uses the shard readers' decoder (``antgo_mlflow.data.decode``: OpenCV, measured fastest).
    Grey images come back with 3 channels; alpha is dropped. Bad bytes raise DataError.
    """
    from antgo_mlflow.data.decode import decode_image as _decode

    img = _decode(data)
    return img if to_rgb else np.ascontiguousarray(img[..., ::-1])


def is_pil(obj: Any) -> bool:
    """True for a PIL image (without importing PIL when it was never loaded)."""
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def as_numpy_image(img: Any) -> np.ndarray:
    """HWC (or HW) numpy view of bytes, a PIL image, a numpy array or a CHW tensor."""
    if isinstance(img, np.ndarray):
        return img
    if isinstance(img, ENCODED):
        return decode_image(img)
    if is_pil(img):
        return np.asarray(img)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency of data/
        torch = None
    if torch is not None and isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        return t.permute(1, 2, 0).numpy() if t.ndim == 3 else t.numpy()
    raise DataError(f"expected an image (bytes, numpy, PIL or tensor), got {type(img).__name__}")


def image_hw(img: Any) -> tuple[int, int]:
    """(height, width) of a numpy HWC/HW array, a PIL image or a CHW/NCHW tensor."""
    if isinstance(img, np.ndarray):
        return int(img.shape[0]), int(img.shape[1])
    if is_pil(img):
        return int(img.height), int(img.width)
    shape = getattr(img, "shape", None)
    if shape is not None and len(shape) >= 2:
        return int(shape[-2]), int(shape[-1])
    raise DataError(f"expected an image, got {type(img).__name__}")


def load_pil(data: bytes | bytearray | memoryview):
    """Open encoded bytes as a PIL image (for ``INumpyToPIL`` on undecoded samples)."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(bytes(data)))
        img.load()
    except Exception as exc:  # PIL raises several unrelated types for bad data
        raise DataError(f"cannot decode image bytes ({len(data)} bytes): {exc}") from None
    return img
