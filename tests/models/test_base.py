"""BaseModel: the default supervised steps, a plain module wrapped, features before the head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from antgo_mlflow.engine.optim_wrapper import build_optim_wrapper
from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.models import BaseModel, ImageClassifier, as_steps
from antgo_mlflow.registry import MODELS


def _classifier() -> ImageClassifier:
    return MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(type="WideResNet", num_classes=3, depth=10, widen_factor=1),
            head=dict(type="ClsHead"),
        ),
        path="model",
    )


def _wrapper(model):
    return build_optim_wrapper(model, dict(type="SGD", lr=0.1), None, torch.device("cpu"))


def _batch(n=4):
    return {"image": torch.randn(n, 3, 16, 16), "label": torch.arange(n) % 3}


def test_image_classifier_trains_and_predicts_through_the_default_steps():
    model = _classifier()
    assert isinstance(model, BaseModel) and as_steps(model) is model
    before = [p.detach().clone() for p in model.parameters()]
    logged = model.train_step(_batch(), _wrapper(model))
    assert set(logged) == {"loss"} and logged["loss"].dim() == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    predictions = model.val_step(_batch(5))
    assert len(predictions) == 5
    assert predictions[0]["pred_score"].shape == (3,)
    assert float(predictions[0]["pred_score"].detach().sum()) == pytest.approx(1.0)
    assert predictions[0]["pred_label"] == int(predictions[0]["pred_score"].argmax())
    assert model.test_step(_batch(2))[1].keys() == {"pred_score", "pred_label"}


def test_features_are_the_classifier_input_not_the_logits():
    model = _classifier().eval()
    features = model.extract_features(_batch(2))
    assert features.shape == (2, 64)  # WRN-10-1's last width, before its Linear


class _LossDictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 3)

    def forward(self, image, label=None, **kwargs):
        logits = self.fc(image.flatten(1))
        if label is None:
            return logits
        return {"loss_a": nn.functional.cross_entropy(logits, label), "acc": torch.tensor(0.5)}


def test_a_plain_loss_dict_module_is_wrapped_without_changing_its_state_dict():
    net = _LossDictNet()
    steps = as_steps(net)
    logged = steps.train_step(_batch(), _wrapper(net))
    assert set(logged) == {"loss_a", "acc", "loss"}
    assert set(net.state_dict()) == {"fc.weight", "fc.bias"}
    assert len(steps.val_step(_batch(3))) == 3
    assert steps.extract_features(_batch(2)).shape == (2, 3)


def test_a_forward_without_losses_or_a_batch_without_labels_is_one_clear_error():
    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 16 * 16, 3)

        def forward(self, image, label=None, **kwargs):
            return self.fc(image.flatten(1))

    net = Logits()
    with pytest.raises(ConfigError, match="model.type: Logits returned Tensor when called with"):
        as_steps(net).train_step(_batch(), _wrapper(net))
    with pytest.raises(DataError, match="data.train: samples need 'image' and 'label'"):
        as_steps(net).train_step({"image": torch.zeros(1, 3, 16, 16)}, _wrapper(net))
