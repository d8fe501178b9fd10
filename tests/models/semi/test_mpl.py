"""Meta Pseudo Labels: the teacher's update comes from the student's labelled loss after its step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from antgo_mlflow.engine.optim_wrapper import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models.semi.mpl import MetaPseudoLabels
from antgo_mlflow.registry import MODELS
from tests.models.semi.test_fixmatch import WRN, batch, tiny_classifier

LR = 0.5


def _mpl(**kwargs):
    torch.manual_seed(0)
    student = tiny_classifier()
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    defaults = dict(threshold=0.4, T=1.0, lambda_u=0.0, uda_steps=1, mu=1.5)
    return MetaPseudoLabels(student, teacher_model=teacher, **{**defaults, **kwargs})


def _wrappers(model):
    return OptimWrapperDict(
        teacher=OptimWrapper(torch.optim.SGD(model.teacher.parameters(), lr=LR)),
        student=OptimWrapper(torch.optim.SGD(model.student.parameters(), lr=LR)),
    )


def test_the_teacher_update_uses_the_students_post_update_labelled_loss():
    model = _mpl()
    b = batch()
    x_l, y_l = b["labeled"]["image"], b["labeled"]["label"]
    weak, strong = b["unlabeled"]["image_weak"], b["unlabeled"]["image_strong"]
    teacher0, student0 = copy.deepcopy(model.teacher), copy.deepcopy(model.student)

    logs = model.train_step(b, _wrappers(model))

    # the student's step by hand: SGD on its CE against the teacher's hard pseudo-labels
    with torch.no_grad():
        pseudo = teacher0(weak).argmax(dim=1)
    student1 = copy.deepcopy(student0)
    F.cross_entropy(student1(strong), pseudo).backward()
    with torch.no_grad():
        for p in student1.parameters():
            p -= LR * p.grad
        old = F.cross_entropy(student0(x_l), y_l)
        new = F.cross_entropy(student1(x_l), y_l)
    h = old - new
    assert logs["mpl_h"].item() == pytest.approx(h.item(), abs=1e-6)
    assert abs(h.item()) > 1e-4  # the step moved the student's labelled loss

    # the teacher's step by hand: supervised CE + h * CE(strong logits, their argmax)
    def teacher_after(signal):
        t = copy.deepcopy(teacher0)
        t_s = t(strong)
        loss = F.cross_entropy(t(x_l), y_l) + signal * F.cross_entropy(t_s, t_s.detach().argmax(1))
        loss.backward()
        with torch.no_grad():
            return [p - LR * p.grad for p in t.parameters()]

    expected = teacher_after(h)
    for got, want in zip(model.teacher.parameters(), expected):
        assert torch.allclose(got, want, atol=1e-5)
    # ... and not what the student's loss *before* its step (h = 0) would have given
    unchanged = teacher_after(torch.tensor(0.0))
    assert any(
        not torch.allclose(got, u, atol=1e-5)
        for got, u in zip(model.teacher.parameters(), unchanged)
    )


def test_the_student_is_exported_and_logs_name_every_loss():
    model = MODELS.build(dict(type="MetaPseudoLabels", model=WRN, ema_decay=0.99), path="model")
    wrapper = build_optim_wrapper(
        model,
        dict(teacher=dict(type="SGD", lr=0.01), student=dict(type="SGD", lr=0.01)),
        None,
        torch.device("cpu"),
    )
    logs = model.train_step(batch(n_l=2, n_u=4, size=32, classes=10), wrapper)
    assert {"loss", "loss_x", "loss_u", "loss_mpl", "loss_student", "mpl_h", "mask_ratio"} <= set(
        logs
    )
    assert model.inference_model() is model.student_ema
    assert MetaPseudoLabels.inference_spec(dict(type="MetaPseudoLabels", model=WRN)) == (
        WRN,
        "student.",
    )
    assert set(wrapper) == {"teacher", "student"}


def test_from_finetune_after_only_the_student_trains_on_the_labelled_batch():
    model = _mpl(finetune_after=1)
    wrappers = _wrappers(model)
    b = batch()
    first = model.train_step(b, wrappers)  # iteration 0: an MPL step
    assert "mpl_h" in first
    teacher1, student1 = copy.deepcopy(model.teacher), copy.deepcopy(model.student)

    logs = model.train_step(b, wrappers)  # iteration 1: fine-tuning

    x_l, y_l = b["labeled"]["image"], b["labeled"]["label"]
    F.cross_entropy(student1(x_l), y_l).backward()
    with torch.no_grad():
        expected = [p - LR * p.grad for p in student1.parameters()]
    for got, want in zip(model.student.parameters(), expected):
        assert torch.allclose(got, want, atol=1e-6)
    for got, before in zip(model.teacher.parameters(), teacher1.parameters()):
        assert torch.equal(got, before)
    assert set(logs) == {"loss", "loss_student"}
    assert int(model.steps) == 2


def test_one_optimizer_for_both_networks_is_refused():
    model = MODELS.build(dict(type="MetaPseudoLabels", model=WRN), path="model")
    single = build_optim_wrapper(model, dict(type="SGD", lr=0.1), None, torch.device("cpu"))
    with pytest.raises(ConfigError, match="optimizer=dict\\(teacher=dict"):
        model.train_step(batch(n_l=2, n_u=4, size=32, classes=10), single)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(threshold=0.0), "model.threshold"),
        (dict(mu=0), "model.mu"),
        (dict(uda_steps=0), "model.uda_steps"),
        (dict(finetune_after=0), "model.finetune_after"),
        (dict(finetune_after=2.5), "model.finetune_after"),
    ],
)
def test_bad_hyperparameters_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        MODELS.build(dict(type="MetaPseudoLabels", model=WRN, **kwargs), path="model")
