"""Losses against hand-computed values and torch's functional versions; soft labels; bad configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import LOSSES

PRED = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
LABEL = torch.tensor([0, 1])
# log-sum-exp of each row, by hand
LSE = [math.log(math.e**2 + math.e + 1), math.log(2 + math.e**3)]
NLL = [LSE[0] - 2.0, LSE[1] - 0.0]


def build(**cfg):
    return LOSSES.build(cfg, path="model.head.loss")


def close(value, expected):
    assert float(value) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


def test_cross_entropy_matches_hand_values():
    close(build(type="CrossEntropyLoss")(PRED, LABEL), sum(NLL) / 2)
    close(build(type="CrossEntropyLoss", reduction="sum")(PRED, LABEL), sum(NLL))
    close(build(type="CrossEntropyLoss", loss_weight=0.5)(PRED, LABEL), sum(NLL) / 4)


def test_cross_entropy_class_weight_is_a_weighted_mean():
    loss = build(type="CrossEntropyLoss", class_weight=[2.0, 0.5, 1.0])(PRED, LABEL)
    close(loss, (2.0 * NLL[0] + 0.5 * NLL[1]) / 2.5)
    close(loss, F.cross_entropy(PRED, LABEL, weight=torch.tensor([2.0, 0.5, 1.0])))


def test_label_smoothing_matches_hand_values_and_torch():
    eps = 0.2
    means = [LSE[0] - 1.0, LSE[1] - 1.0]  # mean over classes of -log p: lse - mean(logits)
    expected = sum((1 - eps) * n + eps * m for n, m in zip(NLL, means)) / 2
    close(build(type="CrossEntropyLoss", label_smoothing=eps)(PRED, LABEL), expected)
    close(build(type="LabelSmoothingLoss", label_smooth_val=eps)(PRED, LABEL), expected)
    weight = torch.tensor([2.0, 0.5, 1.0])
    close(
        build(type="CrossEntropyLoss", label_smoothing=eps, class_weight=weight.tolist())(
            PRED, LABEL
        ),
        F.cross_entropy(PRED, LABEL, weight=weight, label_smoothing=eps),
    )


def test_label_smoothing_classy_vision_mode():
    eps = 0.3
    loss = build(type="LabelSmoothingLoss", label_smooth_val=eps, mode="classy_vision")(
        PRED[:1], LABEL[:1]
    )
    logp = [2.0 - LSE[0], 1.0 - LSE[0], 0.0 - LSE[0]]
    close(loss, -((1 - eps) * logp[0] + eps / 2 * logp[1] + eps / 2 * logp[2]))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_labels_from_mixup_are_the_mix_of_the_hard_losses(smoothing):
    lam, other = 0.7, torch.tensor([2, 0])
    soft = lam * F.one_hot(LABEL, 3).float() + (1 - lam) * F.one_hot(other, 3).float()
    ce = build(type="CrossEntropyLoss", label_smoothing=smoothing)
    close(ce(PRED, soft), lam * ce(PRED, LABEL) + (1 - lam) * ce(PRED, other))
    close(ce(PRED, soft), F.cross_entropy(PRED, soft, label_smoothing=smoothing))
    close(build(type="CrossEntropyLoss", use_soft=True)(PRED, LABEL), sum(NLL) / 2)
    ls = build(type="LabelSmoothingLoss", label_smooth_val=0.1)
    close(ls(PRED, soft), lam * ls(PRED, LABEL) + (1 - lam) * ls(PRED, other))


def test_per_sample_weight_and_ignore_index():
    ce = build(type="CrossEntropyLoss")
    close(ce(PRED, LABEL, weight=torch.tensor([1.0, 0.0])), NLL[0] / 2)
    close(ce(PRED, torch.tensor([0, -100])), NLL[0])


def test_softmax_focal_loss_matches_hand_values():
    p_t = [math.exp(-NLL[0]), math.exp(-NLL[1])]
    expected = sum(-((1 - p) ** 2) * math.log(p) for p in p_t) / 2
    close(build(type="FocalLoss", gamma=2.0, alpha=None)(PRED, LABEL), expected)
    close(build(type="FocalLoss", gamma=2.0, alpha=0.25)(PRED, LABEL), 0.25 * expected)
    # gamma = 0 without alpha is plain cross-entropy
    close(build(type="FocalLoss", gamma=0.0, alpha=None)(PRED, LABEL), sum(NLL) / 2)


def test_sigmoid_focal_loss_matches_torchvision():
    from torchvision.ops import sigmoid_focal_loss

    target = F.one_hot(LABEL, 3).float()
    expected = sigmoid_focal_loss(PRED, target, alpha=0.25, gamma=2.0, reduction="mean")
    close(build(type="FocalLoss", use_sigmoid=True)(PRED, LABEL), expected)
    x = 2.0  # one element by hand: label 1, logit 2
    p = 1 / (1 + math.exp(-x))
    close(
        build(type="FocalLoss", use_sigmoid=True, alpha=0.25)(
            torch.tensor([[x]]), torch.tensor([[1.0]])
        ),
        0.25 * (1 - p) ** 2 * -math.log(p),
    )


def test_bce_matches_torch_on_one_hot_labels():
    target = F.one_hot(LABEL, 3).float()
    close(build(type="BCELoss")(PRED, LABEL), F.binary_cross_entropy_with_logits(PRED, target))
    pos = torch.tensor([1.0, 2.0, 3.0])
    close(
        build(type="BCELoss", pos_weight=pos.tolist())(PRED, target),
        F.binary_cross_entropy_with_logits(PRED, target, pos_weight=pos),
    )
    assert build(type="BCELoss").activation == "sigmoid"


def test_kl_distillation_loss():
    student, teacher, t = PRED, torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.0, 2.0]]), 2.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        q = [math.exp(v / t) for v in s_row]
        p = [math.exp(v / t) for v in t_row]
        q = [v / sum(q) for v in q]
        p = [v / sum(p) for v in p]
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * t * t
    loss = build(type="KLDivLoss", temperature=t)
    close(loss(student, teacher), expected / 2)
    close(loss(teacher, teacher), 0.0)
    teacher_param = teacher.clone().requires_grad_()
    student_param = student.clone().requires_grad_()
    loss(student_param, teacher_param).backward()
    assert teacher_param.grad is None and student_param.grad is not None


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_takes_hard_and_soft_labels(name):
    pred = torch.randn(4, 5, requires_grad=True)
    loss = build(type=name)
    targets = [torch.tensor([0, 1, 4, 2]), torch.softmax(torch.randn(4, 5), dim=1)]
    if name == "KLDivLoss":  # distillation: the target is the teacher's logits
        targets = [torch.randn(4, 5)]
    for target in targets:
        value = loss(pred, target)
        assert value.dim() == 0 and torch.isfinite(value)
        value.backward()
        assert pred.grad is not None


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            dict(type="CrossEntropyLoss", class_weight="heavy"),
            "model.head.loss.class_weight: expected a list",
        ),
        (
            dict(type="CrossEntropyLoss", reduction="avg"),
            "model.head.loss.reduction: expected one of",
        ),
        (dict(type="FocalLoss", gamma=-1), "model.head.loss.gamma: expected >= 0"),
        (dict(type="KLDivLoss", temperature=0), "model.head.loss.temperature: expected > 0"),
        (dict(type="LabelSmoothingLoss", mode="x"), "model.head.loss.mode: expected"),
        (
            dict(type="CrossEntropyLoss", weight=[1, 2]),
            "model.head.loss.weight: CrossEntropyLoss has no argument",
        ),
    ],
)
def test_bad_loss_config_names_the_key(cfg, message):
    with pytest.raises(ConfigError) as info:
        build(**cfg)
    assert str(info.value).startswith(message), str(info.value)


def test_soft_labels_of_the_wrong_width_name_the_loss():
    with pytest.raises(ConfigError, match=r"^model\.head\.loss: soft labels have shape \(2, 4\)"):
        build(type="CrossEntropyLoss")(PRED, torch.zeros(2, 4))
    with pytest.raises(ConfigError, match=r"^model\.head\.loss: KLDivLoss needs teacher logits"):
        build(type="KLDivLoss")(PRED, LABEL)
