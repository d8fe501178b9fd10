"""``GTDataset`` (DATASETS): a standard GT JSON file and its image files, read without packing.

Each sample is the GT entry (validated on load: errors name the file, the sample index and the
field) with ``image`` = the image file's encoded bytes, or an HWC uint8 RGB array with
``description={'image': 'numpy'}``, and ``label`` = ``image_label``. Per-instance fields become
arrays as the shard readers return them (``bboxes`` float32 (N, 4), ``labels`` int64 (N,),
``box_visibility`` float32 (N,)), so one pipeline serves a GT folder and its shards alike. Then
``pipeline`` runs and ``inputs_def`` keeps the listed fields, exactly as in ``TFDataset``.

Example:
    >>> ds = GTDataset(gt="coco_gt/annotation.json", description={"image": "numpy"},
    ...                pipeline=[dict(type="ResizeS", target_dim=128), dict(type="ToTensor")])
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from antgo_mlflow.data.datasets import _SampleMixin
from antgo_mlflow.data.decode import decode_image
from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.registry import DATASETS

_ARRAYS = {"bboxes": np.float32, "labels": np.int64, "box_visibility": np.float32}


@DATASETS.register_module()
class GTDataset(_SampleMixin, Dataset):
    """Map-style dataset over a standard GT JSON file (or a folder with ``annotation.json``).

    Args:
        gt: the GT JSON file or its folder; ``image_file`` paths are relative to its folder.
        pipeline, inputs_def, description, weak_pipeline, strong_pipeline, auto_ext_info: as
            ``TFDataset`` (``description['image'] == 'numpy'`` decodes the image).
        tags: keep only samples whose ``tag`` is one of these (e.g. ``['train']``).
    """

    def __init__(
        self,
        gt,
        pipeline=None,
        inputs_def=None,
        description=None,
        tags=None,
        weak_pipeline=None,
        strong_pipeline=None,
        auto_ext_info=None,
    ):
        from antgo_mlflow.gt import load_gt, read_meta
        from antgo_mlflow.gt.io import ANNOTATION_FILE

        if not gt:
            raise ConfigError("gt: give the GT JSON file (or its folder)")
        path = Path(str(gt)).expanduser()
        self.path = path / ANNOTATION_FILE if path.is_dir() else path
        samples = load_gt(self.path)
        if tags:
            wanted = {tags} if isinstance(tags, str) else set(tags)
            samples = [s for s in samples if s.get("tag") in wanted]
        self.samples = samples
        self.root = self.path.parent
        meta = read_meta(self.root)
        self._class_names = list((meta or {}).get("meta", {}).get("category") or [])
        self._setup_sample(
            pipeline, inputs_def, description, weak_pipeline, strong_pipeline, auto_ext_info
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        index = int(index)
        entry = self.samples[index]
        where = f"{self.path}: sample {index}"
        sample = {k: v for k, v in entry.items() if not self._keys or k in self._keys}
        for key, dtype in _ARRAYS.items():
            if key in sample:
                arr = np.asarray(sample[key], dtype=dtype)
                sample[key] = arr.reshape(-1, 4) if key == "bboxes" else arr.reshape(-1)
        if not self._keys or "image" in self._keys:
            file = self.root / str(entry.get("image_file", ""))
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise DataError(
                    f"{where}, field 'image_file': cannot read {file}: {exc.strerror}"
                ) from None
            if self._decode_numpy:
                try:
                    data = decode_image(data)
                except DataError as exc:
                    raise DataError(f"{where}, field 'image_file': {exc}") from None
            sample["image"] = data
        if "label" not in sample and "image_label" in entry:
            sample["label"] = entry["image_label"]
        return self._finish_sample(sample, index)

    @property
    def class_names(self) -> list[str]:
        """Class names from the ``meta.json`` beside the GT file (empty without one)."""
        return list(self._class_names)

    @property
    def digest(self) -> str:
        """A content digest of the GT file (its bytes)."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


__all__ = ["GTDataset"]
