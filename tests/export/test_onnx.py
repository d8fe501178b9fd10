"""ONNX export of `predict` with the ONNX Runtime parity check, and logging with mlflow.onnx."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from antgo_mlflow.export.onnx import (
    ExportCheckError,
    PredictModule,
    check_parity,
    export_onnx,
    log_onnx_model,
)


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, classes)

    def forward(self, image):
        return self.fc(self.bn(self.conv(image)).relu().mean((2, 3)))

    def predict(self, image):
        return self.forward(image).softmax(1)


def test_dynamic_batch_export_matches_pytorch_on_any_batch(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = TinyNet().eval()
    result = export_onnx(model, tmp_path / "tiny.onnx", input_shape=(1, 3, 16, 16))
    assert result.exporter == "dynamo" and result.opset == 18
    assert result.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((7, 3, 16, 16)).astype(np.float32)
    got = session.run(["pred"], {"image": x})[0]
    want = model.predict(torch.from_numpy(x)).detach().numpy()
    assert np.abs(got - want).max() <= 1e-4
    assert not list(tmp_path.glob(".antgo-tmp-*"))


def test_static_export_with_an_older_opset_uses_the_torchscript_exporter(tmp_path):
    result = export_onnx(
        TinyNet().eval(),
        tmp_path / "s.onnx",
        input_shape=(2, 3, 8, 8),
        opset=13,
        dynamic_batch=False,
    )
    assert result.exporter == "torchscript" and result.opset == 13
    assert result.input_shape == (2, 3, 8, 8)


def test_a_parity_failure_is_a_clear_error_and_writes_nothing(tmp_path):
    model = TinyNet().eval()
    result = export_onnx(model, tmp_path / "m.onnx", input_shape=(1, 3, 8, 8), opset=17)
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ExportCheckError, match="differs from PyTorch"):
        # a tolerance no float result meets: the check must fail loudly, not silently
        check_parity(PredictModule(model), result.path, [x], atol=-1.0)


def test_bad_opset_is_a_usage_error(tmp_path):
    from antgo_mlflow.errors import UsageError

    with pytest.raises(UsageError, match="--opset"):
        export_onnx(TinyNet(), tmp_path / "m.onnx", opset=99)
    assert not (tmp_path / "m.onnx").exists()


def test_logged_onnx_model_has_a_dynamic_signature_and_serves(tmp_path):
    import mlflow

    result = export_onnx(TinyNet().eval(), tmp_path / "m.onnx", input_shape=(1, 3, 8, 8), opset=17)
    with mlflow.start_run():
        info = log_onnx_model(result, metadata={"antgo.preprocess": {"size": [8, 8]}})
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    out = loaded.predict({"image": np.zeros((5, 3, 8, 8), np.float32)})["pred"]
    assert out.shape == (5, 4)
    model = mlflow.models.get_model_info(info.model_uri)
    assert model.metadata["antgo.max_abs_diff"] <= 1e-4
    assert model.saved_input_example_info is not None
