"""``BaseModel``: the model contract the engine's loops call (mmengine's, kept small).

A loop only ever calls ``model.train_step(batch, optim_wrapper)``, ``model.val_step(batch)``,
``model.test_step(batch)`` and (active learning) ``model.extract_features(batch)``; what a batch
holds is between the model and its data. The defaults here are supervised classification:

* ``train_step``: ``self(image, label=label, **other tensor fields)`` under
  ``optim_wrapper.optim_context(self)`` returns a loss dict; every ``loss*`` entry is summed,
  ``optim_wrapper.update_params(total)`` backpropagates and steps, and the scalar entries are
  returned to be logged (``loss`` = the total).
* ``val_step`` / ``test_step``: one ``{"pred_score": (C,) probabilities, "pred_label": int}``
  per sample (``self.predict(image)`` when the model has it, else softmax of ``self(image)``).
* ``extract_features``: the embedding before the head, (N, D).
* ``labelled_sources(names)``: the training sources whose samples need a class label (the single
  source, or ``labeled``); the engine refuses samples without one before the first step.

An algorithm (FixMatch, a distiller, a detector) overrides what differs: its ``train_step``
receives ``{"labeled": batch, "unlabeled": batch}`` when ``data.train`` names several sources,
and may step an ``OptimWrapperDict``'s members in its own order. Wrappers also override
``inference_model()`` (what is logged and exported), ``inference_spec()`` (how loaders rebuild
that module from a checkpoint) and ``check_train_setup()`` (bad sources fail before step one). A plain ``nn.Module`` that
returns a loss dict (antgo's contract) trains unchanged: ``as_steps`` wraps it without changing
its ``state_dict``.

Example:
    >>> class MyModel(BaseModel):
    ...     def train_step(self, batch, optim_wrapper):
    ...         loss = self.loss(batch["labeled"]) + self.unsup(batch["unlabeled"])
    ...         optim_wrapper.update_params(loss)
    ...         return {"loss": loss}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from antgo_mlflow.errors import ConfigError, DataError


def parse_losses(outputs: Any, model: nn.Module | None = None) -> tuple[torch.Tensor, dict]:
    """A forward's loss dict -> (the sum of its ``loss*`` entries, the scalars to log)."""
    total = None
    if isinstance(outputs, Mapping):
        for key, value in outputs.items():
            if not str(key).startswith("loss"):
                continue
            if isinstance(value, (list, tuple)):
                value = sum(v.mean() for v in value)
            total = value if total is None else total + value
    if total is None:
        name = type(model).__name__ if model is not None else "the model"
        raise ConfigError(
            f"model.type: {name} returned {type(outputs).__name__} when called with label=; "
            "expected a dict with 'loss*' entries"
        )
    scalars = {k: v for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
    scalars["loss"] = total
    return total, scalars


def _single_source(batch: Any, what: str) -> Mapping:
    if not isinstance(batch, Mapping) or "image" not in batch:
        if isinstance(batch, Mapping) and all(isinstance(v, Mapping) for v in batch.values()):
            raise ConfigError(
                f"data.train: several sources ({', '.join(map(str, batch))}) need a model whose "
                "train_step takes them (e.g. a semi-supervised algorithm)"
            )
        raise DataError(f"{what}: samples need an 'image' field")
    return batch


def supervised_train_step(model: nn.Module, batch: Mapping, optim_wrapper) -> dict:
    """The default training step (see the module docstring) for any loss-dict module."""
    batch = _single_source(batch, "data.train")
    if "label" not in batch:
        raise DataError("data.train: samples need 'image' and 'label' fields")
    extra = {
        k: v
        for k, v in batch.items()
        if k not in ("image", "label") and isinstance(v, torch.Tensor)
    }
    with optim_wrapper.optim_context(model):
        outputs = model(batch["image"], label=batch["label"], **extra)
    loss, scalars = parse_losses(outputs, model)
    optim_wrapper.update_params(loss)
    return scalars


def class_probabilities(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """(N, C) probabilities: ``model.predict(image)``, else softmax of ``model(image)``."""
    if hasattr(model, "predict"):
        return model.predict(image)
    return torch.softmax(model(image), dim=-1)


def classification_predictions(model: nn.Module, batch: Mapping, what: str = "data.val") -> list:
    """One ``{"pred_score", "pred_label"}`` dict per sample of ``batch``."""
    image = _single_source(batch, what)["image"]
    scores = class_probabilities(model, image).float()
    if scores.dim() == 1:
        scores = scores[:, None]
    labels = scores.argmax(dim=1).tolist()
    return [
        {"pred_score": s, "pred_label": int(k)}
        for s, k in zip(scores.unbind(0), labels, strict=True)
    ]


def pooled_features(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """(N, D) embedding: ``model.extract_feat(image)`` (last map, average-pooled) if it has one."""
    if hasattr(model, "extract_feat"):
        x = model.extract_feat(image)
    else:
        x = model(image)
    if isinstance(x, (list, tuple)):
        x = x[-1]
    if x.dim() == 4:
        x = x.mean(dim=(2, 3))
    return x.flatten(1)


def labelled_sources(model: Any, names: Sequence[str]) -> list[str]:
    """The supervised default of ``labelled_sources``: the single training source, or the one
    named ``labeled``; none for a model whose ``task`` is not classification (a detector)."""
    if getattr(model, "task", "classification") != "classification":
        return []
    names = list(names)
    return names if len(names) == 1 else [n for n in names if n == "labeled"]


class BaseModel(nn.Module):
    """Base class of models: override ``train_step`` / ``val_step`` / ``extract_features``.

    Subclasses that keep the defaults implement ``forward(image, label=None, **kw)`` (a loss
    dict with ``label``, logits without) and optionally ``predict(image)`` (probabilities).
    """

    def train_step(self, batch: Mapping, optim_wrapper) -> dict[str, Any]:
        """Compute the losses, update the parameters, return the scalars to log."""
        return supervised_train_step(self, batch, optim_wrapper)

    def val_step(self, batch: Mapping) -> list[dict]:
        """One prediction dict per sample (classification: ``pred_score``, ``pred_label``)."""
        return classification_predictions(self, batch, "data.val")

    def test_step(self, batch: Mapping) -> list[dict]:
        """``val_step`` unless overridden."""
        return self.val_step(batch)

    def extract_features(self, batch: Mapping) -> torch.Tensor:
        """The embedding before the head, (N, D)."""
        return pooled_features(self, _single_source(batch, "data")["image"])

    def labelled_sources(self, names: Sequence[str]) -> list[str]:
        """The training sources (of ``names``) whose samples must all carry a class label; the
        engine checks them before the first step. Override when the model needs other labels
        (boxes) or none (return ``[]``)."""
        return labelled_sources(self, names)

    # -- optional: what wrappers (semi-supervised, distillation) override ------------------------
    def inference_model(self) -> nn.Module:
        """The module that is logged, exported and registered (this model itself by default; a
        semi-supervised or distillation wrapper returns its EMA copy or its student)."""
        return self

    @classmethod
    def inference_spec(cls, model_cfg: Mapping[str, Any]) -> tuple[dict, str] | None:
        """``(config, state-dict prefix)`` that rebuild ``inference_model()`` from this model's
        config and checkpoint without building this model (None: build this model itself)."""
        return None

    def check_train_setup(self, datasets: Mapping, loaders: Mapping, optim_wrapper) -> None:
        """Called once before the first step with the training sources (``{name: dataset}``,
        ``{name: DataLoader}``) and the optimizer wrapper; raises ConfigError on a bad setup."""


class PlainModelSteps:
    """``BaseModel``'s default steps for a plain ``nn.Module`` (not itself a module: the wrapped
    model's ``state_dict``, checkpoints and exports stay exactly as they were)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def train_step(self, batch: Mapping, optim_wrapper) -> dict[str, Any]:
        return supervised_train_step(self.module, batch, optim_wrapper)

    def val_step(self, batch: Mapping) -> list[dict]:
        return classification_predictions(self.module, batch, "data.val")

    def test_step(self, batch: Mapping) -> list[dict]:
        return classification_predictions(self.module, batch, "data.test")

    def extract_features(self, batch: Mapping) -> torch.Tensor:
        return pooled_features(self.module, _single_source(batch, "data")["image"])

    def labelled_sources(self, names: Sequence[str]) -> list[str]:
        own = getattr(self.module, "labelled_sources", None)
        return own(names) if callable(own) else labelled_sources(self.module, names)

    def train(self, mode: bool = True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)


def as_steps(model: nn.Module):
    """``model`` itself when it has ``train_step`` (a ``BaseModel``), else ``PlainModelSteps``."""
    if callable(getattr(model, "train_step", None)):
        return model
    return PlainModelSteps(model)
