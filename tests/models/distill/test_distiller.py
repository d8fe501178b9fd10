"""Distiller: the KD term, the teacher from a real registry alias, what is trained and exported."""

from __future__ import annotations

import math

import pytest
import torch

from antgo_mlflow.engine.optim_wrapper import build_optim_wrapper
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models.distill.distiller import Distiller, kd_loss
from antgo_mlflow.registry import MODELS
from tests.teachers import WRN, register_teacher


def test_kd_loss_matches_a_hand_computed_value():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[3.0, 2.0, 1.0], [2.0, 0.0, 0.0]])
    T = 2.0

    def softmax(row):
        e = [math.exp(v / T) for v in row]
        return [v / sum(e) for v in e]

    per_sample = []
    for sr, tr in zip(s.tolist(), t.tolist()):
        ps, pt = softmax(sr), softmax(tr)
        per_sample.append(T * T * sum(q * math.log(q / p) for p, q in zip(ps, pt)))
    assert kd_loss(s, t, T).item() == pytest.approx(sum(per_sample) / 2, rel=1e-5)
    weighted = kd_loss(s, t, T, weight=torch.tensor([1.0, 0.0])).item()
    assert weighted == pytest.approx(per_sample[0] / 2, rel=1e-5)  # masked: adds zero


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A SQLite store with models:/digits-t@champion (10 classes)."""
    import os

    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        register_teacher("digits-t", num_classes=10)
    finally:
        if old is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old
    return uri


@pytest.fixture
def store(registry, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    return registry


def _batch(n_l=4, n_u=6):
    return {
        "labeled": {"image": torch.randn(n_l, 3, 32, 32), "label": torch.randint(0, 10, (n_l,))},
        "unlabeled": {"image": torch.randn(n_u, 3, 32, 32), "label": torch.randint(0, 10, (n_u,))},
    }


def test_the_teacher_is_the_projects_champion_from_the_registry(store, monkeypatch):
    monkeypatch.setenv("ANTGO_PROJECT", "digits-t")
    model = MODELS.build(dict(type="Distiller", model=WRN), path="model")
    assert model.teacher_uri == "models:/digits-t@champion"
    assert model.teacher.num_classes == 10
    assert not any(k.startswith("teacher") for k in model.state_dict())  # the student only
    wrapper = build_optim_wrapper(model, dict(type="SGD", lr=0.01), None, torch.device("cpu"))
    assert {id(p) for p in wrapper.params()} == {id(p) for p in model.student.parameters()}
    frozen = [p.clone() for p in model.teacher.parameters()]
    logs = model.train_step(_batch(), wrapper)
    assert {"loss", "loss_x", "loss_kd", "mask_ratio", "pseudo_acc", "pseudo_acc_all"} <= set(logs)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.teacher.parameters()))
    assert model.inference_model() is model.student
    assert Distiller.inference_spec(dict(type="Distiller", model=WRN)) == (WRN, "student.")


def test_loss_is_alpha_kd_plus_one_minus_alpha_ce(store):
    model = MODELS.build(
        dict(type="Distiller", model=WRN, teacher="models:/digits-t@champion", alpha=0.25),
        path="model",
    )
    wrapper = build_optim_wrapper(model, dict(type="SGD", lr=0.0), None, torch.device("cpu"))
    logs = model.train_step(_batch(), wrapper)
    expected = 0.25 * logs["loss_kd"] + 0.75 * logs["loss_x"]
    assert logs["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_confidence_threshold_masks_unlabelled_images(store):
    model = MODELS.build(
        dict(type="Distiller", model=WRN, teacher="models:/digits-t@champion", threshold=1.0),
        path="model",
    )
    wrapper = build_optim_wrapper(model, dict(type="SGD", lr=0.0), None, torch.device("cpu"))
    assert model.train_step(_batch(), wrapper)["mask_ratio"].item() == 0.0  # none is sure


def five_class_checkpoint(path):
    """A .pth checkpoint of a 5-class WRN-10-1, its config recorded as data (as the Runner does)."""
    cfg = dict(WRN, backbone=dict(WRN["backbone"], num_classes=5))
    model = MODELS.build(cfg, path="model")
    torch.save({"meta": {"config_dict": {"model": cfg}}, "state_dict": model.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("which", ["unresolved", "five classes"])
def test_a_teacher_that_does_not_fit_is_refused_before_training(store, tmp_path, which):
    if which == "unresolved":
        teacher = "models:/nowhere@champion"
        fragment = "model.teacher: model URI 'models:/nowhere@champion' does not resolve"
    else:
        teacher = five_class_checkpoint(tmp_path / "five.pth")
        fragment = f"model.teacher: {teacher} predicts 5 classes, the student (model.model) 10"
    with pytest.raises(ConfigError) as info:
        MODELS.build(dict(type="Distiller", model=WRN, teacher=teacher), path="model")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_no_teacher_and_no_project_is_one_line(monkeypatch):
    monkeypatch.delenv("ANTGO_PROJECT", raising=False)
    with pytest.raises(ConfigError, match="model.teacher: no teacher given and no project known"):
        MODELS.build(dict(type="Distiller", model=WRN), path="model")


@pytest.mark.parametrize("kwargs, key", [(dict(alpha=1.5), "model.alpha"), (dict(T=0), "model.T")])
def test_bad_hyperparameters_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        MODELS.build(dict(type="Distiller", model=WRN, teacher="x", **kwargs), path="model")
