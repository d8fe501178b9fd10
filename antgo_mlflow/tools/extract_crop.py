"""extract/crop: one image per instance (box expanded by a ratio, clipped to the image) -> GT.

Each crop becomes a sample whose ``image_label`` is the instance's label; its box, joints and
polygon segments are shifted into crop coordinates. RLE segments cannot be shifted without
decoding them and are left out of the crops (counted in the summary).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.fileio import StagingDir
from antgo_mlflow.gt import default_meta, load_gt, new_sample, read_meta, save_gt, write_meta
from antgo_mlflow.gt.io import ANNOTATION_FILE
from antgo_mlflow.gt.meta import META_FILE
from antgo_mlflow.progress import progress
from antgo_mlflow.tools._extract_common import ExtractSummary, check_tgt

MISSING_IMAGE = "missing image file"
UNREADABLE_IMAGE = "unreadable image file"
TOO_LARGE = "oversized image"  # over PIL's decompression-bomb limit
NO_IMAGE_FILE = "sample without image_file"
EMPTY_CROP = "box outside its image"
IMAGES_DIR = "images"


def crop_box(
    box: list[float], width: int, height: int, ext_ratio: float, square: bool = False
) -> tuple[int, int, int, int] | None:
    """Integer crop ``(x0, y0, x1, y1)``: ``box`` grown by ``ext_ratio`` of its width/height
    (half on each side; a square on the long side with ``square``), clipped to the image.
    None when nothing of it lies inside the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = (x1 - x0) * (1 + ext_ratio), (y1 - y0) * (1 + ext_ratio)
    if square:
        w = h = max(w, h)
    cx0 = max(0, math.floor(cx - w / 2))
    cy0 = max(0, math.floor(cy - h / 2))
    cx1 = min(width, math.ceil(cx + w / 2))
    cy1 = min(height, math.ceil(cy + h / 2))
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return cx0, cy0, cx1, cy1


def _shift_points(points: list, dx: float, dy: float) -> list:
    # [[x, y, (v...)], ...] -> moved by (-dx, -dy); extra values per point are kept
    return [[p[0] - dx, p[1] - dy, *p[2:]] for p in points]


def _shift_flat(coords: list, dx: float, dy: float) -> list:
    # [x0, y0, x1, y1, ...] -> moved by (-dx, -dy)
    return [v - (dx if k % 2 == 0 else dy) for k, v in enumerate(coords)]


def shift_segment(seg: Any, dx: float, dy: float) -> Any:
    """A segment moved by (-dx, -dy): points ``[[x, y], ...]``, COCO polygons
    ``[[x0, y0, x1, y1, ...], ...]`` or one flat polygon. Returns None for RLE dicts."""
    if isinstance(seg, dict):
        return None
    if not seg:
        return []
    if all(isinstance(v, (int, float)) for v in seg):
        return _shift_flat(seg, dx, dy)
    if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in seg):
        return _shift_points(seg, dx, dy)
    return [_shift_flat(part, dx, dy) for part in seg]


def _gt_file(src: str | os.PathLike) -> Path:
    if src is None or str(src) == "":
        raise UsageError("--src is required")
    path = Path(src).expanduser()
    if not path.exists():
        raise DataError(f"--src {path}: no such file or folder")
    return path / ANNOTATION_FILE if path.is_dir() else path


def extract_crop(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    ext_ratio: float = 0.3,
    square: bool = False,
    data_roots: list[str] | tuple[str, ...] | str | None = None,
) -> ExtractSummary:
    """Crop every instance (box) of a GT file into its own image and write a GT of the crops.

    Args:
        src: a GT JSON file, or a dataset folder with ``annotation.json``.
        tgt: output folder; crops go to ``images/<label>/<source stem>_<i>.png`` (``i`` = the
            instance's index in its sample, label -1 when the sample has no labels).
        ext_ratio: grow each box by this fraction of its width and height (0.3 = 30 % larger,
            centred) before clipping it to the image.
        square: make the grown box a square on its long side (antgo's behaviour).
        data_roots: folders besides the dataset folder that its images may be in; an image
            anywhere else refuses the run (``antgo_mlflow.gt.io``).

    Returns:
        An ExtractSummary. Each crop sample has ``image_label`` = the instance label,
        ``image_label_name`` from ``meta.json`` (when the source has one), ``tag`` = the source
        ``image_file``, ``crop_box`` = the crop in source pixels, and the instance's box, joints
        and segments in crop coordinates.

    Raises:
        GTFormatError: the GT file is truncated, not a list, or breaks schema 1.
        DataError: no instance could be cropped.

    Example:
        >>> extract_crop("dataset/annotation.json", "crops/", ext_ratio=0.3)  # doctest: +SKIP
    """
    from PIL import Image

    gt_path = _gt_file(src)
    tgt_dir = check_tgt(tgt, gt_path.parent)
    if ext_ratio is None or not math.isfinite(ext_ratio) or ext_ratio < 0:
        raise UsageError(f"--ext-ratio must be >= 0, got {ext_ratio}")
    samples_in = load_gt(gt_path, data_roots=data_roots)
    meta = read_meta(gt_path.parent / META_FILE)
    names = list(meta["meta"].get("category", [])) if meta else []

    summary = ExtractSummary(tgt=tgt_dir)
    out: list[dict] = []
    used: set[str] = set()
    rle_dropped = 0
    n_boxes = sum(len(s.get("bboxes") or []) for s in samples_in)
    with StagingDir(tgt_dir) as staging:
        for si, sample in progress(enumerate(samples_in), len(samples_in), "extract/crop", "img"):
            boxes = sample.get("bboxes") or []
            if not boxes:
                continue
            if not sample.get("image_file"):
                summary.skip(f"sample {si}", NO_IMAGE_FILE)
                continue
            image_path = gt_path.parent / sample["image_file"]
            if not image_path.is_file():
                summary.skip(sample["image_file"], MISSING_IMAGE)
                continue
            try:
                with warnings.catch_warnings():  # a bomb's warning is a refusal here, not a line
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(image_path) as opened:
                        opened.load()
                        image = (
                            opened if opened.mode in ("L", "RGB", "RGBA") else opened.convert("RGB")
                        )
                        image.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                summary.skip(sample["image_file"], TOO_LARGE)
                continue
            except (OSError, SyntaxError, ValueError, EOFError):
                summary.skip(sample["image_file"], UNREADABLE_IMAGE)
                continue
            labels = sample.get("labels") or []
            stem = PurePosixPath(sample["image_file"]).stem
            for i, box in enumerate(boxes):
                crop = crop_box(box, image.width, image.height, ext_ratio, square)
                if crop is None:
                    summary.skip(f"{sample['image_file']} box {i}", EMPTY_CROP)
                    continue
                label = int(labels[i]) if i < len(labels) else -1
                name = f"{IMAGES_DIR}/{label}/{stem}_{i}.png"
                if name in used:  # same stem in another folder
                    name = f"{IMAGES_DIR}/{label}/{stem}_s{si}_{i}.png"
                used.add(name)
                dst = staging.path / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                image.crop(crop).save(dst, format="PNG")
                dx, dy = crop[0], crop[1]
                cw, ch = crop[2] - crop[0], crop[3] - crop[1]
                x0, y0, x1, y1 = (float(v) for v in box)
                inner = [
                    min(max(x0 - dx, 0.0), cw),
                    min(max(y0 - dy, 0.0), ch),
                    min(max(x1 - dx, 0.0), cw),
                    min(max(y1 - dy, 0.0), ch),
                ]
                item = new_sample(
                    image_file=name,
                    height=ch,
                    width=cw,
                    tag=sample["image_file"],
                    image_label=label,
                    image_label_name=names[label] if 0 <= label < len(names) else "",
                    bboxes=[inner],
                    labels=[label] if labels else [],
                    crop_box=[dx, dy, crop[2], crop[3]],
                )
                for field in ("box_visibility", "joints_vis"):
                    values = sample.get(field) or []
                    if i < len(values):
                        item[field] = [values[i]]
                joints = sample.get("joints2d") or []
                if i < len(joints):
                    item["joints2d"] = [_shift_points(joints[i], dx, dy)]
                segments = sample.get("segments") or []
                if i < len(segments):
                    moved = shift_segment(segments[i], dx, dy)
                    if moved is None:
                        rle_dropped += 1
                    else:
                        item["segments"] = [moved]
                out.append(item)
                summary.outputs.append(tgt_dir / name)
        if not out:
            raise DataError(
                f"--src {gt_path}: nothing to crop ({len(samples_in)} samples, {n_boxes} boxes; "
                f"{summary.skipped_text(True)})"
            )
        if names:
            new_meta = default_meta(total=len(out), category=names)
            new_meta["meta"]["skeleton"] = meta["meta"].get("skeleton", [])
            write_meta(staging.path / META_FILE, new_meta)
            summary.outputs.append(tgt_dir / META_FILE)
        save_gt(staging.path / ANNOTATION_FILE, out)
        staging.commit(last=[ANNOTATION_FILE])

    summary.written = len(out)
    summary.annotation = tgt_dir / ANNOTATION_FILE
    summary.outputs.append(summary.annotation)
    if rle_dropped:
        summary.notes.append(f"{rle_dropped} RLE segment(s) were not carried into the crops.")
    return summary
