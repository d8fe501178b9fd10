"""GTDataset: a standard GT JSON read in place, with boxes as the shard readers give them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from antgo_mlflow.errors import DataError, GTFormatError
from antgo_mlflow.registry import DATASETS
from tests.data.gtfactory import image_bytes


def _write(folder, samples, classes=("cat", "dog")):
    from antgo_mlflow.gt import default_meta, write_meta

    (folder / "img").mkdir(parents=True, exist_ok=True)
    for s in samples:
        (folder / s["image_file"]).write_bytes(image_bytes(len(s["image_file"]), size=16))
    (folder / "annotation.json").write_text(json.dumps(samples))
    write_meta(folder / "meta.json", default_meta(len(samples), list(classes)))
    return folder / "annotation.json"


DESCRIPTION = {"image": "numpy", "bboxes": "numpy", "labels": "numpy", "box_visibility": "numpy"}


def test_gt_dataset_gives_boxes_labels_and_negatives(tmp_path):
    gt = _write(
        tmp_path,
        [
            {
                "image_file": "img/a.png",
                "bboxes": [[1, 2, 9, 10]],
                "labels": [1],
                "box_visibility": [0],
                "tag": "train",
            },
            {"image_file": "img/b.png", "bboxes": [], "labels": [], "tag": "train"},
            {"image_file": "img/c.png", "image_label": 1, "tag": "val"},
        ],
    )
    ds = DATASETS.build(
        dict(type="GTDataset", gt=str(tmp_path), description=DESCRIPTION, tags=["train"])
    )
    assert len(ds) == 2 and ds.class_names == ["cat", "dog"]
    first, negative = ds[0], ds[1]
    assert first["image"].shape == (16, 18, 3) and first["image"].dtype == np.uint8
    assert first["bboxes"].dtype == np.float32 and first["bboxes"].tolist() == [[1, 2, 9, 10]]
    assert first["labels"].dtype == np.int64 and first["box_visibility"].tolist() == [0.0]
    assert negative["bboxes"].shape == (0, 4) and negative["labels"].shape == (0,)
    # a pipeline moves the boxes with the image, as for shards
    resized = DATASETS.build(
        dict(
            type="GTDataset",
            gt=str(gt),
            description=DESCRIPTION,
            pipeline=[dict(type="ResizeS", target_dim=(36, 32))],
        )
    )[0]
    assert resized["bboxes"].tolist() == [[2, 4, 18, 20]]
    assert resized["image_meta"]["affine"] == [2.0, 2.0, 0.0, 0.0]


def test_gt_dataset_errors_name_the_sample_and_field(tmp_path):
    _write(tmp_path, [{"image_file": "img/a.png", "bboxes": [[1, 2, 9, 10]], "labels": [0]}])
    (tmp_path / "img" / "a.png").unlink()
    ds = DATASETS.build(dict(type="GTDataset", gt=str(tmp_path)))
    with pytest.raises(
        DataError, match=r"annotation\.json: sample 0, field 'image_file': cannot read"
    ):
        ds[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "annotation.json").write_text(
        '[{"image_file": "x.png", "bboxes": [[1, NaN, 3, 4]], "labels": [0]}]'
    )
    with pytest.raises(GTFormatError, match=r"sample 0, field 'bboxes': box 0 must be 4 numbers"):
        DATASETS.build(dict(type="GTDataset", gt=str(bad)))
