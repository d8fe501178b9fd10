"""Detectors through inference/: export a checkpoint to ONNX (parity after matching), load it as
a DetectionPredictor (boxes in the original pixels), pseudo-label with two fused detectors.

The detector is a tiny randomly initialised FCOS whose class prior is raised so that it outputs
boxes; the expected boxes are computed here from its own ``forward`` on the resized image.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from antgo_mlflow.registry import MODELS

NAMES = ["rectangle", "ellipse", "triangle"]
CFG = dict(
    type="FCOS",
    class_names=NAMES,
    backbone=dict(
        type="TinyFPN",
        channels=(8, 16, 16, 16),
        convs=(1, 1, 1, 1),
        out_channels=32,
        out_strides=(8, 16),
    ),
    head=dict(num_convs=1),
    test_cfg=dict(score_thresh=0.3, detections_per_img=20),
)
SIZE = 64


def _detector(seed: int = 0):
    torch.manual_seed(seed)
    model = MODELS.build(CFG, path="model").eval()
    with torch.no_grad():  # a random detector that does output boxes
        model.detector.head.classification_head.cls_logits.bias += 3.0
    return model


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "det.pth"
    cfg = {
        "model": CFG,
        "task": "detection",
        "export": {"input_shape_list": [[1, 3, SIZE, SIZE]]},
    }
    torch.save({"meta": {"config_dict": cfg}, "state_dict": _detector().state_dict()}, path)
    return path


@pytest.fixture
def images(tmp_path):
    """4 images of 96x80 (W x H) as a standard GT folder; they are resized to 64x64."""
    from PIL import Image

    from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta

    rng = np.random.default_rng(0)
    folder = tmp_path / "unlabeled"
    (folder / "images").mkdir(parents=True)
    arrays, samples = [], []
    for i in range(4):
        image = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{i}.png")
        arrays.append(image)
        samples.append(new_sample(image_file=f"images/{i}.png", height=80, width=96))
    save_gt(folder / "annotation.json", samples)
    write_meta(folder, default_meta(4, NAMES))
    return folder, arrays


def _expected(predictor, image: np.ndarray) -> dict:
    """The detector's own forward on the preprocessed image, boxes scaled to 96x80."""
    batch = torch.from_numpy(predictor.preprocess([image]))
    with torch.no_grad():
        rows = _detector()(batch)[0]
    rows = rows[rows[:, 5] >= 0]
    scale = torch.tensor([96 / SIZE, 80 / SIZE, 96 / SIZE, 80 / SIZE])
    return {"bboxes": rows[:, :4] * scale, "scores": rows[:, 4], "labels": rows[:, 5].long()}


def test_export_writes_a_detection_onnx_with_parity_and_the_loader_knows_it(
    tmp_path, checkpoint, images
):
    import onnxruntime as ort

    from antgo_mlflow.export.workflow import export_model
    from antgo_mlflow.inference import DetectionPredictor, load_model

    result = export_model(checkpoint=checkpoint, output=tmp_path / "det.onnx", log=False)
    assert result.max_abs_diff <= 1e-3
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "detections"
    (out,) = session.run(None, {"image": np.zeros((3, 3, SIZE, SIZE), np.float32)})
    assert out.shape == (3, 20, 6)  # the batch axis is dynamic

    _, arrays = images
    for uri in (str(result.path), str(checkpoint)):
        predictor = load_model(uri)
        assert isinstance(predictor, DetectionPredictor)
        assert predictor.num_classes == 3 and predictor.class_names == NAMES
        preds = predictor.predict(arrays, batch_size=3)
        assert len(preds) == 4
        for pred, image in zip(preds, arrays):
            want = _expected(predictor, image)
            assert len(want["scores"]) > 0
            assert pred["bboxes"].shape == (len(want["scores"]), 4)
            np.testing.assert_allclose(pred["bboxes"], want["bboxes"].clamp(min=0), atol=1e-2)
            np.testing.assert_allclose(pred["scores"], want["scores"], atol=1e-3)
            assert (pred["bboxes"][:, [0, 2]] <= 96).all() and (
                pred["bboxes"][:, [1, 3]] <= 80
            ).all()


def test_pseudo_label_fuses_two_detectors_into_gt_boxes(tmp_path, checkpoint, images):
    import shutil

    from antgo_mlflow.gt import load_gt
    from antgo_mlflow.inference import load_model
    from antgo_mlflow.inference.pseudo_label import pseudo_label

    folder, arrays = images
    twin = shutil.copy(checkpoint, tmp_path / "twin.pth")
    models = [str(checkpoint), str(twin)]
    result = pseudo_label(models, folder, tmp_path / "out", threshold=0.3, weights=[3, 1])
    assert result.task == "detection"
    rows = load_gt(tmp_path / "out" / "pseudo-label.json", data_roots=[folder])
    confident = load_gt(tmp_path / "out" / "confident.json", data_roots=[folder])
    uncertain = load_gt(tmp_path / "out" / "uncertain.json", data_roots=[folder])
    assert len(rows) == 4 and len(confident) + len(uncertain) == 4
    # the reference: the detector alone, on the same batch (scores near its threshold can
    # flip with the batch size)
    wanted = load_model(str(checkpoint)).predict(arrays)
    for row, want in zip(rows, wanted):
        want = {k: torch.as_tensor(v) for k, v in want.items()}
        pred = row["predictions"]
        # the same detector twice: the fusion is its own boxes (those above the skip score,
        # with an area)
        box = want["bboxes"]
        kept = (want["scores"] >= 0.05) & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
        assert len(pred["scores"]) == int(kept.sum())
        np.testing.assert_allclose(
            sorted(pred["scores"], reverse=True),
            torch.sort(want["scores"][kept], descending=True).values,
            atol=2e-3,
        )
        assert set(pred["models"]) == set(models)
        assert pred["weights"] == [0.75, 0.25]
        sure = [s >= 0.3 for s in pred["scores"]]
        assert any(sure)
        assert row["bboxes"] == [b for b, k in zip(pred["bboxes"], sure) if k]
        assert row["labels"] == [v for v, k in zip(pred["labels"], sure) if k]
        assert row["box_visibility"] == [1] * len(row["labels"])
        certainty = min([max(s, 1 - s) for s in pred["scores"]], default=1.0)
        assert pred["image_score"] == pytest.approx(certainty, abs=1e-4)
        assert pred["confident"] == (certainty >= 0.3)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["meta"]["category"] == NAMES


def test_detectors_and_classifiers_are_not_mixed(tmp_path, checkpoint, images):
    from antgo_mlflow.errors import UsageError
    from antgo_mlflow.inference.pseudo_label import pseudo_label

    clf = tmp_path / "clf.pth"
    cfg = dict(
        type="ImageClassifier",
        backbone=dict(type="WideResNet", num_classes=3, depth=10, widen_factor=1),
    )
    model = MODELS.build(cfg, path="model")
    torch.save({"meta": {"config_dict": {"model": cfg}}, "state_dict": model.state_dict()}, clf)
    folder, _ = images
    with pytest.raises(UsageError, match=r"is a detection model, .* is a classification model"):
        pseudo_label([str(checkpoint), str(clf)], folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()
