"""Detectors (FCOS, RetinaNet, Faster R-CNN on TinyFPN/ResNetFPN/MobileNetV3FPN): the model
contract, boxes mapped back to original pixels, crowd boxes ignored, and the bad-box rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.registry import MODELS

TINY = dict(type="TinyFPN", channels=(8, 16, 16, 16), convs=(1, 1, 1, 1), out_channels=32)
SWEEP = {
    "FCOS": [
        dict(
            type="FCOS",
            num_classes=3,
            backbone=dict(TINY, out_strides=(8, 16)),
            head=dict(num_convs=1),
        )
    ],
    "RetinaNet": [
        dict(
            type="RetinaNet",
            num_classes=3,
            backbone=dict(TINY, out_strides=(8, 16)),
            head=dict(anchor_scale=2.5),
        )
    ],
    "FasterRCNN": [
        dict(
            type="FasterRCNN",
            num_classes=3,
            backbone=dict(TINY, out_strides=(4, 8, 16), extra="pool"),
            head=dict(
                representation_size=32,
                rpn_batch_size_per_image=64,
                box_batch_size_per_image=64,
                rpn_pre_nms_top_n_train=200,
                rpn_post_nms_top_n_train=100,
                rpn_pre_nms_top_n_test=100,
                rpn_post_nms_top_n_test=50,
            ),
        )
    ],
    "TinyFPN": [
        dict(type="FCOS", num_classes=2, backbone=dict(TINY, out_strides=(4, 8), extra="p6p7"))
    ],
    "ResNetFPN": [
        dict(
            type="RetinaNet",
            num_classes=2,
            backbone=dict(type="ResNetFPN", depth=18, out_channels=64),
        )
    ],
    "MobileNetV3FPN": [
        dict(
            type="FasterRCNN",
            num_classes=2,
            backbone=dict(type="MobileNetV3FPN", arch="small", out_channels=32),
            head=dict(representation_size=64),
        )
    ],
}
CASES = [
    pytest.param(cfg, id=f"{name}-{i}")
    for name, cfgs in SWEEP.items()
    for i, cfg in enumerate(cfgs)
]


def SGDWrapper(model, lr=0.01):
    """The engine's OptimWrapper on AdamW, gradients clipped."""
    from antgo_mlflow.engine.optim_wrapper import OptimWrapper

    return OptimWrapper(torch.optim.AdamW(model.parameters(), lr=lr), clip_grad=dict(max_norm=2.0))


def toy_batch(n=4, size=64, seed=0):
    """Bright squares (class 0) and bars (class 1) on noise; one image without objects."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.2, (n, 3, size, size)).astype(np.float32)
    boxes, labels = [], []
    for i in range(n):
        if i == n - 1:
            boxes.append(torch.zeros((0, 4)))
            labels.append(torch.zeros((0,), dtype=torch.int64))
            continue
        x, y = rng.integers(4, size // 2, 2)
        w, h = (20, 20) if i % 2 == 0 else (28, 10)
        images[i, :, y : y + h, x : x + w] = 1.0
        boxes.append(torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32))
        labels.append(torch.tensor([i % 2]))
    return {
        "image": torch.from_numpy(images),
        "bboxes": boxes,
        "labels": labels,
        "image_meta": [{"image_file": f"toy{i}.png"} for i in range(n)],
    }


def test_every_registered_detector_is_swept():
    ours = {
        n for n in MODELS if MODELS.get(n).__module__.startswith("antgo_mlflow.models.detectors")
    }
    assert ours == set(SWEEP), "add a small config for each new detector or backbone to SWEEP"


@pytest.mark.parametrize("cfg", CASES)
def test_detector_contract(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg, path="model")
    batch = toy_batch()
    model.train()
    out = model.train_step(batch, SGDWrapper(model))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert any(k.startswith("loss_") for k in out)
    model.eval()
    preds = model.val_step(batch)
    assert len(preds) == 4
    for pred in preds:
        assert set(pred) == {"bboxes", "scores", "labels"}
        k = pred["bboxes"].shape[0]
        assert pred["bboxes"].shape == (k, 4) and pred["scores"].shape == (k,)
        assert pred["labels"].dtype == torch.int64
        if k:
            assert 0 <= int(pred["labels"].min()) and int(pred["labels"].max()) < model.num_classes
    assert model.extract_features(batch).shape[0] == 4


@pytest.mark.parametrize("family", ["FCOS", "RetinaNet", "FasterRCNN"])
def test_a_detector_trains_on_tiny_data_and_its_loss_falls(family):
    torch.manual_seed(0)
    model = MODELS.build(SWEEP[family][0], path="model")
    model.train()
    batch = toy_batch()
    wrapper = SGDWrapper(model, lr=0.003)
    losses = [float(model.train_step(batch, wrapper)["loss"]) for _ in range(10)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def _fixed_predictions(model, boxes):
    """Make ``predict_boxes`` return ``boxes`` (pipeline pixels), to test the mapping alone."""

    def predict(image):
        return [
            {
                "bboxes": b.clone(),
                "scores": torch.ones(len(b)),
                "labels": torch.zeros(len(b), dtype=torch.int64),
            }
            for b in boxes
        ]

    model.predict_boxes = predict


@pytest.mark.parametrize(
    "ops",
    [
        [dict(type="ResizeS", target_dim=(64, 64))],
        [
            dict(type="KeepRatio", aspect_ratio=1.0, focus_on_center=True),
            dict(type="ResizeS", target_dim=64),
        ],
        [
            dict(type="ResizeS", target_dim=(64, 32)),
            dict(type="KeepRatio", aspect_ratio=1.0, focus_on_center=True),
        ],
        [dict(type="ResizeS", target_dim=(64, 64)), dict(type="RandomFlipImage", prob=1.0)],
    ],
    ids=["resize", "pad-then-resize", "resize-then-pad", "resize-then-flip"],
)
def test_val_step_boxes_are_in_original_pixels_after_the_pipeline(ops):
    from antgo_mlflow.data.transforms import build_pipeline

    original = np.array([[20.0, 10.0, 120.0, 60.0], [150.0, 30.0, 200.0, 90.0]], np.float32)
    sample = {
        "image": np.zeros((100, 200, 3), np.uint8),
        "bboxes": original.copy(),
        "labels": np.array([0, 1]),
    }
    pipeline = build_pipeline([*ops, dict(type="ToTensor", keys=["image"])])
    out = pipeline(sample)
    assert not np.allclose(out["bboxes"], original)  # the pipeline moved them
    model = MODELS.build(SWEEP["FCOS"][0], path="model")
    batch = {"image": out["image"][None], "image_meta": [out["image_meta"]]}
    _fixed_predictions(model, [torch.as_tensor(out["bboxes"])])  # a perfect detector
    pred = model.val_step(batch)[0]
    np.testing.assert_allclose(pred["bboxes"].numpy(), original, atol=1e-3)


def test_num_classes_come_from_meta_json(tmp_path):
    from antgo_mlflow.gt import default_meta, write_meta

    write_meta(tmp_path / "meta.json", default_meta(3, ["cat", "dog", "bird"]))
    (tmp_path / "annotation.json").write_text("[]")
    for where in (tmp_path / "meta.json", tmp_path, tmp_path / "annotation.json"):
        cfg = dict(SWEEP["FCOS"][0], num_classes=None, meta=str(where))
        model = MODELS.build(cfg, path="model")
        assert model.num_classes == 3 and model.class_names == ["cat", "dog", "bird"]
    assert model.detector.head.classification_head.num_classes == 3
    frcnn = MODELS.build(
        dict(SWEEP["FasterRCNN"][0], num_classes=None, meta=str(tmp_path)), path="model"
    )
    assert frcnn.detector.roi_heads.box_predictor.cls_score.out_features == 4  # + background
    with pytest.raises(ConfigError, match=r"^model\.meta: no meta\.json"):
        MODELS.build(dict(cfg, meta=str(tmp_path / "nowhere")), path="model")
    with pytest.raises(ConfigError, match=r"^model: give num_classes, class_names or meta"):
        MODELS.build(dict(cfg, meta=None), path="model")


def test_config_errors_name_the_key():
    with pytest.raises(
        ConfigError, match=r"^model\.head\.num_conv: unknown setting \(did you mean 'num_convs'\?\)"
    ):
        MODELS.build(dict(SWEEP["FCOS"][0], head=dict(num_conv=2)), path="model")
    with pytest.raises(ConfigError, match=r"^model\.test_cfg\.nms: unknown setting"):
        MODELS.build(dict(SWEEP["FCOS"][0], test_cfg=dict(nms=0.5)), path="model")
    with pytest.raises(ConfigError, match=r"^model\.backbone\.out_strides"):
        MODELS.build(dict(SWEEP["FCOS"][0], backbone=dict(TINY, out_strides=(64,))), path="model")
    with pytest.raises(
        ConfigError, match=r"^model\.backbone: WideResNet is not a detection backbone"
    ):
        MODELS.build(
            dict(
                SWEEP["FCOS"][0],
                backbone=dict(type="WideResNet", num_classes=3, depth=10, widen_factor=1),
            ),
            path="model",
        )


def _one(boxes, labels, **extra):
    batch = {
        "image": torch.zeros(1, 3, 64, 64),
        "bboxes": [torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)],
        "labels": [torch.tensor(labels)],
        "image_meta": [{"image_file": "images/bad.jpg"}],
    }
    batch.update(extra)
    return batch


def test_bad_boxes_are_refused_naming_the_sample_and_field():
    model = MODELS.build(SWEEP["FCOS"][0], path="model")
    image = torch.zeros(1, 3, 64, 64)
    with pytest.raises(
        DataError, match=r"^sample images/bad\.jpg, field 'bboxes': box 1 is not finite"
    ):
        model.targets_from_batch(_one([[1, 1, 9, 9], [1, float("nan"), 5, 5]], [0, 1]), image)
    with pytest.raises(
        DataError,
        match=r"^sample images/bad\.jpg, field 'labels': label 3 of box 0 is not a class index in 0\.\.2",
    ):
        model.targets_from_batch(_one([[1, 1, 9, 9]], [3]), image)
    with pytest.raises(DataError, match=r"field 'labels': 1 labels for 2 boxes"):
        model.targets_from_batch(_one([[1, 1, 9, 9], [2, 2, 8, 8]], [0]), image)


def test_boxes_outside_the_image_are_clipped_or_dropped_and_counted():
    model = MODELS.build(SWEEP["FCOS"][0], path="model")
    batch = _one(
        [[-10, 5, 20, 30], [70, 70, 90, 90], [10, 10, 10, 40], [30, 30, 50, 50]], [0, 1, 2, 1]
    )
    (target,) = model.targets_from_batch(batch, batch["image"])
    assert target["boxes"].tolist() == [[0.0, 5.0, 20.0, 30.0], [30.0, 30.0, 50.0, 50.0]]
    assert target["labels"].tolist() == [0, 1]
    assert model.boxes_dropped == 2
    out = model.train_step(batch, SGDWrapper(model))
    assert out["boxes_dropped"] == 4.0


def test_a_classification_gt_given_to_a_detector_is_refused():
    model = MODELS.build(SWEEP["FCOS"][0], path="model")
    image = torch.zeros(2, 3, 64, 64)
    cls_batch = {
        "image": image,
        "label": torch.tensor([3, 1]),
        "image_meta": [{"image_file": "a.png"}, {}],
    }
    with pytest.raises(
        DataError,
        match=r"^sample a\.png: field 'bboxes' missing from the batch .*classification GT",
    ):
        model.targets_from_batch(cls_batch, image)
    # shards of a classification GT carry empty boxes and a class per image
    empty = dict(
        cls_batch, bboxes=[np.zeros((0,), np.float32)] * 2, labels=[np.zeros((0,), np.float32)] * 2
    )
    with pytest.raises(
        DataError, match=r"^sample a\.png, field 'bboxes': empty, but image_label=3"
    ):
        model.targets_from_batch(empty, image)
    # an image without objects in a detection GT (image_label -1) is a valid negative
    negative = dict(empty, label=torch.tensor([-1, -1]))
    assert [t["boxes"].shape[0] for t in model.targets_from_batch(negative, image)] == [0, 0]


def test_fcos_ignores_locations_on_crowd_boxes():
    """Logits at locations on a crowd box do not change the loss; the same box as a normal box does."""
    torch.manual_seed(0)
    model = MODELS.build(SWEEP["FCOS"][0], path="model").train()
    det = model.detector
    batch = _one([[4, 4, 24, 24], [34, 30, 60, 60]], [0, 1], box_visibility=[torch.tensor([1, 0])])
    targets = model.targets_from_batch(batch, batch["image"])
    assert targets[0]["crowd"].tolist() == [False, True]
    images, _ = det.transform(batch["image"])
    feats = list(det.backbone(images.tensors).values())
    outputs = det.head(feats)
    anchors = det.anchor_generator(images, feats)
    per_level = [f.shape[-2] * f.shape[-1] for f in feats]

    def cls_loss(logits, crowd):
        t = [dict(targets[0], crowd=torch.tensor([False, crowd]))]
        return det.compute_loss(t, dict(outputs, cls_logits=logits), anchors, per_level)["cls"]

    centres = (anchors[0][:, :2] + anchors[0][:, 2:]) / 2
    on_crowd = (
        (centres[:, 0] > 34) & (centres[:, 0] < 60) & (centres[:, 1] > 30) & (centres[:, 1] < 60)
    )
    assert on_crowd.any()
    pushed = outputs["cls_logits"].clone()
    pushed[0, on_crowd] += 5.0
    base = cls_loss(outputs["cls_logits"], True)
    torch.testing.assert_close(cls_loss(pushed, True), base)
    assert not torch.allclose(cls_loss(pushed, False), cls_loss(outputs["cls_logits"], False))


def test_retinanet_and_faster_rcnn_ignore_crowd_boxes():
    torch.manual_seed(0)
    retina = MODELS.build(SWEEP["RetinaNet"][0], path="model").train()
    batch = _one([[4, 4, 30, 30], [34, 30, 60, 60]], [0, 1], box_visibility=[torch.tensor([1, 0])])
    targets = retina.targets_from_batch(batch, batch["image"])
    det = retina.detector
    images, _ = det.transform(batch["image"])
    anchors = det.anchor_generator(images, list(det.backbone(images.tensors).values()))
    seen = {}
    original = det.head.compute_loss

    def spy(targets, head_outputs, anchors, matched_idxs):
        seen["matched"] = matched_idxs[0]
        return original(targets, head_outputs, anchors, matched_idxs)

    det.head.compute_loss = spy
    det(batch["image"], targets)
    matched = seen["matched"]
    assert (matched == 0).any() and not (matched == 1).any()  # nothing learns the crowd box
    centres = (anchors[0][:, :2] + anchors[0][:, 2:]) / 2
    inside = (
        (centres[:, 0] > 34) & (centres[:, 0] < 60) & (centres[:, 1] > 30) & (centres[:, 1] < 60)
    )
    assert (matched[inside] == -2).all()  # ignored, not background

    frcnn = MODELS.build(SWEEP["FasterRCNN"][0], path="model")
    (target,) = frcnn.adapt_targets(frcnn.targets_from_batch(batch, batch["image"]))
    assert target["labels"].tolist() == [1, -1] and "crowd" not in target


def test_state_dict_round_trip_keeps_predictions(tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(SWEEP["FCOS"][0], path="model").eval()
    torch.save(model.state_dict(), tmp_path / "m.pth")
    again = MODELS.build(SWEEP["FCOS"][0], path="model").eval()
    again.load_state_dict(torch.load(tmp_path / "m.pth", weights_only=True))
    batch = toy_batch()
    a, b = model.val_step(batch), again.val_step(batch)
    for p, q in zip(a, b):
        torch.testing.assert_close(p["bboxes"], q["bboxes"])
    json.dumps(model.class_names)


def _confident(cfg):
    """A randomly initialised detector nudged to output boxes (its class prior raised)."""
    torch.manual_seed(0)
    model = MODELS.build(cfg, path="model").eval()
    head = getattr(model.detector, "head", None)
    if head is not None:  # single-stage: raise the prior (Faster R-CNN outputs boxes as it is)
        with torch.no_grad():
            head.classification_head.cls_logits.bias += 3.0
    return model


@pytest.mark.parametrize("family", ["FCOS", "RetinaNet", "FasterRCNN"])
def test_forward_gives_torchvisions_own_detections(family):
    from antgo_mlflow.models.detectors.base import unpad_detections

    model = _confident(SWEEP[family][0])
    image = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        reference = model.torchvision_predictions(image)
        detections = model(image)
    k = model.TEST_DEFAULTS["detections_per_img"]
    assert detections.shape == (3, k, 6)
    assert sum(len(r["scores"]) for r in reference) > 0
    for ref, got in zip(reference, unpad_detections(detections)):
        torch.testing.assert_close(got["bboxes"], ref["bboxes"])
        torch.testing.assert_close(got["scores"], ref["scores"])
        assert torch.equal(got["labels"], ref["labels"])
    n0 = len(reference[0]["scores"])
    assert (detections[0, n0:, 5] == -1).all()


def test_onnx_export_has_a_dynamic_batch_and_matches_pytorch(tmp_path):
    import onnxruntime as ort

    from antgo_mlflow.models.detectors.base import detection_difference

    sys_path = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "benchmarks")
    import sys

    sys.path.insert(0, sys_path)
    try:
        from bench_detection import export_onnx
    finally:
        sys.path.remove(sys_path)
    model = _confident(SWEEP["FCOS"][0])
    export_onnx(model, torch.rand(1, 3, 64, 64), tmp_path / "fcos.onnx")
    session = ort.InferenceSession(str(tmp_path / "fcos.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        image = torch.rand(n, 3, 64, 64)
        (got,) = session.run(None, {"image": image.numpy()})
        with torch.no_grad():
            reference = model(image)
        assert got.shape == (n, 100, 6)
        assert detection_difference(reference, got, 0.05) <= 1e-3
    # the matching is not fooled by a box that moved
    moved = reference.clone()
    moved[0, 0, 0] += 0.5
    assert detection_difference(reference, moved, 0.05) == pytest.approx(0.5)


def test_a_detection_gt_given_to_a_classifier_is_one_line():
    """Detection samples carry image_label -1: the classifier's loss names the problem."""
    model = MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(type="WideResNet", num_classes=3, depth=10, widen_factor=1),
        ),
        path="model",
    )
    with pytest.raises(DataError, match=r"label -1 is not a class index in 0\.\.2 .*detection GT"):
        model(torch.zeros(2, 3, 32, 32), label=torch.tensor([-1, 1]))
