"""DetectionEval: COCO numbers on hand-made cases with known AP, crowd boxes ignored, the three
backends agreeing, ground truth mapped back through image_meta, and its artifacts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from antgo_mlflow.engine.detection_metrics import BACKENDS
from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.registry import METRICS

# COCO's AP: 101-point interpolated precision, averaged over the recall points.
KNOWN_AP = (51 * 1.0 + 50 * (2 / 3)) / 101  # precision 1 up to recall 0.5, then 2/3 up to 1.0


def _batch(gt, gt_labels, vis=None, metas=None):
    batch = {
        "bboxes": [torch.tensor(g, dtype=torch.float32).reshape(-1, 4) for g in gt],
        "labels": [torch.tensor(lab, dtype=torch.int64) for lab in gt_labels],
    }
    if vis is not None:
        batch["box_visibility"] = [torch.tensor(v) for v in vis]
    if metas is not None:
        batch["image_meta"] = metas
    return batch


def _pred(boxes, scores, labels):
    return {
        "bboxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


A, B, CROWD, ELSEWHERE = [10, 10, 50, 50], [60, 60, 100, 100], [0, 70, 40, 120], [100, 0, 120, 30]


def _crowd_case():
    """Two objects, one crowd region; detections: on the crowd (0.95), A (0.9), a miss (0.8), B (0.7)."""
    batch = _batch([[A, B, CROWD]], [[0, 0, 0]], vis=[[1, 1, 0]])
    pred = _pred([CROWD, A, ELSEWHERE, B], [0.95, 0.9, 0.8, 0.7], [0, 0, 0, 0])
    return [pred], batch


@pytest.mark.parametrize("backend", BACKENDS)
def test_crowd_boxes_are_ignored_in_map(backend):
    metric = METRICS.build(dict(type="DetectionEval", backend=backend))
    preds, batch = _crowd_case()
    metric.reset()
    metric.process(preds, batch)
    out = metric.compute()
    assert out["mAP50"] == pytest.approx(KNOWN_AP, abs=1e-4)
    assert out["mAP"] == pytest.approx(KNOWN_AP, abs=1e-4)  # exact boxes: every IoU threshold
    assert out["AP_0"] == pytest.approx(KNOWN_AP, abs=1e-4)
    # the same region as a normal box: a third object, found by the top detection
    metric.reset()
    metric.process(preds, dict(batch, box_visibility=[torch.tensor([1, 1, 1])]))
    assert metric.compute()["mAP50"] == pytest.approx((67 + 34 * 0.75) / 101, abs=1e-4)


def test_perfect_detections_score_one_and_misses_lower_it():
    metric = METRICS.build(dict(type="DetectionEval", class_names=["cat", "dog"]))
    batch = _batch([[A, B], [], [B]], [[0, 1], [], [1]])
    perfect = [_pred([A, B], [0.9, 0.8], [0, 1]), _pred([], [], []), _pred([B], [0.7], [1])]
    metric.process(perfect, batch)
    out = metric.compute()
    assert out["mAP"] == pytest.approx(1.0) and out["AP_cat"] == pytest.approx(1.0)
    metric.reset()
    wrong_class = [_pred([A, B], [0.9, 0.8], [1, 1]), _pred([], [], []), _pred([B], [0.7], [1])]
    metric.process(wrong_class, batch)
    out = metric.compute()
    assert out["AP_cat"] == 0.0 and out["mAP"] < 0.6


def test_backends_agree_on_random_detections():
    rng = np.random.default_rng(0)
    preds, gts, labels = [], [], []
    for _ in range(12):
        n = int(rng.integers(0, 4))
        xy = rng.uniform(0, 80, (n, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 40, (n, 2))], axis=1)
        gts.append(gt.tolist())
        labels.append(rng.integers(0, 3, n).tolist())
        noisy = np.concatenate(
            [gt + rng.normal(0, 3, gt.shape), rng.uniform(0, 100, (2, 4)).cumsum(1)]
        )
        preds.append(
            _pred(
                noisy.tolist(),
                rng.uniform(0, 1, n + 2).tolist(),
                rng.integers(0, 3, n + 2).tolist(),
            )
        )
    batch = _batch(gts, labels)
    results = {}
    for backend in BACKENDS:
        metric = METRICS.build(dict(type="DetectionEval", backend=backend))
        metric.process(preds, batch)
        results[backend] = metric.compute()
    ref = results["pycocotools"]
    assert 0.05 < ref["mAP50"] < 0.95
    for backend, out in results.items():
        for key in ("mAP", "mAP50", "mAP75"):
            assert out[key] == pytest.approx(ref[key], abs=1e-6), (backend, key)


def test_ground_truth_is_mapped_back_like_the_predictions():
    """GT in the pipeline's pixels (halved) + predictions in original pixels: a perfect match."""
    meta = {"affine": [0.5, 0.5, 0.0, 0.0], "ori_shape": (200, 200)}
    batch = _batch([[[5, 5, 25, 25]]], [[0]], metas=[meta])
    metric = METRICS.build(dict(type="DetectionEval"))
    metric.process([_pred([[10, 10, 50, 50]], [0.9], [0])], batch)
    assert metric.compute()["mAP"] == pytest.approx(1.0)


def test_no_ground_truth_gives_zeros_not_an_error():
    metric = METRICS.build(dict(type="DetectionEval"))
    metric.process([_pred([A], [0.5], [0])], _batch([[]], [[]]))
    assert metric.compute()["mAP"] == 0.0


def test_artifacts_pr_curve_and_drawn_detections(tmp_path):
    from PIL import Image

    metric = METRICS.build(dict(type="DetectionEval", num_draw=2))
    preds, batch = _crowd_case()
    batch["image"] = torch.rand(1, 3, 128, 128)
    metric.process(preds, batch)
    metric.compute()
    paths = metric.artifacts(tmp_path, class_names=["thing"])
    names = sorted(p.name for p in paths)
    assert names == ["detections.png", "pr_curve.json", "pr_curve.png"]
    assert Image.open(tmp_path / "detections.png").size[0] >= 128
    import json

    curve = json.loads((tmp_path / "pr_curve.json").read_text())
    assert list(curve["precision"]) == ["thing"]
    assert curve["precision"]["thing"][0] == pytest.approx(1.0)


def test_bad_config_and_batches_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"\.backend: expected one of faster_coco_eval"):
        METRICS.build(dict(type="DetectionEval", backend="coco"))
    metric = METRICS.build(dict(type="DetectionEval"))
    with pytest.raises(DataError, match="needs 'bboxes' and 'labels'.*classification GT"):
        metric.process([_pred([A], [0.5], [0])], {"label": torch.tensor([1])})
