"""This experiment's datasets: an example that reads a standard GT JSON directly (no shards).

The config uses ``TFDataset`` over TFRecord shards (``antgo tool package/tfrecord``). For a quick
try on a folder of images, ``antgo tool extract/images --src=... --tgt=...`` then use
``dict(type="GTJsonDataset", gt_file=".../annotation.json", pipeline=[...])`` instead.
"""

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from antgo_mlflow.data.transforms import build_pipeline
from antgo_mlflow.gt import load_gt, read_meta, resolve_image_path
from antgo_mlflow.registry import DATASETS

DATASETS.import_locations()  # the library's datasets first; a same name below replaces it


@DATASETS.register_module(force=True)
class GTJsonDataset(Dataset):
    """Samples of a standard GT JSON: ``image`` (HWC uint8 RGB), ``label``, ``image_file``, ``tag``.

    Args:
        gt_file: the GT JSON (or its folder, with ``annotation.json``).
        pipeline: transform configs, as in ``TFDataset``.
        inputs_def: ``{'fields': [...]}``: the fields each sample keeps.
    """

    def __init__(self, gt_file, pipeline=(), inputs_def=None, **kwargs):
        self.gt_file = gt_file
        self.samples = load_gt(gt_file)
        meta = read_meta(resolve_image_path(gt_file, {"image_file": "."})) or {}
        self.class_names = (meta.get("meta") or {}).get("category") or None
        self.pipeline = build_pipeline(list(pipeline))
        self.fields = list((inputs_def or {}).get("fields") or [])

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        info = self.samples[index]
        with Image.open(resolve_image_path(self.gt_file, info)) as im:
            image = np.array(im.convert("RGB"))  # a writable copy (ToTensor shares memory)
        sample = {
            "image": image,
            "label": int(info.get("image_label", -1)),
            "image_file": info.get("image_file", ""),
            "tag": info.get("tag", ""),
        }
        sample = self.pipeline(sample)
        return {k: sample[k] for k in self.fields if k in sample} if self.fields else sample
