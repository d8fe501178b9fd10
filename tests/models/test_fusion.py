"""Weighted box fusion against fusions computed by hand."""

from __future__ import annotations

import pytest
import torch

from antgo_mlflow.models.detectors.fusion import weighted_box_fusion


def _pred(boxes, scores, labels):
    return {
        "bboxes": torch.tensor(boxes, dtype=torch.float32),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels),
    }


def test_two_models_boxes_fuse_as_computed_by_hand():
    a = _pred([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [0, 1])
    b = _pred([[1, 1, 11, 11], [50, 50, 60, 60]], [0.6, 0.5], [0, 0])
    boxes, scores, labels = weighted_box_fusion([a, b], weights=[2, 1], iou_thr=0.55)
    # A's first box (weight 2 x 0.9 = 1.8) and B's first (1 x 0.6) overlap by IoU 81/119 = 0.68:
    # fused = (1.8 * [0, 0, 10, 10] + 0.6 * [1, 1, 11, 11]) / 2.4, score = 2.4 / (2 + 1)
    torch.testing.assert_close(boxes[0], torch.tensor([0.25, 0.25, 10.25, 10.25]))
    # the two boxes at (50, 50) are of different classes: never fused
    torch.testing.assert_close(scores, torch.tensor([0.8, 1.6 / 3, 0.5 / 3]))
    assert labels.tolist() == [0, 1, 0]
    torch.testing.assert_close(boxes[1:], torch.tensor([[50.0, 50, 60, 60], [50, 50, 60, 60]]))


def test_a_box_joins_the_best_cluster_it_overlaps_and_low_scores_are_skipped():
    a = _pred([[0, 0, 10, 10], [6, 0, 16, 10]], [0.9, 0.7], [0, 0])  # IoU 4/16: two clusters
    b = _pred([[3, 0, 13, 10], [100, 100, 110, 110]], [0.8, 0.05], [0, 0])  # overlaps both
    boxes, scores, labels = weighted_box_fusion([a, b], iou_thr=0.4, skip_score=0.1)
    # b's box overlaps a's first (IoU 7/13 = 0.54) and second (0.54): it joins the better one
    torch.testing.assert_close(
        boxes[0], torch.tensor([(0.9 * 0 + 0.8 * 3) / 1.7, 0, (0.9 * 10 + 0.8 * 13) / 1.7, 10])
    )
    torch.testing.assert_close(scores, torch.tensor([1.7 / 2, 0.7 / 2]))
    assert len(boxes) == 2  # the 0.05 box was skipped


def test_one_model_and_empty_inputs():
    only = _pred([[0, 0, 10, 10]], [0.9], [2])
    boxes, scores, labels = weighted_box_fusion([only])
    torch.testing.assert_close(boxes, only["bboxes"])
    assert scores.tolist() == pytest.approx([0.9]) and labels.tolist() == [2]
    empty = _pred([], [], [])
    empty["bboxes"] = torch.zeros((0, 4))
    boxes, scores, labels = weighted_box_fusion([empty, empty])
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    # a box seen by one model of two keeps half its score
    assert weighted_box_fusion([only, empty])[1].tolist() == pytest.approx([0.45])
    with pytest.raises(ValueError, match="2 weights for 1 models"):
        weighted_box_fusion([only], weights=[1, 1])


def test_image_certainty_and_the_confident_uncertain_split():
    from antgo_mlflow.models.detectors.fusion import fuse_for_pseudo_labels, image_certainty

    assert image_certainty([], 0.7) == 1.0
    assert image_certainty([0.9, 0.1], 0.7) == pytest.approx(0.9)
    assert image_certainty([0.9, 0.5], 0.7) == pytest.approx(0.5)
    a = _pred([[0, 0, 10, 10], [40, 40, 60, 60]], [0.95, 0.5], [0, 1])
    b = _pred([[0, 0, 10, 10]], [0.85], [0])
    out = fuse_for_pseudo_labels([a, b], ["a", "b"], threshold=0.7)
    # the shared box: (0.95 + 0.85) / 2 = 0.9 -> a label; a's lone box: 0.5 / 2 = 0.25 -> not a
    # label, and certain enough (0.25 <= 1 - 0.7) for the image to be confident
    assert out["bboxes"] == [[0.0, 0.0, 10.0, 10.0]] and out["labels"] == [0]
    assert out["predictions"]["scores"] == [0.9, 0.25]
    assert out["confident"] and out["predictions"]["image_score"] == pytest.approx(0.75)
    assert out["predictions"]["models"]["b"] == {
        "bboxes": [[0.0, 0.0, 10.0, 10.0]],
        "labels": [0],
        "scores": [0.85],
    }
    unsure = fuse_for_pseudo_labels([a], ["a"], threshold=0.7)  # 0.5 alone: ambiguous
    assert not unsure["confident"] and unsure["labels"] == [0]


def test_boxes_without_area_are_left_out():
    """A zero-width box (clipped to an image edge) would not even overlap its own copy."""
    flat = {"bboxes": [[0, 0, 0, 10], [5, 5, 15, 15]], "scores": [0.9, 0.6], "labels": [0, 0]}
    boxes, scores, labels = weighted_box_fusion([flat, flat], [3, 1])
    assert boxes.tolist() == [pytest.approx([5, 5, 15, 15])]
    assert labels.tolist() == [0]
    assert scores.tolist() == pytest.approx([0.6])
