"""Read the pool (unlabelled) and labelled sets of an active-learning step, and check them first.

Every check runs before any model does, so bad input costs nothing and writes nothing: an empty
set, missing image files, samples without labels where labels are needed, and detection GTs (boxes)
given to classifiers.
"""

from __future__ import annotations

import os

from antgo_mlflow.errors import DataError

_SHOWN = 3  # missing images named in the error


def read_set(path: str | os.PathLike, flag: str):
    """The loader's InputSet for a GT JSON (or folder) or TFRecord shards; DataError if empty."""
    from antgo_mlflow.inference.inputs import read_input

    try:
        data = read_input(path)
    except DataError as exc:
        text = str(exc)
        raise type(exc)(text.replace("--input", flag, 1)) from None
    if not data.samples:
        raise DataError(f"{flag}: {path} has no samples (an empty pool)")
    check_images(data, flag)
    return data


def check_images(data, flag: str) -> None:
    """DataError naming the first missing images of a GT input (shard input carries its images)."""
    if data.base is None:
        return
    missing = []
    for i, sample in enumerate(data.samples):
        name = sample.get("image_file") or ""
        if not name or not (data.base / name).is_file():
            missing.append((i, name or sample.get("image_url") or ""))
    if missing:
        shown = ", ".join(f"sample {i} ({name!r})" for i, name in missing[:_SHOWN])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise DataError(
            f"{flag}: {data.source}: {len(missing)} of {len(data.samples)} images are missing "
            f"under {data.base}: {shown}{more} (URL-only samples are not downloaded)"
        )


def is_detection(samples) -> bool:
    """A detection GT: some sample has boxes."""
    return any(s.get("bboxes") for s in samples)


def check_classification(data, flag: str) -> None:
    """DataError for a detection GT: ranking it needs a detection model, not a classifier."""
    if is_detection(data.samples):
        n = sum(1 for s in data.samples if s.get("bboxes"))
        raise DataError(
            f"{flag}: {data.source} is a detection GT ({n} samples with bboxes): it needs a "
            "detection model; the classification strategies cannot score boxes"
        )


def labels_of(data, flag: str, num_classes: int | None = None):
    """(L,) int64 ``image_label`` of every sample; DataError naming the first unlabelled one."""
    import numpy as np

    labels = np.array([int(s.get("image_label", -1)) for s in data.samples], dtype=np.int64)
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        raise DataError(
            f"{flag}: {data.source}: {len(bad)} samples have no image_label (first: sample "
            f"{int(bad[0])}); this set must be labelled"
        )
    if num_classes is not None and labels.max() >= num_classes:
        i = int(np.argmax(labels >= num_classes))
        raise DataError(
            f"{flag}: {data.source}: sample {i} has image_label {int(labels[i])}, but the models "
            f"know {num_classes} classes"
        )
    return labels
