"""The embedded detection default: synthetic "shapes" (rectangle, ellipse, triangle) with boxes.

1,500 images of 128x128 pixels are drawn once, deterministically, with NumPy only: a textured
background (a smooth two-colour blend, oriented stripes and pixel noise), then 0-4 shapes of
random class, size (about 16-52 px), aspect (0.6-1.6), rotation, colour (kept apart from the
background) and position. Shapes may overlap each other (at most 25% of either one's area) and be
cut by the image edge (at least 75% of a shape stays inside); about 5% of the images hold no
shape at all, as negatives. Each box is the tight xyxy box of the shape's pixels inside the image.

The images are written as JPEG (quality 90) with standard GT JSON per split (``tag`` = split,
``box_visibility`` 1), ``meta.json`` naming the three classes, and one TFRecord shard per split,
under ``cache_dir()/shapes-v1/<digest>/`` -- built once and race-safe like the digits
(``_cache.build_once``). The digest covers every drawing parameter and the image count.

Example:
    >>> data = prepare_shapes()
    >>> data.shard_paths("train")  # ['.../train-00000-of-00001-tfrecord']
    >>> data.class_names           # ('rectangle', 'ellipse', 'triangle')
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from antgo_mlflow.data.sources import PreparedData, split_from_manifest
from antgo_mlflow.data.sources._cache import READY_FILE, build_once
from antgo_mlflow.env import cache_dir

NAME = "shapes"
# Bump when the drawing, the split or the folder layout changes.
LAYOUT_VERSION = 1
IMAGE_SIZE = 128
NUM_IMAGES = 1500
CLASS_NAMES = ("rectangle", "ellipse", "triangle")
SPLITS = ("train", "val", "test")
# Fractions of the images (in index order) that form val and test; the rest is train.
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
SEED = 20241201
MAX_SHAPES = 4
NEGATIVE_FRACTION = 0.05
HALF_SIZE = (8.0, 26.0)  # a shape's mean half size, pixels
ASPECT = (0.6, 1.6)  # its width / height
MAX_OVERLAP = 0.25  # of either shape's area
MIN_INSIDE = 0.75  # of a shape's area inside the image
MIN_COLOUR_DISTANCE = 120.0  # L1 distance in RGB between a shape and the background under it
JPEG_QUALITY = 90
NOISE_SIGMA = (2.0, 6.0)  # background pixel noise, drawn per image
STRIPES = (0.4, 0.03, 0.12)  # largest stripe weight in the blend, stripe frequency range (1/px)
TRIANGLE_JITTER = 0.2  # radians each vertex may move from 120 degrees apart


def _params(num_images: int) -> dict:
    return {
        "name": NAME,
        "layout": LAYOUT_VERSION,
        "size": IMAGE_SIZE,
        "images": num_images,
        "classes": list(CLASS_NAMES),
        "val": VAL_FRACTION,
        "test": TEST_FRACTION,
        "seed": SEED,
        "max_shapes": MAX_SHAPES,
        "negatives": NEGATIVE_FRACTION,
        "half_size": list(HALF_SIZE),
        "aspect": list(ASPECT),
        "triangle_jitter": TRIANGLE_JITTER,
        "overlap": MAX_OVERLAP,
        "inside": MIN_INSIDE,
        "colour": MIN_COLOUR_DISTANCE,
        "jpeg": JPEG_QUALITY,
        "noise": list(NOISE_SIGMA),
        "stripes": list(STRIPES),
        "draw": "numpy masks at pixel centres; blend+stripes+noise background",
    }


def digest_of(num_images: int = NUM_IMAGES) -> str:
    """The content address of a build: every drawing parameter and the image count."""
    return hashlib.sha256(json.dumps(_params(num_images), sort_keys=True).encode()).hexdigest()[:16]


def split_of(index: int, num_images: int = NUM_IMAGES) -> str:
    """The split of image ``index``: the last TEST_FRACTION are test, the VAL_FRACTION before val."""
    n_test = round(num_images * TEST_FRACTION)
    n_val = round(num_images * VAL_FRACTION)
    if index >= num_images - n_test:
        return "test"
    if index >= num_images - n_test - n_val:
        return "val"
    return "train"


# -- drawing ---------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) float image: two colours blended by smooth noise and stripes, plus noise."""
    c0 = rng.uniform(0, 255, 3)
    c1 = np.clip(c0 + rng.uniform(-90, 90, 3), 0, 255)
    coarse = rng.uniform(0, 1, (5, 5))
    # bilinear upsampling of the coarse grid, by hand (no OpenCV: results must not vary by version)
    grid = np.linspace(0, 4, size)
    i0 = np.minimum(grid.astype(int), 3)
    f = grid - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    smooth = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = rng.uniform(0, math.pi)
    freq = rng.uniform(*STRIPES[1:])
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)))
    weight = rng.uniform(0.0, STRIPES[0])
    t = (1 - weight) * smooth + weight * stripes
    image = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    return image + rng.normal(0, rng.uniform(*NOISE_SIGMA), image.shape)


def _shape_mask(
    kind: int, cx: float, cy: float, hw: float, hh: float, angle: float, size: int, rng
) -> np.ndarray:
    """Boolean (size, size) mask of one shape, tested at pixel centres."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - cx, yy - cy
    c, s = math.cos(angle), math.sin(angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    if kind == 0:  # rectangle
        return (np.abs(u) <= hw) & (np.abs(v) <= hh)
    if kind == 1:  # ellipse
        return (u / hw) ** 2 + (v / hh) ** 2 <= 1.0
    # triangle: three vertices on the ellipse (hw, hh), about 120 degrees apart
    base = rng.uniform(0, 2 * math.pi)
    jitter = rng.uniform(-TRIANGLE_JITTER, TRIANGLE_JITTER, 3)
    angles = base + np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]) + jitter
    px, py = hw * np.cos(angles), hh * np.sin(angles)
    inside = np.ones_like(u, dtype=bool)
    sign = np.sign((px[1] - px[0]) * (py[2] - py[0]) - (py[1] - py[0]) * (px[2] - px[0]))
    for a in range(3):
        b = (a + 1) % 3
        cross = (px[b] - px[a]) * (v - py[a]) - (py[b] - py[a]) * (u - px[a])
        inside &= cross * sign >= 0
    return inside


def _full_area(kind: int, hw: float, hh: float) -> float:
    """Approximate area of a shape if nothing were cut by the image edge (for MIN_INSIDE)."""
    if kind == 0:
        return 4 * hw * hh
    if kind == 1:
        return math.pi * hw * hh
    return 1.299 * hw * hh  # an equilateral triangle inscribed in the ellipse: 3*sqrt(3)/4 * a * b


def draw_image(index: int, size: int = IMAGE_SIZE) -> tuple[np.ndarray, list, list]:
    """Image ``index`` as (size, size, 3) uint8, its boxes [[x0, y0, x1, y1], ...] and labels."""
    rng = np.random.default_rng([SEED, index])
    image = _background(rng, size)
    count = 0 if rng.uniform() < NEGATIVE_FRACTION else int(rng.integers(1, MAX_SHAPES + 1))
    masks: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(count):
        for _attempt in range(30):
            kind = int(rng.integers(0, len(CLASS_NAMES)))
            half = rng.uniform(*HALF_SIZE)
            aspect = math.sqrt(rng.uniform(*ASPECT))
            hw, hh = half * aspect, half / aspect
            if kind == 0:
                angle = rng.uniform(-0.35, 0.35)
            else:
                angle = rng.uniform(0, math.pi)
            cx, cy = rng.uniform(0, size, 2)
            mask = _shape_mask(kind, cx, cy, hw, hh, angle, size, rng)
            area = int(mask.sum())
            if area < MIN_INSIDE * _full_area(kind, hw, hh) or area < 40:
                continue
            if any((mask & other).sum() > MAX_OVERLAP * min(area, other.sum()) for other in masks):
                continue
            under = image[mask].mean(axis=0)
            for _c in range(20):
                colour = rng.uniform(0, 255, 3)
                if np.abs(colour - under).sum() >= MIN_COLOUR_DISTANCE:
                    break
            image[mask] = colour + rng.normal(0, 4, (area, 3))
            masks.append(mask)
            labels.append(kind)
            break
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    return np.clip(image, 0, 255).round().astype(np.uint8), boxes, labels


def encode_jpeg(image: np.ndarray) -> bytes:
    """RGB uint8 array -> JPEG bytes (quality JPEG_QUALITY)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


# -- building ----------------------------------------------------------------------------------------


def _build(tmp: Path, num_images: int, digest: str) -> None:
    from antgo_mlflow.data.pack import pack
    from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta

    (tmp / "images").mkdir(parents=True)
    per_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    boxes_total = 0
    for i in range(num_images):
        image, boxes, labels = draw_image(i)
        name = f"images/{i:04d}.jpg"
        (tmp / name).write_bytes(encode_jpeg(image))
        split = split_of(i, num_images)
        per_split[split].append(
            new_sample(
                image_file=name,
                height=IMAGE_SIZE,
                width=IMAGE_SIZE,
                tag=split,
                bboxes=boxes,
                labels=labels,
                box_visibility=[1] * len(boxes),
            )
        )
        boxes_total += len(boxes)
    for split, samples in per_split.items():
        save_gt(tmp / f"{split}.json", samples)
        pack(str(tmp / f"{split}.json"), str(tmp / "shards"), split, num=len(samples))
    meta = {**default_meta(num_images, list(CLASS_NAMES)), "info": NAME}
    write_meta(tmp / "meta.json", meta)
    (tmp / READY_FILE).write_text(
        json.dumps(
            {
                "digest": digest,
                "params": _params(num_images),
                "counts": {s: len(v) for s, v in per_split.items()},
                "boxes": boxes_total,
            }
        )
    )


def _prepared(root: Path, digest: str) -> PreparedData:
    splits = {
        s: split_from_manifest(s, root / f"{s}.json", root / "shards" / f"{s}-manifest.json")
        for s in SPLITS
    }
    return PreparedData(NAME, root, CLASS_NAMES, splits, digest)


def prepare_shapes(
    root: str | os.PathLike | None = None, num_images: int = NUM_IMAGES, quiet: bool = False
) -> PreparedData:
    """Build (once) and return the synthetic shapes as GT + TFRecord shards.

    Args:
        root: parent folder; default ``cache_dir()`` (``$ANTGO_CACHE_DIR`` or ``~/.cache/antgo-mlflow``).
        num_images: how many images to draw (tests use a few dozen); splits keep their fractions.
        quiet: no progress lines on stderr.

    Returns:
        PreparedData with ``train``/``val``/``test`` splits (1,050/150/300 images by default)
        and ``meta.json`` in its root.
    """
    if num_images < len(SPLITS):
        raise ValueError(f"num_images must be >= {len(SPLITS)}, got {num_images}")
    digest = digest_of(num_images)
    base = Path(root) if root is not None else cache_dir()
    final = build_once(
        base / f"{NAME}-v{LAYOUT_VERSION}",
        digest,
        lambda tmp: _build(tmp, num_images, digest),
        f"the synthetic shapes dataset ({num_images} images)",
        quiet=quiet,
    )
    return _prepared(final, digest)


__all__ = ["CLASS_NAMES", "draw_image", "prepare_shapes"]
