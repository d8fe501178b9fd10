"""extract/images: a folder of images (recursive) -> a standard GT dataset folder.

Images are copied unchanged, or resized so that their long side is at most ``max_size``; relative
paths are kept. Files that are not images or cannot be decoded are skipped and counted, never fatal
(unless nothing readable is left). Work is spread over a process pool; output order is the input
order, so runs are reproducible.

``label_from="folder"`` labels images by the sub-folder they are in (the common
``root/<class>/*.jpg`` layout): ``image_label`` is the class's index in the sorted list of class
folders, ``image_label_name`` its name, and ``meta.json`` lists the classes in that order. Without
it samples are unlabelled (``image_label: -1``), ready for labelling or pseudo-labelling.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from antgo_mlflow.errors import DataError, UsageError, WorkerLost
from antgo_mlflow.fileio import StagingDir
from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta
from antgo_mlflow.gt.io import ANNOTATION_FILE
from antgo_mlflow.gt.meta import META_FILE
from antgo_mlflow.interrupts import worker_signals
from antgo_mlflow.progress import progress
from antgo_mlflow.tools._extract_common import (
    IMAGE_EXTS,
    ExtractSummary,
    check_dir,
    check_max_size,
    check_tgt,
    default_workers,
    fit_size,
    parse_exts,
    walk_files,
)

NOT_IMAGE = "non-image file"
CORRUPT = "corrupt image"
UNREADABLE = "unreadable file"
TOO_LARGE = "oversized image"  # over PIL's decompression-bomb limit
NO_CLASS_FOLDER = "image outside a class folder"  # --label-from=folder: a file directly in --src
LABEL_SOURCES = ("folder",)

JPEG_QUALITY = 90
# EXIF orientation -> the transpose that makes the pixels upright (as PIL.ImageOps.exif_transpose).
_ORIENTATION = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}


def convert_image(src: str, dst: str, max_size: int | None) -> tuple[str | None, int, int]:
    """Copy or resize one image file; returns (skip reason or None, width, height written).

    Images within ``max_size`` are fully decoded (to reject corrupt files) and then copied byte
    for byte. Larger ones are decoded at reduced scale where the format allows (JPEG draft mode),
    resized with bicubic filtering, turned upright by their EXIF orientation (which re-encoding
    drops), and saved in their original format.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(src, "rb") as fh:
            data = fh.read()
    except OSError:
        return UNREADABLE, 0, 0
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            w, h = im.size
            tw, th = fit_size(w, h, max_size)
            if (tw, th) == (w, h):
                im.load()
                with open(dst, "wb") as out:
                    out.write(data)
                return None, w, h
            orientation = im.getexif().get(0x0112, 1)
            draft = im.draft(None, (tw * 2, th * 2)) if fmt == "JPEG" else None
            box = draft[1] if draft else None
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode.startswith("I;16"):
                im = im.convert("I")
            small = im.resize((tw, th), Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
            if orientation in _ORIENTATION:
                small = small.transpose(Image.Transpose(_ORIENTATION[orientation]))
            kwargs = {}
            if fmt == "JPEG":
                kwargs["quality"] = JPEG_QUALITY
                if small.mode not in ("L", "RGB", "CMYK"):
                    small = small.convert("RGB")
            small.save(dst, format=fmt, **kwargs)
            return None, small.width, small.height
    except UnidentifiedImageError:
        return NOT_IMAGE, 0, 0
    except Image.DecompressionBombError:
        return TOO_LARGE, 0, 0
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError):
        # PIL raises any of these for truncated or malformed files
        return CORRUPT, 0, 0


def _convert_task(task: tuple[int, str, str, int | None]) -> tuple[int, str | None, int, int]:
    index, src, dst, max_size = task
    return (index, *convert_image(src, dst, max_size))


def _select(
    files: list[Path],
    prefix: str | None,
    suffix: str | None,
    exts: tuple[str, ...] | None,
) -> list[Path]:
    out = []
    for rel in files:
        if exts is not None and rel.suffix.lower() not in exts:
            continue
        if prefix and not rel.stem.startswith(prefix):
            continue
        if suffix and not rel.stem.endswith(suffix):
            continue
        out.append(rel)
    return out


def class_folders(files: list[Path]) -> list[str]:
    """The class names of ``root/<class>/...`` files: their first folders, sorted."""
    return sorted({rel.parts[0] for rel in files if len(rel.parts) > 1})


def _filters_text(prefix, suffix, ext) -> str:
    parts = [f"--{k}={v}" for k, v in (("prefix", prefix), ("suffix", suffix), ("ext", ext)) if v]
    return " ".join(parts)


def extract_images(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    prefix: str | None = None,
    suffix: str | None = None,
    ext: str | None = None,
    shuffle: bool = False,
    num: int | None = None,
    max_size: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    label_from: str | None = None,
) -> ExtractSummary:
    """Turn the images under ``src`` into a GT dataset in ``tgt`` (images + ``annotation.json``).

    Args:
        src: folder searched recursively (an output folder inside it is ignored).
        tgt: output folder; images keep their path relative to ``src``.
        prefix, suffix: keep files whose name without extension starts / ends with these.
        ext: keep only these extensions, e.g. ``"jpg,png"``. Without it every file is tried and
            files that are not images are skipped and counted.
        shuffle: random order (seeded by ``seed``) instead of sorted relative paths.
        num: write at most this many images (the first ``num`` readable ones in order). More
            than available is not an error: all are written and the summary says so.
        max_size: resize so the long side is at most this (aspect kept, never upscaled);
            smaller images and ``None`` copy the file bytes unchanged.
        workers: processes to use (default: all usable cores; 1 = no pool).
        label_from: ``"folder"``: label each image by its first sub-folder of ``src`` (classes
            sorted by name, listed in ``meta.json``); images directly in ``src`` are skipped.

    Returns:
        An ExtractSummary; samples carry ``image_file`` (relative to ``tgt``), the written
        ``height``/``width`` and ``tag`` = the sub-folder the image came from ('' at the top);
        with ``label_from="folder"`` also ``image_label``/``image_label_name`` (the class
        names are in ``summary.extra["categories"]``).

    Raises:
        DataError: ``src`` missing, empty, nothing matching the filters, or nothing readable.
        UsageError: a bad argument value.

    Nothing is left in ``tgt`` on error or Ctrl-C; ``annotation.json`` is moved into place last.

    Example:
        >>> extract_images("raw/", "dataset/", max_size=256).written  # doctest: +SKIP
        998
    """
    src_dir = check_dir(src)
    tgt_dir = check_tgt(tgt, src_dir)
    max_size = check_max_size(max_size)
    if num is not None and num < 1:
        raise UsageError(f"--num must be >= 1, got {num}")
    n_workers = default_workers(workers)
    exts = parse_exts(ext)
    if label_from is not None and label_from not in LABEL_SOURCES:
        raise UsageError(
            f"--label-from={label_from}: expected {', '.join(LABEL_SOURCES)} "
            "(label images by their <class>/ sub-folder)"
        )

    files = walk_files(src_dir, exclude=tgt_dir)
    if not files:
        raise DataError(f"--src {src_dir}: empty folder (no files found)")
    chosen = _select(files, prefix, suffix, exts)
    if not chosen:
        raise DataError(
            f"--src {src_dir}: none of its {len(files)} files match "
            f"{_filters_text(prefix, suffix, ext)}"
        )
    if shuffle:
        random.Random(seed).shuffle(chosen)
    categories: list[str] = []
    if label_from == "folder":
        # classes from image files only: a folder of notes is not a class
        categories = class_folders([r for r in chosen if r.suffix.lower() in IMAGE_EXTS])
        if not categories:
            raise DataError(
                f"--src {src_dir}: --label-from=folder needs one sub-folder per class "
                "(<src>/<class>/*.jpg); every file is directly in --src"
            )
    class_index = {name: i for i, name in enumerate(categories)}

    summary = ExtractSummary(tgt=tgt_dir)
    if categories:
        summary.extra["categories"] = categories
    with StagingDir(tgt_dir) as staging:
        tasks = []
        for rel in chosen:
            if rel.suffix.lower() not in IMAGE_EXTS:
                summary.skip(rel.as_posix(), NOT_IMAGE)
                continue
            if categories and len(rel.parts) < 2:
                summary.skip(rel.as_posix(), NO_CLASS_FOLDER)
                continue
            tasks.append((len(tasks), str(src_dir / rel), str(staging.path / rel), max_size))
        for parent in sorted({Path(t[2]).parent for t in tasks}):
            parent.mkdir(parents=True, exist_ok=True)

        samples = []
        consumed = 0
        pool = None
        try:
            if n_workers > 1 and len(tasks) > 1:
                # forkserver, not fork: forking a process that runs threads (MLflow's, a web
                # server's, the caller's) can copy a held lock into the child and hang it.
                # ProcessPoolExecutor, not multiprocessing.Pool: a worker can die holding the
                # task queue's lock (SIGTERM to the whole process group, the OOM killer); then
                # Pool.terminate() blocks on that lock forever and Pool.imap waits forever for
                # the lost chunk, while the executor stops the rest without the lock and fails
                # what is pending (BrokenProcessPool).
                pool = ProcessPoolExecutor(
                    min(n_workers, len(tasks)),
                    mp_context=multiprocessing.get_context("forkserver"),
                    initializer=worker_signals,
                )
                chunk = max(1, min(32, len(tasks) // (n_workers * 8)))
                results = pool.map(_convert_task, tasks, chunksize=chunk)
            else:
                results = (_convert_task(t) for t in tasks)
            total = min(num, len(tasks)) if num else len(tasks)
            for index, reason, w, h in progress(results, total, "extract/images", "img"):
                consumed = index + 1
                rel = Path(tasks[index][2]).relative_to(staging.path)
                if reason:
                    summary.skip(rel.as_posix(), reason)
                    Path(tasks[index][2]).unlink(missing_ok=True)
                    continue
                parent = rel.parent.as_posix()
                labels = {}
                if categories:
                    labels = {
                        "image_label": class_index[rel.parts[0]],
                        "image_label_name": rel.parts[0],
                    }
                samples.append(
                    new_sample(
                        image_file=rel.as_posix(),
                        height=h,
                        width=w,
                        tag="" if parent == "." else parent,
                        **labels,
                    )
                )
                summary.outputs.append(tgt_dir / rel)
                if num and len(samples) >= num:
                    break
        except BrokenProcessPool:
            raise WorkerLost(
                f"extract/images: a worker process died (killed, or out of memory) after "
                f"{consumed} of {len(tasks)} images; {tgt_dir} is unchanged"
            ) from None
        finally:
            if pool is not None:  # queued chunks are dropped; running ones finish (<= 32 images)
                pool.shutdown(wait=True, cancel_futures=True)
        # Workers may have run ahead of a --num cut: drop what they wrote past it.
        for task in tasks[consumed:]:
            Path(task[2]).unlink(missing_ok=True)

        if not samples:
            raise DataError(f"--src {src_dir}: no readable images; {summary.skipped_text(True)}")
        if categories:  # the class order that image_label indexes, as antgo's meta.json keeps it
            write_meta(staging.path / META_FILE, default_meta(len(samples), categories))
        save_gt(staging.path / ANNOTATION_FILE, samples)
        staging.commit(last=[ANNOTATION_FILE])

    summary.written = len(samples)
    summary.annotation = tgt_dir / ANNOTATION_FILE
    summary.outputs.append(summary.annotation)
    if num and len(samples) < num:
        summary.notes.append(
            f"--num={num} asked for more than the {len(samples)} readable images found: "
            f"wrote all of them."
        )
    return summary
