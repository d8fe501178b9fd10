"""Every registered model built from a small config and run once (timm-style sweep), plus the
Runner contract (loss dict / logits / probabilities) and config errors that name the key."""

from __future__ import annotations

import pytest
import torch

from antgo_mlflow.errors import ConfigError, RegistryError
from antgo_mlflow.registry import MODELS

NUM_CLASSES = 10
WRN_SMALL = dict(type="WideResNet", num_classes=NUM_CLASSES, depth=10, widen_factor=1)


def classifier(backbone, head=None, **extra):
    cfg = dict(type="ImageClassifier", backbone=backbone, **extra)
    if head is not None:
        cfg["head"] = head
    return cfg


def linear_head(in_channels, **extra):
    return dict(type="ClsHead", in_channels=in_channels, num_classes=NUM_CLASSES, **extra)


# One or more small configs per registered name; test_every_registered_model_is_swept keeps it complete.
SWEEP = {
    "ImageClassifier": [classifier(WRN_SMALL)],
    "WideResNet": [
        classifier(dict(WRN_SMALL, dropout=0.3, dense_dropout=0.2), dict(type="ClsHead")),
        classifier(dict(WRN_SMALL, num_classes=None), linear_head(64)),
    ],
    "ClsHead": [
        classifier(WRN_SMALL, dict(type="ClsHead", cal_acc=True, topk=(1, 5))),
        classifier(dict(WRN_SMALL, num_classes=None), linear_head(64, dropout_rate=0.5)),
    ],
    "StackedLinearClsHead": [
        classifier(
            dict(WRN_SMALL, num_classes=None),
            dict(
                type="StackedLinearClsHead",
                num_classes=NUM_CLASSES,
                in_channels=64,
                mid_channels=[32, 16],
                dropout_rate=0.1,
                norm_cfg=dict(type="BN1d"),
                act_cfg=dict(type="GELU"),
            ),
        )
    ],
    "TVBackbone": [
        classifier(dict(type="TVBackbone", model_name="resnet18"), linear_head(512)),
        classifier(dict(type="TVBackbone", model_name="resnet50", num_classes=NUM_CLASSES)),
        classifier(dict(type="TVBackbone", model_name="mobilenet_v2"), linear_head(1280)),
        classifier(
            dict(type="TVBackbone", model_name="mobilenet_v3_small", num_classes=NUM_CLASSES)
        ),
        classifier(dict(type="TVBackbone", model_name="mobilenet_v3_large"), linear_head(1280)),
        classifier(dict(type="TVBackbone", model_name="efficientnet_b0", num_classes=NUM_CLASSES)),
    ],
    "ResnetTV": [
        classifier(dict(type="ResnetTV", model="resnet18", class_num=NUM_CLASSES)),
        classifier(dict(type="ResnetTV", model="resnet18", output=(2, 3)), linear_head(512)),
    ],
}
CASES = [
    pytest.param(cfg, id=f"{name}-{i}")
    for name, cfgs in SWEEP.items()
    for i, cfg in enumerate(cfgs)
]


def build(cfg):
    return MODELS.build(cfg, path="model")


def test_every_registered_model_is_swept():
    ours = {n for n in MODELS if MODELS.get(n).__module__.startswith("antgo_mlflow.models")}
    own_sweeps = (
        "antgo_mlflow.models.detectors",
        "antgo_mlflow.models.semi",
        "antgo_mlflow.models.distill",
    )
    ours -= {n for n in ours if MODELS.get(n).__module__.startswith(own_sweeps)}
    # (detectors, the semi-supervised wrappers and the distiller have their own tests:
    # tests/models/test_detectors.py, tests/models/semi/, tests/models/distill/)
    assert ours == set(SWEEP), "add a small config for each new model to SWEEP"


@pytest.mark.parametrize("cfg", CASES)
def test_model_contract(cfg):
    torch.manual_seed(0)
    model = build(cfg)
    image = torch.randn(2, 3, 32, 32)
    label = torch.tensor([1, 7])

    model.train()
    out = model(image, label=label, image_meta=[{}, {}])  # extra batch fields are ignored
    assert isinstance(out, dict) and "loss" in out
    for key, value in out.items():
        assert value.dim() == 0, key  # every logged entry is a scalar
    total = sum(v for k, v in out.items() if k.startswith("loss"))
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        logits = model(image)
        probs = model.predict(image)
    assert logits.shape == (2, NUM_CLASSES)
    assert probs.shape == (2, NUM_CLASSES)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(probs, logits.softmax(dim=1))


def test_wrn_28_2_has_the_reference_parameter_count():
    model = build(dict(type="WideResNet", num_classes=10, depth=28, widen_factor=2))
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(1.47e6, rel=0.01)  # FixMatch's WRN-28-2: 1,467,610


def test_wrn_10_1_is_small_and_keeps_32x32_resolution_to_the_end():
    model = build(dict(WRN_SMALL, num_classes=None))
    assert sum(p.numel() for p in model.parameters()) < 100_000
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert build(dict(WRN_SMALL, in_channels=1))(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_cal_acc_reports_training_accuracy():
    model = build(classifier(WRN_SMALL, dict(type="ClsHead", cal_acc=True, topk=(1, 10))))
    out = model(torch.randn(4, 3, 32, 32), label=torch.tensor([0, 1, 2, 3]))
    assert set(out) == {"loss", "acc_top1", "acc_top10"}
    assert out["acc_top10"].item() == 1.0
    assert not out["acc_top1"].requires_grad


def test_soft_and_column_labels_are_accepted():
    torch.manual_seed(0)
    model = build(classifier(WRN_SMALL)).eval()  # eval: same BN statistics for every call
    image = torch.randn(2, 3, 32, 32)
    hard = model(image, label=torch.tensor([3, 4]))["loss"]
    column = model(image, label=torch.tensor([[3], [4]]))["loss"]
    soft = model(image, label=torch.nn.functional.one_hot(torch.tensor([3, 4]), 10).float())["loss"]
    torch.testing.assert_close(hard, column)
    torch.testing.assert_close(hard, soft)


def test_multi_label_loss_predicts_sigmoid_probabilities():
    head = dict(type="ClsHead", loss=dict(type="BCELoss"))
    model = build(classifier(WRN_SMALL, head)).eval()
    image = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.predict(image), model(image).sigmoid())


def test_init_cfg_loads_local_weights(tmp_path):
    source = build(classifier(WRN_SMALL))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")
    loaded = build(
        classifier(WRN_SMALL, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "w.pth")))
    )
    torch.testing.assert_close(
        loaded.state_dict()["backbone.fc.weight"], source.state_dict()["backbone.fc.weight"]
    )
    with pytest.raises(ConfigError, match=r"^model\.init_cfg\.checkpoint: no such file"):
        build(
            classifier(
                WRN_SMALL, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "nope.pth"))
            )
        )


def test_torchvision_weights_never_download(tmp_path, monkeypatch):
    """pretrained=True reads torch's hub cache only; an empty cache is a one-line config error."""
    from antgo_mlflow.models.backbones.torchvision import cached_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = classifier(
        dict(type="TVBackbone", model_name="resnet18", pretrained=True), linear_head(512)
    )
    with pytest.raises(ConfigError) as info:
        build(cfg)
    message = str(info.value)
    assert message.startswith(
        "model.backbone.pretrained: resnet18 ImageNet weights are not cached at"
    )
    assert "\n" not in message
    # A file placed in the cache is used (here: weights of a fresh network, saved by the test).
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    file = cached_weights_file("resnet18")
    file.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), file)
    model = build(cfg)
    torch.testing.assert_close(model.backbone.net.conv1.weight, reference.conv1.weight)


def test_torchvision_backbone_accepts_other_channel_counts():
    model = build(
        classifier(
            dict(type="TVBackbone", model_name="mobilenet_v3_small", in_channels=1),
            linear_head(1024),
        )
    )
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            classifier(dict(WRN_SMALL, type="WideResNett")),
            "model.backbone.type: unknown model 'WideResNett' (did you mean 'WideResNet'?)",
        ),
        (
            classifier(dict(WRN_SMALL, widen_factr=2)),
            "model.backbone.widen_factr: WideResNet has no argument 'widen_factr' (did you mean 'widen_factor'?)",
        ),
        (
            classifier(dict(WRN_SMALL, depth=27)),
            "model.backbone.depth: WideResNet depth must be 6n+4",
        ),
        (
            classifier(dict(type="WideResNet")),
            "model.backbone: WideResNet needs argument 'num_classes'",
        ),
        (
            classifier(WRN_SMALL, dict(type="ClsHead", loss=dict(type="CrossEntropyLos"))),
            "model.head.loss.type: unknown loss 'CrossEntropyLos' (did you mean 'CrossEntropyLoss'?)",
        ),
        (
            classifier(
                WRN_SMALL,
                dict(type="ClsHead", loss=dict(type="CrossEntropyLoss", label_smoothing=2)),
            ),
            "model.head.loss.label_smoothing: expected 0 <= value < 1",
        ),
        (
            classifier(WRN_SMALL, dict(type="ClsHead", in_channels=64)),
            "model.head.num_classes: give both",
        ),
        (
            classifier(dict(type="TVBackbone", model_name="resnet19")),
            "model.backbone.model_name: unknown torchvision network 'resnet19' (did you mean 'resnet18'?)",
        ),
        (
            classifier(dict(type="ResnetTV", model="mobilenet_v2")),
            "model.backbone.model: ResnetTV takes a ResNet",
        ),
        (
            classifier(
                dict(WRN_SMALL, num_classes=None),
                dict(
                    type="StackedLinearClsHead",
                    num_classes=10,
                    in_channels=64,
                    mid_channels=[8],
                    act_cfg=dict(type="Relu"),
                ),
            ),
            "model.head.act_cfg.type: unknown activation 'Relu'",
        ),
    ],
)
def test_bad_config_names_the_key(cfg, message):
    with pytest.raises(ConfigError) as info:
        build(cfg)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_head_in_channels_that_do_not_match_the_backbone_name_the_key():
    model = build(classifier(dict(WRN_SMALL, num_classes=None), linear_head(32)))
    with pytest.raises(
        ConfigError, match=r"^model\.head\.in_channels: is 32 but the backbone outputs 64"
    ):
        model(torch.randn(2, 3, 32, 32))


def test_class_weight_of_wrong_length_names_the_key():
    head = dict(type="ClsHead", loss=dict(type="CrossEntropyLoss", class_weight=[100, 3, 1, 2]))
    model = build(classifier(WRN_SMALL, head))
    with pytest.raises(
        ConfigError,
        match=r"^model\.head\.loss\.class_weight: has 4 values but the model predicts 10",
    ):
        model(torch.randn(2, 3, 32, 32), label=torch.tensor([0, 1]))


def test_unknown_type_is_a_registry_error_the_cli_renders():
    with pytest.raises(RegistryError):
        build(classifier(dict(WRN_SMALL, type="Nope")))


def test_predict_exports_to_onnx_with_dynamic_batch(tmp_path):
    """The export wrapper traces ``predict``; ONNX Runtime matches torch on another batch size."""
    import warnings

    import numpy as np
    import onnxruntime as ort

    model = build(classifier(WRN_SMALL)).eval()

    class Predict(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            return self.inner.predict(image)

    wrapper = Predict(model)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.zeros(2, 3, 32, 32),),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},),
            input_names=["image"],
            output_names=["pred"],
        )
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype("float32")
    got = ort.InferenceSession(str(path)).run(None, {"image": x})[0]
    with torch.no_grad():
        want = wrapper(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


CUDA_CASES = [
    pytest.param(classifier(WRN_SMALL), id="wrn"),
    pytest.param(
        classifier(dict(type="TVBackbone", model_name="resnet18"), linear_head(512)), id="resnet18"
    ),
    pytest.param(
        classifier(dict(type="TVBackbone", model_name="efficientnet_b0", num_classes=10)),
        id="effnet",
    ),
    pytest.param(
        classifier(
            WRN_SMALL,
            dict(
                type="ClsHead",
                loss=dict(type="CrossEntropyLoss", class_weight=[1.0] * 10, label_smoothing=0.1),
            ),
        ),
        id="ce-weighted",
    ),
    pytest.param(
        classifier(WRN_SMALL, dict(type="ClsHead", loss=dict(type="FocalLoss"))), id="focal"
    ),
    pytest.param(
        classifier(WRN_SMALL, dict(type="ClsHead", loss=dict(type="LabelSmoothingLoss"))), id="ls"
    ),
]


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)"
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("cfg", CUDA_CASES)
def test_cuda_autocast_training_step(cfg, dtype):
    """One AMP step on the GPU: buffers (class weights) follow .cuda(), the loss is finite and float32
    where it matters, and predict gives probabilities close to the float32 forward."""
    torch.manual_seed(0)
    model = build(cfg).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    image = torch.randn(8, 3, 32, 32, device="cuda")
    label = torch.randint(0, NUM_CLASSES, (8,), device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        out = model(image, label=label)
    loss = sum(v for k, v in out.items() if k.startswith("loss"))
    assert torch.isfinite(loss)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    model.eval()
    with torch.no_grad():
        full = model.predict(image)
        with torch.autocast("cuda", dtype=dtype):
            mixed = model.predict(image).float()
    torch.testing.assert_close(full.sum(dim=1), torch.ones(8, device="cuda"))
    assert (mixed - full).abs().max() < 0.05


def test_built_modules_can_be_passed_instead_of_configs():
    backbone = build(WRN_SMALL)
    model = MODELS.build(dict(type="ImageClassifier", backbone=backbone), path="model")
    assert model.backbone is backbone
    with pytest.raises(ConfigError, match=r"^model\.backbone: expected a dict with a 'type' key"):
        MODELS.build(dict(type="ImageClassifier", backbone="WideResNet"), path="model")
