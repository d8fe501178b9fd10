"""Whether a dataset carries class labels, found without decoding its images.

Semi-supervised training refuses a labelled source with no labels before the first step. Shard
datasets are scanned record by record (only ``image_label`` is parsed) and stop at the first
label; datasets that know their labels (``GTDataset.labels``) answer directly; anything else is
asked for its first sample.

Example:
    >>> has_labels(TFDataset(data_path_list=["shards/unlabeled"]))   # False: every label is -1
"""

from __future__ import annotations

from typing import Any

from antgo_mlflow.errors import AntgoError


def _label_value(value: Any) -> int | None:
    try:
        import numpy as np

        arr = np.asarray(value).reshape(-1)
    except (TypeError, ValueError):
        return None
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        return None
    return int(arr[0])


def _shard_labels(dataset) -> bool:
    from antgo_mlflow.data.records import decode_features, parse_example

    keys = ("image_label", "label")
    for index in range(len(dataset)):
        sample = decode_features(parse_example(dataset.read_record(index), keys))
        for key in keys:
            label = _label_value(sample.get(key))
            if label is not None and label >= 0:
                return True
    return False


def has_labels(dataset) -> bool:
    """True when at least one sample of ``dataset`` has a class label (>= 0)."""
    parts = getattr(dataset, "datasets", None)
    if isinstance(parts, (list, tuple)):  # ConcatDataset
        return any(has_labels(d) for d in parts)
    labels = getattr(dataset, "labels", None)
    if labels is not None and not callable(labels):
        return any(int(v) >= 0 for v in labels)
    if callable(getattr(dataset, "read_record", None)):
        try:
            return _shard_labels(dataset)
        except AntgoError:
            pass  # records this parser does not know: ask a decoded sample instead
    try:
        sample = dataset[0]
    except (IndexError, TypeError, KeyError):
        return False
    if isinstance(sample, (list, tuple)) and sample:
        sample = sample[0]
    label = _label_value(sample.get("label")) if isinstance(sample, dict) else None
    return label is not None and label >= 0
