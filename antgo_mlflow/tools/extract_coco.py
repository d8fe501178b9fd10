"""extract/coco: a COCO instances JSON -> a standard GT dataset folder (one sample per image).

Conventions (documented for users in the command help):
- ``bboxes`` are COCO ``[x, y, w, h]`` turned into absolute ``[x0, y0, x1, y1]``, rounded to 2
  decimals; boxes with ``w <= 0`` or ``h <= 0`` are dropped and counted.
- ``segments`` keep COCO's own encoding per instance: a list of flat polygons
  ``[[x0, y0, x1, y1, ...], ...]`` (an instance may have several parts) or an RLE dict as given;
  ``[]`` for an instance without segmentation.
- Crowd annotations (``iscrowd=1``) are kept with ``box_visibility`` 0 (1 for the others), and
  every sample carries ``iscrowd`` per instance, so trainers can ignore or mask them.
- Keypoints, when present, become ``joints2d`` ``[[x, y], ...]`` and ``joints_vis`` (COCO's v).
- Labels: ``--tags=person:0,car:1`` maps category names to indices and drops other categories;
  without it the COCO category ids in increasing order become 0..K-1.
- Images are hard-linked (copied when linking is impossible) into ``tgt/images/<file_name>``
  so ``image_file`` stays relative to ``tgt``.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from antgo_mlflow.errors import DataError, GTFormatError, UsageError
from antgo_mlflow.fileio import StagingDir, read_json
from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta
from antgo_mlflow.gt.io import ANNOTATION_FILE, inside_root
from antgo_mlflow.gt.meta import META_FILE
from antgo_mlflow.progress import progress
from antgo_mlflow.tools._extract_common import ExtractSummary, check_dir, check_file, check_tgt
from antgo_mlflow.tools.tags import parse_tags

MISSING_IMAGE = "missing image file"
CORRUPT_IMAGE = "unreadable image file"
IMAGES_DIR = "images"


#: Decimals kept in box coordinates: COCO gives pixels with about 2 decimals; x + w in floating
#: point adds noise digits (130.23000000000002) that would only bloat the GT file.
BOX_DECIMALS = 2


def _xyxy(x: float, y: float, w: float, h: float) -> list[float]:
    """COCO ``[x, y, w, h]`` as ``[x0, y0, x1, y1]`` rounded to ``BOX_DECIMALS``."""
    return [round(v, BOX_DECIMALS) for v in (x, y, x + w, y + h)]


def _load_coco(path: Path) -> dict[str, Any]:
    data = read_json(path, "a COCO instances JSON object", GTFormatError)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        got = type(data).__name__ if not isinstance(data, dict) else "an object without 'images'"
        raise GTFormatError(
            f"{path}: not a COCO instances file (expected an object with an 'images' list, "
            f"got {got})"
        )
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise GTFormatError(f"{path}: '{key}' must be a list")
    return data


def _categories(path: Path, data: dict, tags: dict[str, int] | None):
    """(category id -> label index, class names in index order, skeleton)."""
    cats = {}
    skeleton: list = []
    for i, cat in enumerate(data.get("categories", [])):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise GTFormatError(f"{path}: categories[{i}] needs 'id' and 'name'")
        if cat["id"] in cats:
            raise GTFormatError(f"{path}: category id {cat['id']} appears twice")
        cats[cat["id"]] = str(cat["name"])
        if cat.get("skeleton") and not skeleton:
            # COCO numbers keypoints from 1
            skeleton = [[int(a) - 1, int(b) - 1] for a, b in cat["skeleton"]]
    if tags is None:
        ids = sorted(cats, key=lambda c: (str(type(c)), c))
        return {cid: i for i, cid in enumerate(ids)}, [cats[c] for c in ids], skeleton
    by_name: dict[str, list] = {}
    for cid, name in cats.items():
        by_name.setdefault(name, []).append(cid)
    unknown = [name for name in tags if name not in by_name]
    if unknown:
        known = ", ".join(sorted(by_name)[:20])
        raise UsageError(f"--tags: {unknown[0]!r} is not a category in {path} (it has: {known})")
    mapping = {cid: idx for name, idx in tags.items() for cid in by_name[name]}
    # index order; an index given several names keeps the first; unused indices get a placeholder
    names = [f"class_{i}" for i in range(max(tags.values()) + 1)]
    for name, idx in reversed(list(tags.items())):
        names[idx] = name
    return mapping, names, skeleton


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.width, im.height
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``; copy when the file systems or permissions do not allow it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def extract_coco(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    tags: str | dict[str, int] | None = None,
    images: str | os.PathLike | None = None,
) -> ExtractSummary:
    """Convert a COCO instances JSON into a GT dataset: one sample per image, with all its boxes.

    Args:
        src: the COCO JSON (``images``, ``annotations``, ``categories``).
        tgt: output folder: ``images/``, ``annotation.json``, ``meta.json``.
        tags: ``"name:idx,..."`` (or a dict) mapping category names to label indices; categories
            not listed are dropped. Default: COCO category ids in increasing order -> 0..K-1.
        images: folder holding the COCO ``file_name`` paths (default: the JSON's folder).

    Returns:
        An ExtractSummary; ``extra["categories"]`` holds the class names (``meta.category``).
        Images listed in the JSON but missing on disk are skipped and counted; images without
        annotations are kept with empty ``bboxes``.

    Raises:
        GTFormatError: truncated JSON, not a COCO object, or an annotation that points to a
            missing image or category (the message names the annotation id).
        UsageError: bad ``tags``.
        DataError: ``src`` or ``images`` missing, or none of the images exist.

    Example:
        >>> extract_coco("instances_val.json", "coco_gt/", tags="person:0,car:1")  # doctest: +SKIP
    """
    src_path = check_file(src)
    images_dir = check_dir(images if images else src_path.parent, "--images")
    tgt_dir = check_tgt(tgt, images_dir)
    tag_map = parse_tags(tags)
    data = _load_coco(src_path)
    label_of, names, skeleton = _categories(src_path, data, tag_map)

    entries: dict[Any, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise GTFormatError(f"{src_path}: images[{i}] needs 'id' and 'file_name'")
        if img["id"] in entries:
            raise GTFormatError(f"{src_path}: image id {img['id']} appears twice in 'images'")
        name = PurePosixPath(str(img["file_name"]).replace("\\", "/"))
        if not name.parts or not inside_root(images_dir, name.as_posix()):
            raise GTFormatError(
                f"{src_path}: image id {img['id']}: file_name {img['file_name']!r} must be a "
                f"relative path inside --images"
            )
        entries[img["id"]] = img

    category_ids = {c["id"] for c in data.get("categories", [])}
    per_image: dict[Any, list[dict]] = {iid: [] for iid in entries}
    dropped: Counter = Counter()
    has_keypoints = False
    for i, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            raise GTFormatError(f"{src_path}: annotations[{i}] is not an object")
        aid = ann.get("id", f"#{i}")
        iid = ann.get("image_id")
        if iid not in entries:
            raise GTFormatError(
                f"{src_path}: annotation id {aid} points to image_id {iid!r}, "
                f"which is not in 'images'"
            )
        cid = ann.get("category_id")
        if cid not in category_ids:
            raise GTFormatError(
                f"{src_path}: annotation id {aid} has category_id {cid!r}, "
                f"which is not in 'categories'"
            )
        if cid not in label_of:
            dropped["annotation(s) of categories not in --tags"] += 1
            continue
        box = ann.get("bbox")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        ):
            raise GTFormatError(f"{src_path}: annotation id {aid}: 'bbox' must be [x, y, w, h]")
        if box[2] <= 0 or box[3] <= 0:
            dropped["box(es) with zero width or height"] += 1
            continue
        has_keypoints = has_keypoints or bool(ann.get("keypoints"))
        per_image[iid].append(ann)

    summary = ExtractSummary(tgt=tgt_dir)
    samples = []
    with StagingDir(tgt_dir) as staging:
        for iid, img in progress(entries.items(), len(entries), "extract/coco", "img"):
            file_name = PurePosixPath(str(img["file_name"]).replace("\\", "/"))
            source = images_dir / file_name
            if not source.is_file():
                summary.skip(file_name.as_posix(), MISSING_IMAGE)
                continue
            width, height = img.get("width"), img.get("height")
            if not (
                isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
            ):
                size = _image_size(source)
                if size is None:
                    summary.skip(file_name.as_posix(), CORRUPT_IMAGE)
                    continue
                width, height = size
            rel = (PurePosixPath(IMAGES_DIR) / file_name).as_posix()
            _place(source, staging.path / rel)
            sample = new_sample(
                image_file=rel, height=height, width=width, tag=src_path.name, coco_image_id=iid
            )
            crowd = []
            for ann in per_image[iid]:
                x, y, w, h = (float(v) for v in ann["bbox"])
                sample["bboxes"].append(_xyxy(x, y, w, h))
                sample["labels"].append(label_of[ann["category_id"]])
                is_crowd = int(bool(ann.get("iscrowd", 0)))
                crowd.append(is_crowd)
                sample["box_visibility"].append(0 if is_crowd else 1)
                seg = ann.get("segmentation")
                sample["segments"].append(seg if isinstance(seg, (list, dict)) and seg else [])
                if has_keypoints:
                    kps = ann.get("keypoints") or []
                    sample["joints2d"].append(
                        [[float(kps[k]), float(kps[k + 1])] for k in range(0, len(kps) - 2, 3)]
                    )
                    sample["joints_vis"].append([float(v) for v in kps[2::3]])
            sample["iscrowd"] = crowd
            samples.append(sample)
            summary.outputs.append(tgt_dir / rel)
        if not samples:
            raise DataError(
                f"{src_path}: none of its {len(entries)} images were found under --images "
                f"{images_dir} ({summary.skipped_text(True)})"
            )
        meta = default_meta(total=len(samples), category=names)
        meta["meta"]["skeleton"] = skeleton
        meta["info"] = f"converted from COCO {src_path.name} by antgo tool extract/coco"
        write_meta(staging.path / META_FILE, meta)
        save_gt(staging.path / ANNOTATION_FILE, samples)
        staging.commit(last=[ANNOTATION_FILE])

    summary.written = len(samples)
    summary.annotation = tgt_dir / ANNOTATION_FILE
    summary.outputs += [tgt_dir / META_FILE, summary.annotation]
    summary.extra["categories"] = names
    summary.extra["boxes"] = sum(len(s["bboxes"]) for s in samples)
    for reason, n in sorted(dropped.items()):
        summary.notes.append(f"Dropped {n} {reason}.")
    return summary
