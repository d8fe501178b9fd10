"""GT <-> FiftyOne converters on a real FiftyOne database (isolated per session)."""

from __future__ import annotations

import pytest

from antgo_mlflow.gt import load_gt, read_meta


@pytest.fixture(scope="module")
def fio():
    from antgo_mlflow.review import fiftyone_io

    return fiftyone_io


def _roundtrip(fio, gt_dir, name):
    samples = load_gt(gt_dir / "annotation.json")
    meta = read_meta(gt_dir)
    ds = fio.load_dataset(name, samples, gt_dir, meta, persistent=False)
    back, classes = fio.dataset_to_gt(ds)
    return samples, back, classes, ds


def test_roundtrip_is_lossless_field_by_field(fio, gt_dir):
    samples, back, classes, ds = _roundtrip(fio, gt_dir, "rt-lossless")
    assert classes == ["car", "train", "bus"]
    assert len(back) == len(samples)
    for orig, got in zip(samples, back):
        assert list(got) == list(orig)  # same keys, same order
        for field in orig:
            assert got[field] == orig[field], field
    ds.delete()


def test_labels_map_to_fiftyone_types_with_relative_coords(fio, gt_dir):
    samples, _, _, ds = _roundtrip(fio, gt_dir, "rt-types")
    a = ds.match({"image_file": "images/a.png"}).first()
    assert a.metadata.width == 64 and a.metadata.height == 48
    assert a.classification.label == "train"
    dets = a.detections.detections
    assert [d.label for d in dets] == ["car", "bus"]
    assert dets[0].bounding_box == pytest.approx([1 / 64, 2 / 48, 29.5 / 64, 38 / 48])
    assert a.keypoints.keypoints[0].points[1] == pytest.approx([5.5 / 64, 6.5 / 48])
    assert a.segments.polylines[0].closed and a.segments.polylines[0].filled
    assert a.predictions.detections[0].confidence == 0.875
    assert a.prediction_class.label == "bus" and a.prediction_class.confidence == 0.5
    assert a.tags == ["valid"] and a.tag == "batch1"
    c = ds.match({"image_file": "images/c.jpg"}).first()
    assert (c.metadata.width, c.metadata.height) == (40, 20)  # read from the image header
    ds.delete()


def test_reload_updates_without_duplicates_and_keeps_review_tags(fio, gt_dir):
    samples = load_gt(gt_dir / "annotation.json")
    meta = read_meta(gt_dir)
    ds = fio.load_dataset("rt-reload", samples, gt_dir, meta, persistent=False)
    first = ds.match({"image_file": "images/b.png"}).first()
    first.tags.append("invalid")
    first.save()
    samples[0]["bboxes"] = [[0, 0, 8, 8]]
    samples[0]["labels"] = [1]
    samples[0]["box_visibility"] = [1]
    del samples[2]
    ds = fio.load_dataset("rt-reload", samples, gt_dir, meta, persistent=False)
    assert len(ds) == 2
    back, _ = fio.dataset_to_gt(ds)
    assert back[0]["bboxes"] == [[0, 0, 8, 8]] and back[0]["labels"] == [1]
    assert ds.match({"image_file": "images/b.png"}).first().tags == ["invalid"]
    ds.delete()


def test_app_edits_come_back_as_gt(fio, gt_dir):
    samples, _, _, ds = _roundtrip(fio, gt_dir, "rt-edit")
    a = ds.match({"image_file": "images/a.png"}).first()
    a.detections.detections[0].label = "bus"
    a.classification.label = "truck"  # a new class: appended to the class list
    a.save()
    back, classes = fio.dataset_to_gt(ds)
    assert back[0]["labels"] == [2, 2]
    assert back[0]["image_label"] == 3 and back[0]["image_label_name"] == "truck"
    assert classes == ["car", "train", "bus", "truck"]
    ds.delete()


def test_active_learning_scores_are_sortable_fields_and_predictions_a_label(fio, tmp_path):
    from PIL import Image

    from antgo_mlflow.gt import new_sample

    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    scores = [0.25, 0.9, 0.5]
    samples = [
        new_sample(
            image_file=f"{i}.png",
            al_score=s,
            al_rank=r,
            predictions={"image_label": i, "image_score": 0.6, "probabilities": [0.6, 0.4]},
        )
        for i, (s, r) in enumerate(zip(scores, [3, 1, 2]))
    ]
    ds = fio.load_dataset("al-view", samples, tmp_path, None, persistent=False)
    assert ds.sort_by("al_score", reverse=True).values("image_file") == ["1.png", "2.png", "0.png"]
    assert ds.sort_by("al_rank").values("al_score") == [0.9, 0.5, 0.25]
    assert ds.match({"image_file": "2.png"}).first().prediction_class.confidence == 0.6
    back, _ = fio.dataset_to_gt(ds)
    assert [b["al_score"] for b in back] == scores and back[0]["predictions"] == samples[0][
        "predictions"
    ]
    ds.delete()
