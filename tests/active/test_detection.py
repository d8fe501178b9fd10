"""Detection scoring on hand-made contract predictions (bboxes xyxy, scores, labels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from antgo_mlflow.active import detection as det
from antgo_mlflow.errors import DataError


def _pred(boxes, scores, labels):
    return {"bboxes": boxes, "scores": scores, "labels": labels}


SURE = _pred([[0, 0, 10, 10]], [0.99], [0])
UNSURE = _pred([[0, 0, 10, 10], [20, 20, 30, 30]], [0.5, 0.6], [0, 1])
EMPTY = _pred([], [], [])
JUNK_ONLY = _pred([[0, 0, 5, 5]], [0.01], [0])  # below min_score: as if empty


def test_entropy_and_confidence_rank_the_unsure_image_first():
    images = [SURE, UNSURE, EMPTY]
    for method in ("mean_entropy", "max_entropy"):
        scores = det.detection_uncertainty([images], method)
        assert scores.argmax() == 1 and scores[2] == 0.0
    h = det.binary_entropy(np.array([0.5, 0.6]))
    assert det.image_uncertainty(UNSURE, "mean_entropy") == pytest.approx(h.mean())
    assert det.image_uncertainty(UNSURE, "max_entropy") == pytest.approx(np.log(2))
    lc = det.detection_uncertainty([images], "least_confidence")
    assert lc.tolist() == pytest.approx([0.01, 0.4, 1.0])
    assert det.image_uncertainty(JUNK_ONLY, "least_confidence") == 1.0


def test_torch_tensors_from_val_step_are_accepted():
    pred = {
        "bboxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([2], dtype=torch.int64),
    }
    assert det.image_uncertainty(pred, "max_entropy") == pytest.approx(np.log(2))


def test_ensemble_box_disagreement():
    moved = _pred([[50, 50, 60, 60]], [0.99], [0])
    relabelled = _pred([[0, 0, 10, 10]], [0.99], [1])
    half = _pred([[0, 0, 10, 5]], [0.99], [0])  # IoU 0.5 with SURE
    per_model = [[SURE, SURE, SURE, SURE, EMPTY], [SURE, moved, relabelled, half, EMPTY]]
    d = det.detection_uncertainty(per_model, "disagreement", iou_threshold=0.5)
    assert d.tolist() == pytest.approx([0.0, 1.0, 1.0, 0.5, 0.0])
    with pytest.raises(DataError, match="two or more models"):
        det.detection_uncertainty(per_model[:1], "disagreement")


def test_iou_matrix_by_hand():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    assert det.iou_matrix(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0])


def test_cleanlab_box_quality_flags_swapped_missing_and_shifted_boxes():
    boxes = [[10, 10, 40, 40], [50, 50, 90, 90]]
    samples, preds = [], []
    for i in range(10):
        preds.append(_pred(boxes, [0.99, 0.98], [0, 1]))
        sample = {"bboxes": boxes, "labels": [0, 1]}
        if i == 3:
            sample = {"bboxes": boxes, "labels": [1, 1]}  # box 0 given the wrong class
        if i == 5:
            sample = {"bboxes": boxes[:1], "labels": [0]}  # box 1 overlooked
        if i == 7:
            sample = {"bboxes": [[12, 30, 40, 60], boxes[1]], "labels": [0, 1]}  # badly placed
        samples.append(sample)
    quality = det.box_label_quality(samples, preds, num_classes=2)
    assert set(np.argsort(quality)[:3].tolist()) == {3, 5, 7}
    assert np.delete(quality, [3, 5, 7]).min() > 0.99


def test_cleanlab_prediction_format():
    per_class = det.to_cleanlab_prediction(UNSURE, num_classes=3)
    assert len(per_class) == 3
    assert per_class[0].tolist() == [[0, 0, 10, 10, 0.5]]
    assert per_class[1].shape == (1, 5) and per_class[2].shape == (0, 5)


@pytest.mark.parametrize(
    "pred, fragment",
    [
        (_pred([[0, 0, 1]], [0.5], [0]), "bboxes must be"),
        (_pred([[0, 0, 1, 1]], [], [0]), "1 boxes, 0 scores"),
        (_pred([[0, 0, 1, 1]], [float("nan")], [0]), "NaN"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_malformed_predictions_are_refused(pred, fragment):
    with pytest.raises(DataError, match=fragment):
        det.image_uncertainty(pred, "mean_entropy")
