"""``GTDataset`` (DATASETS): a map-style dataset over standard GT JSON files, images read from disk.

Each entry of ``ann_file`` is a GT JSON (or a folder holding ``annotation.json``); a sample is
the GT record plus ``image`` (HWC uint8 RGB, decoded from ``image_file`` relative to the JSON)
and ``label`` = ``image_label`` (-1 when the sample has none), then ``pipeline`` /
``weak_pipeline`` + ``strong_pipeline`` and ``inputs_def`` as in ``TFDataset``.

Per-instance fields become arrays as the shard readers return them (``bboxes`` float32 (N, 4),
``labels`` int64 (N,), ``box_visibility`` float32 (N,)), so one detection pipeline serves a GT
folder and its shards alike; ``tags`` keeps only samples whose ``tag`` is listed.

Unlabelled data comes in this form too: a GT JSON without ``image_label``, or a ``pseudo-label``
output (``uncertain.json``, or the whole ``pseudo-label.json``). A label the pseudo-labeller set
(``predictions.confident``) is not ground truth: it reads as -1 unless ``pseudo_labels=True``.

Example:
    >>> ds = GTDataset(ann_file="out/pseudo-label/uncertain.json", pipeline=[...])
    >>> ds[0]["label"]   # -1: no ground truth
    >>> boxes = GTDataset(gt="coco_gt/annotation.json", tags=["train"], pipeline=[...])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from antgo_mlflow.data.datasets import _SampleMixin
from antgo_mlflow.data.decode import decode_image
from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.registry import DATASETS

_ARRAYS = {"bboxes": np.float32, "labels": np.int64, "box_visibility": np.float32}


def _files(*values) -> list[str]:
    out: list[str] = []
    for value in values:
        if value is None:
            continue
        out += [value] if isinstance(value, (str, Path)) else list(value)
    if not out:
        raise ConfigError("ann_file: give one GT JSON (or its folder) or a list of them")
    return [str(v) for v in out]


def sample_label(sample: dict, pseudo_labels: bool = False) -> int:
    """The class index of a GT sample, -1 when it has none (or only a pseudo-label)."""
    predictions = sample.get("predictions")
    if (
        not pseudo_labels
        and isinstance(predictions, dict)
        and predictions.get("confident") is True
        and "models" in predictions
    ):
        return -1  # pseudo-label's own label: not ground truth
    label = sample.get("image_label", -1)
    return int(label) if isinstance(label, int) and not isinstance(label, bool) else -1


@DATASETS.register_module()
class GTDataset(_SampleMixin, Dataset):
    """Standard GT JSON files as a dataset (see the module docstring).

    Args:
        ann_file / data_path_list / gt: one GT JSON (or folder) or a list of them (the other
            names let a shard config's key, or antgo's ``gt=``, be reused).
        pipeline, inputs_def, weak_pipeline, strong_pipeline, auto_ext_info: as ``TFDataset``.
        pseudo_labels: take labels set by the pseudo-labeller as labels (default: -1).
        description: accepted for shard configs and ignored (every GT field is read).
        tags: keep only samples whose ``tag`` is one of these (e.g. ``['train']``).
    """

    def __init__(
        self,
        ann_file: str | Sequence[str] | None = None,
        data_path_list: str | Sequence[str] | None = None,
        pipeline=None,
        inputs_def=None,
        weak_pipeline=None,
        strong_pipeline=None,
        auto_ext_info=None,
        pseudo_labels: bool = False,
        description: dict | None = None,
        gt: str | Sequence[str] | None = None,
        tags: str | Sequence[str] | None = None,
    ):
        from antgo_mlflow.gt import load_gt, resolve_image_path

        self.files = []
        self.samples: list[dict[str, Any]] = []
        self._images: list[Path] = []
        self._where: list[tuple[int, int]] = []  # (GT file, its sample index): errors name them
        wanted = None if not tags else ({tags} if isinstance(tags, str) else set(tags))
        for entry in _files(ann_file, data_path_list, gt):
            path = Path(entry).expanduser()
            gt_file = path / "annotation.json" if path.is_dir() else path
            samples = load_gt(gt_file, validate=True)  # GTFormatError names the file and sample
            if wanted is not None:
                samples = [s for s in samples if s.get("tag") in wanted]
            for local, sample in enumerate(samples):
                self._where.append((len(self.files), local))
                if not sample.get("image_file"):
                    raise DataError(f"{gt_file}: a sample has no image_file (images must be local)")
                self._images.append(resolve_image_path(gt_file, sample))
            self.files.append(gt_file)
            self.samples += samples
        self.pseudo_labels = bool(pseudo_labels)
        self.labels = [sample_label(s, self.pseudo_labels) for s in self.samples]
        self._setup_sample(
            pipeline, inputs_def, None, weak_pipeline, strong_pipeline, auto_ext_info
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        index = int(index)
        path = self._images[index]
        file, local = self._where[index]
        where = f"{self.files[file]}: sample {local}, field 'image_file'"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{where}: cannot read {path}: {exc.strerror}") from None
        try:
            image = decode_image(data)
        except DataError as exc:
            raise DataError(f"{where}: {path}: {exc}") from None
        sample = dict(self.samples[index])
        for key, dtype in _ARRAYS.items():
            if key in sample:
                arr = np.asarray(sample[key], dtype=dtype)
                sample[key] = arr.reshape(-1, 4) if key == "bboxes" else arr.reshape(-1)
        sample["image"] = image
        sample["label"] = self.labels[index]
        return self._finish_sample(sample, index)

    @property
    def class_names(self) -> list[str]:
        """Class names from a ``meta.json`` next to the first GT file (else ``[]``)."""
        from antgo_mlflow.gt import read_meta

        meta = self.files[0].parent / "meta.json"
        if not meta.is_file():
            return []
        try:
            names = (read_meta(meta).get("meta") or {}).get("category") or []
        except DataError:
            return []
        return [str(n) for n in names]

    @property
    def digest(self) -> str:
        """sha256 (16 hex digits) of the GT files."""
        import hashlib

        h = hashlib.sha256()
        for f in self.files:
            h.update(f.read_bytes())
        return h.hexdigest()[:16]
