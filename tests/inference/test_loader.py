"""The model loader: every load path refuses code from a checkpoint; predictors expose what
consumers need (probabilities, embeddings, class count/names, a frozen teacher).

Checkpoints, runs, registered models and ONNX files are real (a SQLite MLflow store, ONNX
Runtime); the "hostile" checkpoint's config text would write a marker file if it ever ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from antgo_mlflow.errors import DataError, UsageError
from tests.helpers import assert_one_line_error

MODEL = dict(
    type="ImageClassifier",
    backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1, bn_momentum=0.1),
    head=dict(type="ClsHead"),
)
PLUGIN = "antgo_test_evil_plugin"


class TinyNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4, classes)

    def forward(self, image):
        return self.fc(self.conv(image).relu().mean((2, 3)))

    def predict(self, image):
        return self.forward(image).softmax(1)


class _Ran:
    """Unpickling this writes the marker: what a hostile pickle-format model would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _model(seed: int = 0):
    from antgo_mlflow.registry import MODELS

    torch.manual_seed(seed)
    return MODELS.build(dict(MODEL)).eval()


@dataclass
class Hostile:
    root: Path
    uri: str
    marker: Path
    text_ckpt: Path  # config recorded as Python text that writes the marker
    data_ckpt: Path  # config data naming custom_imports of a module that writes the marker
    run_id: str  # a run whose checkpoints/best.pth is text_ckpt
    onnx_alias: str  # models:/…@champion: an ONNX model logged to that run
    pickle_alias: str  # models:/…@champion: a pickle-format PyTorch model that writes the marker


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Hostile:
    import mlflow
    from mlflow.tracking import MlflowClient

    from antgo_mlflow.export.onnx import export_onnx, log_onnx_model
    from tests.conftest import _reset_mlflow_globals

    root = tmp_path_factory.mktemp("hostile")
    marker = root / "code-ran"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    state = _model().state_dict()
    text = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nmodel = {MODEL!r}\n"
    text_ckpt = root / "text.pth"
    torch.save({"meta": {"config": text}, "state_dict": state}, text_ckpt)
    (root / f"{PLUGIN}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
    )
    data_ckpt = root / "data.pth"
    torch.save(
        {
            "meta": {
                "config_dict": {
                    "custom_imports": {"imports": [PLUGIN]},
                    "model": {"type": "EvilNet"},
                }
            },
            "state_dict": state,
        },
        data_ckpt,
    )
    onnx = export_onnx(TinyNet().eval(), root / "tiny.onnx", opset=17)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)  # the store's artifacts (./mlruns) go here, not into the repository
        _reset_mlflow_globals()
        client = MlflowClient()
        with mlflow.start_run() as run:
            (root / "ckpts").mkdir()
            best = root / "ckpts" / "best.pth"
            best.write_bytes(text_ckpt.read_bytes())
            client.log_artifact(run.info.run_id, str(best), "checkpoints")
            info = log_onnx_model(onnx, registered_model_name="hostile-onnx")
        client.set_registered_model_alias("hostile-onnx", "champion", info.registered_model_version)
        bad = TinyNet()
        bad.payload = _Ran(str(marker))
        with mlflow.start_run():
            info = mlflow.pytorch.log_model(
                bad,
                name="model",
                serialization_format="pickle",
                pip_requirements=["torch"],
                registered_model_name="hostile-pickle",
            )
        client.set_registered_model_alias(
            "hostile-pickle", "champion", info.registered_model_version
        )
        _reset_mlflow_globals()
    assert not marker.exists()
    return Hostile(
        root,
        uri,
        marker,
        text_ckpt,
        data_ckpt,
        run.info.run_id,
        "models:/hostile-onnx@champion",
        "models:/hostile-pickle@champion",
    )


@pytest.fixture
def use_hostile(hostile, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", hostile.uri)
    monkeypatch.syspath_prepend(str(hostile.root))  # the plugin module is importable
    monkeypatch.chdir(hostile.root)
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    yield hostile
    sys.modules.pop(PLUGIN, None)
    hostile.marker.unlink(missing_ok=True)


class _Result:
    def __init__(self, proc):
        self.code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr

    def __repr__(self):
        return f"_Result({self.code}, {self.stderr[-1500:]!r})"


def _entry(name: str, *args: str, h: Hostile) -> _Result:
    env = dict(os.environ, MLFLOW_TRACKING_URI=h.uri, ANTGO_PROGRESS="0")
    env.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", None)
    return _Result(
        subprocess.run(
            [sys.executable, "-m", f"antgo_mlflow.entrypoints.{name}", *args],
            cwd=h.root,  # the plugin module lies here: `python -m` could import it
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    )


def _gt(h: Hostile) -> Path:
    from PIL import Image

    from antgo_mlflow.gt import new_sample, save_gt

    folder = h.root / "unlabeled"
    if not folder.exists():
        (folder / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "images" / "0.png")
        save_gt(folder / "annotation.json", [new_sample(image_file="images/0.png")])
    return folder / "annotation.json"


def _api(call):
    def run(h: Hostile):
        with pytest.raises(UsageError) as info:
            call(h)
        return str(info.value)

    return run


def _cli(name, *args):
    def run(h: Hostile):
        argv = [a(h) if callable(a) else a for a in args]
        if name == "pseudo_label":
            argv += ["--input", str(_gt(h)), "--output", str(h.root / "out")]
        result = _entry(name, *argv, h=h)
        assert result.code == 2, result
        assert_one_line_error(result)
        assert not (h.root / "out").exists()
        return result.stderr

    return run


def _load(uri_of, **kw):
    from antgo_mlflow.inference import load_model

    return _api(lambda h: load_model(uri_of(h), **kw))


def _build(path):
    from antgo_mlflow.inference import build_from_checkpoint

    return build_from_checkpoint(path)


def _teacher(path):
    from antgo_mlflow.inference import load_torch_module

    return load_torch_module(str(path))


def _export(path, output):
    from antgo_mlflow.export.workflow import export_model

    return export_model(checkpoint=path, output=output, log=False)


_TEXT = "records its config as Python text"
_IMPORTS = "custom_imports"
_PICKLE = "pickle-format"
CASES = {
    "loader .pth": (_load(lambda h: str(h.text_ckpt)), _TEXT),
    "loader custom_imports": (_load(lambda h: str(h.data_ckpt)), _IMPORTS),
    "loader runs:/<id>": (_load(lambda h: f"runs:/{h.run_id}"), _TEXT),
    "loader runs:/<id>/file.pth": (
        _load(lambda h: f"runs:/{h.run_id}/checkpoints/best.pth"),
        _TEXT,
    ),
    "loader models:/@alias from_checkpoint": (
        _load(lambda h: h.onnx_alias, from_checkpoint=True),
        _TEXT,
    ),
    "loader models:/@alias pickle": (_load(lambda h: h.pickle_alias), _PICKLE),
    "build_from_checkpoint": (_api(lambda h: _build(h.text_ckpt)), _TEXT),
    "teacher": (_api(lambda h: _teacher(h.text_ckpt)), _TEXT),
    "export_model()": (_api(lambda h: _export(h.text_ckpt, h.root / "x.onnx")), _TEXT),
    "export --checkpoint": (_cli("export", "--checkpoint", lambda h: str(h.text_ckpt)), _TEXT),
    "export --checkpoint custom_imports": (
        _cli("export", "--checkpoint", lambda h: str(h.data_ckpt)),
        _IMPORTS,
    ),
    "export --run-id": (_cli("export", "--run-id", lambda h: h.run_id), _TEXT),
    "pseudo-label .pth": (_cli("pseudo_label", "--models", lambda h: str(h.text_ckpt)), _TEXT),
    "pseudo-label runs:/": (_cli("pseudo_label", "--models", lambda h: f"runs:/{h.run_id}"), _TEXT),
    "pseudo-label models:/@alias": (
        _cli("pseudo_label", "--models", lambda h: h.pickle_alias),
        _PICKLE,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoint_config_never_executes(use_hostile, case):
    attempt, fragment = CASES[case]
    message = attempt(use_hostile)
    assert fragment in message
    assert "--trust-checkpoint-config" in message or _PICKLE in message
    assert not use_hostile.marker.exists(), f"{case}: code from the checkpoint ran"
    assert not (use_hostile.root / "x.onnx").exists()


def test_trusting_an_old_checkpoint_is_explicit_and_then_it_loads(use_hostile):
    from antgo_mlflow.inference import load_model

    predictor = load_model(str(use_hostile.text_ckpt), trust_checkpoint_config=True)
    assert use_hostile.marker.read_text() == "ran"  # the user asked for it
    assert predictor.num_classes == 10


def test_a_config_the_user_passes_builds_an_old_checkpoint(use_hostile, tmp_path):
    from antgo_mlflow.inference import load_model

    own = tmp_path / "config.py"
    own.write_text(f"model = {MODEL!r}\n")
    predictor = load_model(str(use_hostile.text_ckpt), config=str(own))
    assert predictor.predict_proba([np.zeros((32, 32, 3), np.uint8)]).shape == (1, 10)
    assert not use_hostile.marker.exists()


# -- what the predictors expose -------------------------------------------------------------------
@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint as the Runner writes it (config as data, with class names and a Normalize)."""
    from antgo_mlflow.config import Config

    model = _model(1)
    cfg = Config(
        dict(
            model=MODEL,
            class_names=[f"d{i}" for i in range(10)],
            data=dict(test=dict(pipeline=[dict(type="Normalize", mean=[0.5] * 3, std=[0.25] * 3)])),
        )
    )
    path = tmp_path / "best.pth"
    torch.save({"meta": {"config_dict": cfg.to_data()}, "state_dict": model.state_dict()}, path)
    return path, model


def _images(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_predictor_gives_probabilities_embeddings_and_class_names(checkpoint):
    from antgo_mlflow.inference import Preprocess, load_model

    path, model = checkpoint
    predictor = load_model(str(path), batch_size=2)
    assert (predictor.num_classes, predictor.class_names[3]) == (10, "d3")
    assert predictor.preprocess.mean == (0.5, 0.5, 0.5)  # the training preprocessing
    images = _images()
    x = torch.from_numpy(Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3)(images))
    with torch.no_grad():  # the model contract's embedding (today's extract_feat before it)
        if hasattr(model, "extract_features"):
            want_f = model.extract_features({"image": x}).numpy()
        else:
            want_f = model.extract_feat(x).numpy()
        want_p = model.predict(x).numpy()
    probs, feats = predictor.proba_and_features(iter(images))  # a lazy stream, in 3 batches
    assert np.abs(probs - want_p).max() < 1e-5 and np.abs(feats - want_f).max() < 1e-4
    assert np.abs(predictor.extract_features(images) - want_f).max() < 1e-4
    preds = predictor.predict(images)
    assert [p["pred_label"] for p in preds] == list(want_p.argmax(1))
    assert preds[0]["pred_score"].shape == (10,)


def test_a_teacher_is_a_frozen_module_giving_logits(checkpoint):
    from antgo_mlflow.inference import load_torch_module

    path, model = checkpoint
    teacher = load_torch_module(str(path))
    student = nn.ModuleDict({"teacher": teacher, "head": nn.Linear(2, 2)})
    student.train()  # what the Runner does each epoch
    assert not teacher.training and not teacher.inner.training
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(teacher(x), model(x), atol=1e-5)


def test_an_onnx_model_gives_no_embeddings_in_one_line(tmp_path):
    from antgo_mlflow.export.onnx import export_onnx
    from antgo_mlflow.inference import load_model, load_torch_module

    path = export_onnx(TinyNet().eval(), tmp_path / "m.onnx", opset=17).path
    predictor = load_model(str(path))
    assert predictor.num_classes == 10 and not predictor.has_features
    with pytest.raises(UsageError, match="runs:/<run id>"):
        predictor.extract_features(_images(2))
    with pytest.raises(UsageError, match="not a torch module"):
        load_torch_module(str(path))
    with pytest.raises(UsageError, match="known: classification"):
        load_model(str(path), task="segmentation")


def test_models_that_disagree_on_the_class_count_fail_in_one_line(tmp_path):
    from antgo_mlflow.export.onnx import export_onnx
    from antgo_mlflow.inference import load_models

    ten = export_onnx(TinyNet(10).eval(), tmp_path / "ten.onnx", opset=17).path
    four = export_onnx(TinyNet(4).eval(), tmp_path / "four.onnx", opset=17).path
    with pytest.raises(DataError) as info:
        load_models([str(ten), str(four)])
    assert "disagree on the number of classes" in str(info.value)
    assert f"{ten} has 10" in str(info.value) and f"{four} has 4" in str(info.value)


def test_a_registered_model_can_be_rebuilt_from_its_runs_checkpoint(
    checkpoint, tmp_path, monkeypatch
):
    """models:/name@alias of an exported ONNX model -> the training run's full torch model."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from antgo_mlflow.export.onnx import export_onnx, log_onnx_model
    from antgo_mlflow.inference import load_model

    path, model = checkpoint
    monkeypatch.chdir(tmp_path)  # the store's artifacts (./mlruns) go here
    onnx = export_onnx(model, tmp_path / "m.onnx", opset=17)  # the quicker exporter
    client = MlflowClient()
    with mlflow.start_run() as run:
        client.log_artifact(run.info.run_id, str(path), "checkpoints")
        # the training run's params: where a model without preprocess metadata gets it from
        mlflow.log_params({"data.test.pipeline.0.type": "Normalize"})
        mlflow.log_params({"data.test.pipeline.0.mean": "[0.5, 0.5, 0.5]"})
        mlflow.log_params({"data.test.pipeline.0.std": "[0.25, 0.25, 0.25]"})
        info = log_onnx_model(onnx, registered_model_name="digits")
    client.set_registered_model_alias("digits", "champion", info.registered_model_version)

    logged = load_model("models:/digits@champion")
    assert logged.flavor == "onnx" and logged.info.run_id == run.info.run_id
    assert load_model(info.model_uri).info.kind == "mlflow-onnx"  # models:/m-<id>
    assert info.model_uri.startswith("models:/m-")
    assert logged.preprocess.std == (0.25, 0.25, 0.25)
    rebuilt = load_model("models:/digits@champion", from_checkpoint=True)
    assert rebuilt.flavor == "pytorch" and rebuilt.has_features
    assert rebuilt.info.checkpoint.endswith("best.pth")
    images = _images(4)
    assert np.abs(rebuilt.predict_proba(images) - logged.predict_proba(images)).max() < 1e-4
    bare = load_model(f"runs:/{run.info.run_id}")  # the run's checkpoint
    assert bare.info.kind == "checkpoint" and bare.class_names[0] == "d0"
