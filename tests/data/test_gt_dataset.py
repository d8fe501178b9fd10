"""GTDataset and ConcatDataset (unlabelled sources from GT JSON and pseudo-label outputs) and the
label scan semi-supervised training runs on its labelled source."""

from __future__ import annotations

import json

import numpy as np
import pytest

from antgo_mlflow.data.concat import ConcatDataset
from antgo_mlflow.data.gt_dataset import GTDataset
from antgo_mlflow.data.label_scan import has_labels
from antgo_mlflow.errors import DataError, GTFormatError
from antgo_mlflow.registry import DATASETS
from tests.data.gtfactory import image_bytes, make_dataset


def _without_labels(path):
    samples = json.loads(path.read_text())
    for s in samples:
        s.pop("image_label")
    path.write_text(json.dumps(samples))
    return path


def test_samples_carry_the_decoded_image_and_the_label(tmp_path):
    gt = make_dataset(tmp_path / "a", n=4, classes=["x", "y", "z"])
    ds = DATASETS.build(dict(type="GTDataset", ann_file=str(gt)))
    assert isinstance(ds, GTDataset) and len(ds) == 4
    sample = ds[1]
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (8, 10, 3)
    assert sample["label"] == 1 and sample["image_file"] == "img/1.png"
    assert ds.class_names == ["x", "y", "z"]
    assert has_labels(ds)


def test_a_gt_json_without_labels_reads_as_label_minus_one(tmp_path):
    gt = _without_labels(make_dataset(tmp_path / "a", n=3))
    ds = GTDataset(ann_file=str(tmp_path / "a"))  # the folder's annotation.json
    assert [ds[i]["label"] for i in range(3)] == [-1, -1, -1]
    assert not has_labels(ds)
    assert gt.is_file()


def test_pseudo_label_outputs_labels_are_not_ground_truth(tmp_path):
    gt = make_dataset(tmp_path / "a", n=3)
    samples = json.loads(gt.read_text())
    samples[0]["predictions"] = {"label": 2, "confident": True, "models": ["runs:/x"]}
    samples[0]["image_label"] = 2  # what pseudo-label writes for a confident sample
    samples[1]["predictions"] = {"label": 0, "confident": False, "models": ["runs:/x"]}
    gt.write_text(json.dumps(samples))
    assert GTDataset(ann_file=str(gt)).labels == [-1, 1, 2]
    assert GTDataset(ann_file=str(gt), pseudo_labels=True).labels == [2, 1, 2]


def test_weak_and_strong_views_and_fields(tmp_path):
    gt = make_dataset(tmp_path / "a", n=2)
    ds = GTDataset(
        ann_file=[str(gt)],
        weak_pipeline=[dict(type="INumpyToPIL", keys=["image"])],
        strong_pipeline=[dict(type="RandAugment", num_ops=1, keys=["image"])],
        pipeline=[dict(type="ToTensor", keys=["image"])],
        inputs_def={"fields": ["image", "label"]},
    )
    weak, strong = ds[0]
    assert set(weak) == {"image", "label"} and weak["image"].shape == (3, 8, 10)
    assert strong["image"].shape == (3, 8, 10)


def test_a_missing_image_names_the_file(tmp_path):
    gt = make_dataset(tmp_path / "a", n=2, missing=(1,))
    ds = GTDataset(ann_file=str(gt))
    with pytest.raises(DataError, match="missing-1.png"):
        ds[1]


def test_concat_reads_parts_in_order_and_finds_labels_in_any(tmp_path):
    unlabelled = _without_labels(make_dataset(tmp_path / "u", n=2))
    labelled = make_dataset(tmp_path / "l", n=3)
    ds = DATASETS.build(
        dict(
            type="ConcatDataset",
            datasets=[
                dict(type="GTDataset", ann_file=str(unlabelled)),
                dict(type="GTDataset", ann_file=str(labelled)),
            ],
        )
    )
    assert isinstance(ds, ConcatDataset) and len(ds) == 5
    assert [ds[i]["label"] for i in range(5)] == [-1, -1, 0, 1, 2]
    assert has_labels(ds)
    assert not has_labels(ConcatDataset([GTDataset(ann_file=str(unlabelled))]))


def test_shards_without_labels_are_found_without_decoding_images(tmp_path):
    from antgo_mlflow.data.datasets import TFDataset
    from antgo_mlflow.data.pack import pack

    gt = _without_labels(make_dataset(tmp_path / "u", n=3))
    pack(str(gt), str(tmp_path / "shards"), "u", num=10)
    labelled = make_dataset(tmp_path / "l", n=3)
    pack(str(labelled), str(tmp_path / "shards"), "l", num=10)
    assert not has_labels(TFDataset(data_path_list=[str(tmp_path / "shards" / "u")]))
    assert has_labels(TFDataset(data_path_list=[str(tmp_path / "shards" / "l")]))


# detection fields, read in place as the shard readers give them


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
