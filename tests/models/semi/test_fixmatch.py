"""FixMatch: the confidence mask, the EMA copy, what is validated and exported, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from antgo_mlflow.engine.optim_wrapper import OptimWrapper
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models.semi.fixmatch import FixMatch, fixmatch_unsup_loss
from antgo_mlflow.registry import MODELS

WRN = dict(
    type="ImageClassifier",
    backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1),
    head=dict(type="ClsHead"),
)


def tiny_classifier(classes: int = 3) -> nn.Module:
    """A BN-free classifier on (N, 3, 2, 2) images: every update is exactly predictable."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, classes))


def batch(n_l=4, n_u=6, size=2, classes=3, secret=True):
    g = torch.Generator().manual_seed(1)
    unl = {
        "image_weak": torch.randn(n_u, 3, size, size, generator=g),
        "image_strong": torch.randn(n_u, 3, size, size, generator=g),
    }
    if secret:
        unl["label"] = torch.randint(0, classes, (n_u,), generator=g)
    return {
        "labeled": {
            "image": torch.randn(n_l, 3, size, size, generator=g),
            "label": torch.randint(0, classes, (n_l,), generator=g),
        },
        "unlabeled": unl,
    }


def test_only_samples_above_the_threshold_contribute_to_the_unlabelled_loss():
    # row 0: confident class 0 (p ~ 1); row 1: below 0.95; row 2: confident class 2
    weak = torch.tensor([[9.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 8.0]])
    strong = torch.tensor([[0.5, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 1.0, 0.2]], requires_grad=True)
    loss, mask, classes = fixmatch_unsup_loss(weak, strong, threshold=0.95)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    assert classes.tolist() == [0, 0, 2]
    expected = (
        F.cross_entropy(strong[0:1], torch.tensor([0]))
        + F.cross_entropy(strong[2:3], torch.tensor([2]))
    ) / 3  # the mean over the whole batch: a masked sample adds zero
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-6)
    loss.backward()
    assert torch.all(strong.grad[1] == 0)  # the unconfident sample pulls nothing
    assert strong.grad[0].abs().sum() > 0 and strong.grad[2].abs().sum() > 0


def test_nothing_confident_means_no_unlabelled_loss():
    weak = torch.zeros(4, 3)  # uniform: p = 1/3 < threshold
    strong = torch.randn(4, 3, requires_grad=True)
    loss, mask, _ = fixmatch_unsup_loss(weak, strong, threshold=0.5)
    assert loss.item() == 0.0 and mask.sum() == 0


def test_ema_weights_follow_the_decay():
    model = FixMatch(tiny_classifier(), threshold=0.5, mu=1.5, ema_decay=0.9, ema_warmup=False)
    start = [p.detach().clone() for p in model.model.parameters()]
    wrapper = OptimWrapper(torch.optim.SGD(model.model.parameters(), lr=0.5))
    logs = model.train_step(batch(), wrapper)
    trained = [p.detach().clone() for p in model.model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(start, trained))
    for ema, s, t in zip(model.ema_model.parameters(), start, trained):
        assert torch.allclose(ema, 0.9 * s + 0.1 * t, atol=1e-6)
    second_start = trained
    model.train_step(batch(), wrapper)
    previous_ema = [0.9 * s + 0.1 * t for s, t in zip(start, second_start)]
    for ema, prev, t in zip(model.ema_model.parameters(), previous_ema, model.model.parameters()):
        assert torch.allclose(ema, 0.9 * prev + 0.1 * t.detach(), atol=1e-6)
    assert int(model.ema_updates) == 2
    assert {"loss", "loss_x", "loss_u", "mask_ratio", "pseudo_acc", "pseudo_acc_all"} <= set(logs)


def test_the_ema_decay_warms_up_from_the_first_updates():
    model = FixMatch(tiny_classifier(), mu=1.5, ema_decay=0.999)  # warm-up on by default
    start = [p.detach().clone() for p in model.model.parameters()]
    model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.model.parameters(), lr=0.5)))
    decay = 1 / 10  # min(0.999, (1 + 0) / (10 + 0))
    for ema, s, t in zip(model.ema_model.parameters(), start, model.model.parameters()):
        assert torch.allclose(ema, decay * s + (1 - decay) * t.detach(), atol=1e-6)


def test_validation_and_export_use_the_ema_classifier():
    model = MODELS.build(dict(type="FixMatch", model=WRN), path="model").eval()
    with torch.no_grad():
        for p in model.ema_model.parameters():
            p.add_(torch.randn_like(p))
    image = torch.randn(3, 3, 32, 32)
    preds = model.val_step({"image": image})
    assert len(preds) == 3
    ema_probs = torch.softmax(model.ema_model(image), dim=1)
    assert torch.allclose(preds[0]["pred_score"], ema_probs[0], atol=1e-6)
    assert not torch.allclose(torch.softmax(model.model(image), dim=1), ema_probs)
    assert model.inference_model() is model.ema_model
    assert torch.allclose(model(image), model.ema_model(image))
    spec = FixMatch.inference_spec(dict(type="FixMatch", model=WRN))
    assert spec == (WRN, "ema_model.")
    assert FixMatch.inference_spec(dict(type="FixMatch", model=WRN, ema_decay=None))[1] == "model."


def test_the_optimizer_sees_the_trained_classifier_only():
    from antgo_mlflow.engine.optim_wrapper import build_optim_wrapper

    model = MODELS.build(dict(type="FixMatch", model=WRN), path="model")
    wrapper = build_optim_wrapper(model, dict(type="SGD", lr=0.1), None, torch.device("cpu"))
    assert {id(p) for p in wrapper.params()} == {id(p) for p in model.model.parameters()}


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(threshold=0), "model.threshold: must be in (0, 1]"),
        (dict(threshold=1.2), "model.threshold: must be in (0, 1]"),
        (dict(mu=0), "model.mu: must be > 0"),
        (dict(mu=-3), "model.mu: must be > 0"),
        (dict(lambda_u=-1), "model.lambda_u"),
        (dict(ema_decay=1.5), "model.ema_decay"),
        (dict(dist_align=True, dist_align_momentum=2), "model.dist_align_momentum"),
    ],
)
def test_bad_hyperparameters_name_their_key(kwargs, key):
    with pytest.raises(ConfigError) as info:
        MODELS.build(dict(type="FixMatch", model=WRN, **kwargs), path="model")
    assert key in str(info.value) and "\n" not in str(info.value)


def test_distribution_alignment_lifts_the_classes_the_model_under_predicts():
    from antgo_mlflow.models.semi.common import DistributionAlignment

    align = DistributionAlignment(momentum=0.5).train()
    # the model puts 0.6 of its mass on class 0 on average: class 0 is over-predicted
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.4, 0.3]])
    aligned = align(probs)
    p_model = 0.5 * torch.full((3,), 1 / 3) + 0.5 * probs.mean(0)
    assert torch.allclose(align.p_model, p_model)
    expected = probs / p_model
    assert torch.allclose(aligned, expected / expected.sum(-1, keepdim=True))
    assert aligned[1].argmax() == 1 and aligned[1, 0] < probs[1, 0]  # mass moves off class 0
    assert torch.allclose(aligned.sum(-1), torch.ones(2))
    # in eval mode the running average stays where training left it
    align.eval()
    align(torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.allclose(align.p_model, p_model)


def test_distribution_alignment_changes_which_pseudo_labels_pass_and_resumes():
    # class 0 dominates the weak predictions: without alignment row 1 passes as class 0
    weak = torch.log(torch.tensor([[0.97, 0.02, 0.01], [0.90, 0.09, 0.01], [0.96, 0.02, 0.02]]))
    strong = torch.zeros(3, 3)
    _, plain, _ = fixmatch_unsup_loss(weak, strong, threshold=0.85)
    model = FixMatch(
        tiny_classifier(), mu=1.5, threshold=0.85, dist_align=True, dist_align_momentum=0.5
    )
    _, aligned, _ = fixmatch_unsup_loss(weak, strong, 0.85, align=model.dist_align)
    assert plain.tolist() == [1.0, 1.0, 1.0] and aligned.tolist() == [1.0, 0.0, 1.0]
    # a resumed run continues the running average (a buffer of the checkpoint)
    resumed = FixMatch(tiny_classifier(), mu=1.5, threshold=0.85, dist_align=True)
    resumed.load_state_dict(model.state_dict())
    assert torch.equal(resumed.dist_align.p_model, model.dist_align.p_model)
    logs = model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert "mask_ratio" in logs
