"""Decode encoded image bytes (PNG, JPEG, ...) to an HWC uint8 RGB numpy array, fast.

Three backends: OpenCV (``cv2.imdecode``), torchvision (``torchvision.io.decode_image``) and
PIL. ``benchmarks/bench_shards.py`` measures them on 32x32 PNG and 256x256 JPEG, single thread.
On this machine (2026-11-26, three full runs) OpenCV won PNG every time (18k-25k/s vs
torchvision 11k-18k/s vs PIL 7k-11k/s); on JPEG OpenCV and torchvision were within the host's
noise (2.1k-2.9k/s each, PIL 1.2k-1.5k/s). So OpenCV is the default; it also releases the GIL,
which ``read_threads`` relies on. All three give identical pixels for PNG and JPEG here. If
OpenCV is not installed, torchvision, then PIL is used.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from antgo_mlflow.errors import DataError

BACKENDS = ("opencv", "torchvision", "pil")


_CV2: tuple | None = None  # (cv2, imread flag, decodes straight to RGB), set on first use


def _opencv_setup() -> tuple:
    # Built whole, then bound in one assignment: threads of ``read_threads`` may all get here
    # at a process's first batch, and each may only ever see None or a complete tuple.
    global _CV2
    import cv2

    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 converts on decode
    _CV2 = (cv2, cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag, rgb_flag is not None)
    return _CV2


def _opencv(data: bytes) -> np.ndarray:
    # once per process: the import statement and lookups cost ~0.4 us per image
    cv2, flag, is_rgb = _CV2 or _opencv_setup()
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if image is None:
        raise ValueError("OpenCV cannot decode these bytes")
    return image if is_rgb else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _torchvision(data: bytes) -> np.ndarray:
    import torch
    from torchvision.io import ImageReadMode, decode_image

    tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    chw = decode_image(tensor, mode=ImageReadMode.RGB)
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy())


def _pil(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


_FUNCS: dict[str, Callable[[bytes], np.ndarray]] = {
    "opencv": _opencv,
    "torchvision": _torchvision,
    "pil": _pil,
}


def _default_backend() -> str:
    import importlib.util

    for name, module in (("opencv", "cv2"), ("torchvision", "torchvision"), ("pil", "PIL")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise DataError("no image decoder available: install opencv-python-headless or pillow")


_DEFAULT: str | None = None


def decode_image(data: bytes, backend: str | None = None) -> np.ndarray:
    """Decode encoded image bytes to an ``(H, W, 3)`` uint8 RGB array.

    Args:
        data: the encoded file bytes.
        backend: ``"opencv"`` (default where installed), ``"torchvision"`` or ``"pil"``.

    Raises:
        DataError if the bytes are not a decodable image.
    """
    global _DEFAULT
    if backend is None:
        if _DEFAULT is None:
            _DEFAULT = _default_backend()
        backend = _DEFAULT
    try:
        func = _FUNCS[backend]
    except KeyError:
        raise DataError(f"unknown image decoder {backend!r} (one of {BACKENDS})") from None
    try:
        return func(data if type(data) is bytes else bytes(data))
    except Exception as exc:
        raise DataError(f"cannot decode image bytes ({len(data)} bytes): {exc}") from None
