"""pseudo-label: averaged probabilities of several models, confident/uncertain split, MLflow log.

Models are tiny networks exported to ONNX (and one PyTorch checkpoint); the expected numbers are
computed here by hand with ONNX Runtime / PyTorch on the same preprocessed images.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from antgo_mlflow.inference import Preprocess
from antgo_mlflow.inference.pseudo_label import pseudo_label
from tests.helpers import assert_one_line_error


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4, 10)

    def forward(self, image):
        return self.fc(self.conv(image).relu().mean((2, 3))) * 3

    def predict(self, image):
        return self.forward(image).softmax(1)


class _Result:
    def __init__(self, proc):
        self.code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr

    def __repr__(self):
        return f"_Result({self.code}, {self.stderr[-1500:]!r})"


@pytest.fixture
def dataset(tmp_path):
    """12 digits as a standard GT folder (PNG files, annotation.json, meta.json with class names)."""
    from PIL import Image

    from antgo_mlflow.data.sources.digits import digits_arrays
    from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta

    images, labels = digits_arrays()
    folder = tmp_path / "unlabeled"
    (folder / "images").mkdir(parents=True)
    samples = []
    for i in range(12):
        Image.fromarray(images[i]).save(folder / "images" / f"{i}.png")
        samples.append(new_sample(image_file=f"images/{i}.png", height=32, width=32))
    save_gt(folder / "annotation.json", samples)
    write_meta(folder, default_meta(12, [f"digit{i}" for i in range(10)]))
    return folder, images[:12]


@pytest.fixture
def onnx_models(tmp_path):
    from antgo_mlflow.export.onnx import export_onnx

    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        result = export_onnx(TinyNet().eval(), tmp_path / f"m{seed}.onnx", opset=17)
        paths.append(result.path)
    return paths


def _ort_probs(path: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": batch})[0].astype(np.float64)


def test_two_models_weighted_average_matches_a_hand_computation(tmp_path, dataset, onnx_models):
    folder, images = dataset
    batch = Preprocess()(list(images))
    p1, p2 = (_ort_probs(p, batch) for p in onnx_models)
    expected = 0.75 * p1 + 0.25 * p2
    threshold = float(np.median(expected.max(axis=1)))  # some samples on each side

    out = tmp_path / "out"
    result = pseudo_label(
        [str(p) for p in onnx_models],
        folder / "annotation.json",
        out,
        threshold=threshold,
        weights=[3, 1],
        batch_size=5,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "confident.json",
        "meta.json",
        "pseudo-label.json",
        "uncertain.json",
    ]
    everything = json.loads((out / "pseudo-label.json").read_text())
    got = np.array([s["predictions"]["probabilities"] for s in everything])
    assert np.abs(got - expected).max() < 2e-6
    entropy = -(expected * np.log(expected)).sum(axis=1)
    assert np.allclose([s["predictions"]["entropy"] for s in everything], entropy, atol=2e-6)
    confident = json.loads((out / "confident.json").read_text())
    uncertain = json.loads((out / "uncertain.json").read_text())
    assert len(confident) + len(uncertain) == 12 and confident and uncertain
    assert result.counts == {"total": 12, "confident": len(confident), "uncertain": len(uncertain)}
    for sample, probs in zip(everything, expected):
        label = int(probs.argmax())
        assert sample["predictions"]["label"] == label
        assert sample["predictions"]["models"] == [str(p) for p in onnx_models]
        if probs.max() >= threshold:
            assert sample["image_label"] == label and sample["image_label_name"] == f"digit{label}"
        else:
            assert sample["image_label"] == -1
        assert (out / sample["image_file"]).is_file()  # paths rebased onto the output folder


def test_a_pytorch_checkpoint_is_a_model_too(tmp_path, dataset):
    from antgo_mlflow.registry import MODELS

    folder, images = dataset
    cfg = dict(
        type="ImageClassifier",
        backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1, bn_momentum=0.1),
        head=dict(type="ClsHead"),
    )
    torch.manual_seed(0)
    model = MODELS.build(cfg).eval()
    torch.save(
        {"meta": {"config_dict": {"model": cfg}}, "state_dict": model.state_dict()},
        tmp_path / "m.pth",
    )
    result = pseudo_label([str(tmp_path / "m.pth")], folder, tmp_path / "out", threshold=0.5)
    with torch.no_grad():
        want = model.predict(torch.from_numpy(Preprocess()(list(images)))).numpy()
    assert np.abs(result.probabilities - want).max() < 1e-5


def _entry(*args, cwd, env_uri=None):
    import os

    env = dict(os.environ)
    if env_uri:
        env["MLFLOW_TRACKING_URI"] = env_uri
    return _Result(
        subprocess.run(
            [sys.executable, "-m", "antgo_mlflow.entrypoints.pseudo_label", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    )


def test_entry_point_reads_shards_resolves_mlflow_uris_and_logs_the_run(
    tmp_path, dataset, onnx_models
):
    import mlflow
    from mlflow.tracking import MlflowClient

    from antgo_mlflow.export.onnx import ExportResult, log_onnx_model
    from antgo_mlflow.tools.package_tfrecord import package_tfrecord

    folder, _ = dataset
    package_tfrecord(str(folder / "annotation.json"), str(tmp_path / "shards"), "unl", num=5)
    example = np.zeros((1, 3, 32, 32), np.float32)
    with mlflow.start_run() as run:
        info = log_onnx_model(
            ExportResult(
                onnx_models[0], 17, True, "torchscript", 0.0, (-1, 3, 32, 32), (1, 10), example
            ),
            registered_model_name="digits-expert",
        )
    client = MlflowClient()
    client.set_registered_model_alias("digits-expert", "champion", info.registered_model_version)

    result = _entry(
        "--models",
        f"runs:/{run.info.run_id}/onnx_model,models:/digits-expert@champion",
        "--models",
        str(onnx_models[1]),
        "--input",
        str(tmp_path / "shards" / "unl-manifest.json"),
        "--threshold",
        "0.2",
        "--output",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.code == 0, result
    samples = json.loads((tmp_path / "out" / "pseudo-label.json").read_text())
    assert len(samples) == 12 and len(samples[0]["predictions"]["models"]) == 3
    assert all((tmp_path / "out" / s["image_file"]).is_file() for s in samples)  # images written
    (logged,) = [
        r
        for r in mlflow.search_runs(output_format="list")
        if r.data.tags.get("antgo.process") == "pseudo-label"
    ]
    assert logged.data.metrics["pseudo_label/total"] == 12
    names = {f.path for f in client.list_artifacts(logged.info.run_id, "pseudo_label")}
    assert "pseudo_label/confident.json" in names and "pseudo_label/uncertain.json" in names


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--threshold", "1.5"], ["--threshold", "between 0 and 1"]),
        (["--threshold", "-0.1"], ["--threshold"]),
        (["--weights", "1,2"], ["--weights", "2 weights for 1 models"]),
        (["--models", "runs:/0123456789abcdef0123456789abcdef/model"], ["does not resolve"]),
        (["--models", "models:/no-such-model@champion"], ["does not resolve"]),
        (["--models", "missing.onnx"], ["--models", "missing.onnx"]),
    ],
)
def test_bad_parameters_are_one_line(tmp_path, dataset, onnx_models, extra, fragments):
    folder, _ = dataset
    models = [] if "--models" in extra else ["--models", str(onnx_models[0])]
    result = _entry(
        *models, "--input", str(folder), "--output", str(tmp_path / "out"), *extra, cwd=tmp_path
    )
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_empty_input_is_one_line(tmp_path, onnx_models):
    (tmp_path / "empty.json").write_text("[]")
    result = _entry(
        "--models", str(onnx_models[0]), "--input", str(tmp_path / "empty.json"), cwd=tmp_path
    )
    assert_one_line_error(result, "no samples")


def test_a_pytorch_model_logged_by_the_trainer_is_a_model_too(tmp_path, dataset):
    """The Runner logs `model` in MLflow's pt2 format (forward = logits): softmax is applied."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from antgo_mlflow.engine.hooks.mlflow_logger import log_torch_model

    folder, images = dataset
    torch.manual_seed(3)
    model = TinyNet().eval()
    with mlflow.start_run() as run:
        log_torch_model(
            MlflowClient(), run.info.run_id, model, np.zeros((2, 3, 32, 32), np.float32)
        )
    result = pseudo_label(
        [f"runs:/{run.info.run_id}/model"], folder, tmp_path / "out", threshold=0.5
    )
    with torch.no_grad():
        want = model.predict(torch.from_numpy(Preprocess()(list(images)))).numpy()
    assert np.abs(result.probabilities - want).max() < 1e-5
