"""Detector output in FiftyOne: predictions as a Detections field beside the ground truth, so
``evaluate_detections`` (crowd boxes ignored) and label filters work."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture()
def pseudo_gt(tmp_path):
    """A pseudo-label output: GT boxes plus the fused predictions (with the models' own)."""
    (tmp_path / "img").mkdir()
    samples = []
    for i in range(3):
        Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(tmp_path / "img" / f"{i}.png")
        samples.append(
            {
                "image_file": f"img/{i}.png",
                "width": 100,
                "height": 50,
                "bboxes": [[10, 10, 30, 30], [60, 5, 95, 45]],
                "labels": [0, 1],
                "box_visibility": [1, 0 if i == 0 else 1],
                "predictions": {
                    "bboxes": [[10, 10, 30, 30], [60, 5, 95, 45], [40, 30, 50, 40]],
                    "labels": [0, 1, 0],
                    "scores": [0.9, 0.8, 0.3],
                    "image_score": 0.7,
                    "models": {"a": {"bboxes": [[10, 10, 30, 30]], "labels": [0], "scores": [0.9]}},
                },
            }
        )
    return samples, tmp_path


def test_predictions_are_detections_beside_the_ground_truth(pseudo_gt):
    import fiftyone as fo
    from fiftyone import ViewField as F

    from antgo_mlflow.review import fiftyone_io

    samples, root = pseudo_gt
    meta = {"meta": {"category": ["car", "bus"]}}
    ds = fiftyone_io.load_dataset("det-review", samples, root, meta, persistent=False)
    schema = ds.get_field_schema()
    for field in ("detections", "predictions"):
        assert schema[field].document_type is fo.Detections
    first = ds.first()
    assert [d.label for d in first.predictions.detections] == ["car", "bus", "car"]
    assert first.predictions.detections[0].confidence == pytest.approx(0.9)
    assert first.detections.detections[1]["iscrowd"] == 1  # box_visibility 0
    results = ds.evaluate_detections(
        "predictions", gt_field="detections", eval_key="ev", compute_mAP=True
    )
    # per image: the two objects found, one false positive (score 0.3)
    assert ds.sum("ev_tp") == 6 and ds.sum("ev_fp") == 3 and ds.sum("ev_fn") == 0
    assert 0.9 < results.mAP() <= 1.0
    confident = ds.filter_labels("predictions", F("confidence") > 0.5)
    assert confident.count("predictions.detections") == 6
    back, _ = fiftyone_io.dataset_to_gt(ds)
    assert back[0]["predictions"]["models"] == samples[0]["predictions"]["models"]
    assert back[0]["box_visibility"] == [1, 0]
    ds.delete()
