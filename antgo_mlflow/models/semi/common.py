"""What the semi-supervised and distillation algorithms share.

* ``ClassifierWrapper``: a ``BaseModel`` around a plain classifier whose inference (val/test
  steps, ``forward``, ``predict``, features, the logged and exported model) is one inner
  classifier's: the EMA copy (FixMatch) or the student (MPL, distillation).
* checks of the hyper-parameters and of the training sources, run before any training step;
* the loss pieces on logits (supervised loss through the classifier's own head, the
  confidence mask, the consistency loss), the EMA update, and the pseudo-label statistics each
  algorithm logs per step.

Batches: the loop hands the model ``{"labeled": batch, "unlabeled": batch}``; the labelled batch
has ``image`` and ``label``; the unlabelled one ``image_weak`` / ``image_strong`` (a dataset with
``weak_pipeline`` / ``strong_pipeline``) or ``image``, and ``label`` only when the data secretly
has labels (-1 = no label, as in the GT format's ``image_label``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.models.base import (
    BaseModel,
    as_steps,
    class_probabilities,
    parse_losses,
)

LABELED, UNLABELED = "labeled", "unlabeled"


# -- hyper-parameters ---------------------------------------------------------------------------
def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return float(value)


def check_threshold(value: Any, key: str) -> float:
    """A confidence threshold in (0, 1]."""
    value = _number(value, key)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{key}: must be in (0, 1], got {value:g}")
    return value


def check_positive(value: Any, key: str) -> float:
    """A number > 0 (``mu``, ``T``)."""
    value = _number(value, key)
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {value:g}")
    return value


def check_non_negative(value: Any, key: str) -> float:
    """A number >= 0 (loss weights)."""
    value = _number(value, key)
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value:g}")
    return value


def check_fraction(value: Any, key: str) -> float:
    """A number in [0, 1] (``alpha``, ``ema_decay``)."""
    value = _number(value, key)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}: must be in [0, 1], got {value:g}")
    return value


# -- sources --------------------------------------------------------------------------------------
def split_sources(batch: Any, algorithm: str) -> tuple[Mapping, Mapping | None]:
    """``(labelled batch, unlabelled batch or None)`` of one iteration."""
    if isinstance(batch, Mapping) and LABELED in batch:
        return batch[LABELED], batch.get(UNLABELED)
    if isinstance(batch, Mapping) and "image" in batch:
        return batch, None  # one source: labelled only
    names = ", ".join(map(str, batch)) if isinstance(batch, Mapping) else type(batch).__name__
    raise ConfigError(
        f"data.train: {algorithm} expects sources named {LABELED!r} and {UNLABELED!r}, got {names}"
    )


def _views(dataset) -> bool:
    return getattr(dataset, "weak_pipeline", None) is not None or (
        getattr(dataset, "strong_pipeline", None) is not None
    )


def check_sources(
    datasets: Mapping[str, Any],
    loaders: Mapping[str, Any],
    algorithm: str,
    unlabeled: str = "required",
    views: bool = False,
    mu: float | None = None,
) -> None:
    """Check the training sources before the first step (one-line ConfigError naming the key).

    Args:
        datasets, loaders: ``{source name: dataset / DataLoader}`` as the Runner built them.
        algorithm: named in messages.
        unlabeled: ``"required"`` or ``"optional"``.
        views: the unlabelled source must give weak and strong views.
        mu: the unlabelled-to-labelled batch ratio the loaders must have (None: any).
    """
    from antgo_mlflow.data.label_scan import has_labels

    names = set(datasets)
    if names == {"train"}:  # one unnamed source: it is the labelled one
        datasets, loaders = {LABELED: datasets["train"]}, {LABELED: loaders.get("train")}
    if LABELED not in datasets:
        raise ConfigError(
            f"data.train: {algorithm} needs a source named {LABELED!r} "
            f"(data.train=dict({LABELED}=..., {UNLABELED}=...)), got {', '.join(sorted(names))}"
        )
    extra = set(datasets) - {LABELED, UNLABELED}
    if extra:
        raise ConfigError(
            f"data.train.{sorted(extra)[0]}: {algorithm} uses only "
            f"{LABELED!r} and {UNLABELED!r} sources"
        )
    if not has_labels(datasets[LABELED]):
        raise DataError(
            f"data.train.{LABELED}: no sample has a label (image_label); the labelled source "
            "of semi-supervised training needs labels"
        )
    if UNLABELED not in datasets:
        if unlabeled == "required":
            raise ConfigError(
                f"data.train.{UNLABELED}: {algorithm} needs an unlabelled source "
                f"(data.train.{UNLABELED}=dict(...), or 'antgo add train/unlabel' + the "
                "project's semi settings)"
            )
        return
    if views and not _views(datasets[UNLABELED]):
        raise ConfigError(
            f"data.train.{UNLABELED}.strong_pipeline: {algorithm} needs weak and strong views "
            "of the unlabelled images (weak_pipeline=[...], strong_pipeline=[...])"
        )
    if mu is not None:
        n_l = getattr(loaders.get(LABELED), "batch_size", None)
        n_u = getattr(loaders.get(UNLABELED), "batch_size", None)
        if n_l and n_u and n_u != round(mu * n_l):
            raise ConfigError(
                f"data.{UNLABELED}_dataloader.samples_per_gpu: {n_u} is not mu={mu:g} x "
                f"data.{LABELED}_dataloader.samples_per_gpu={n_l} (set it to {round(mu * n_l)}, "
                "or change model.mu)"
            )


def unlabeled_views(unl: Mapping, algorithm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weak, strong)`` images of an unlabelled batch."""
    if "image_weak" in unl and "image_strong" in unl:
        return unl["image_weak"], unl["image_strong"]
    raise ConfigError(
        f"data.train.{UNLABELED}.strong_pipeline: {algorithm} needs weak and strong views "
        "(the batch has no image_weak/image_strong)"
    )


def single_view(unl: Mapping) -> torch.Tensor:
    """The image of an unlabelled batch (its weak view when it has two)."""
    return unl["image"] if "image" in unl else unl["image_weak"]


# -- losses ---------------------------------------------------------------------------------------
def supervised_loss(model: nn.Module, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The classifier's own loss on ``logits`` (its ``head.loss``), else cross-entropy."""
    head = getattr(model, "head", None)
    if callable(getattr(head, "loss", None)):
        total, _ = parse_losses(head.loss(logits, label), model)
        return total
    return F.cross_entropy(logits, label)


def confidence_mask(
    logits_weak: torch.Tensor,
    threshold: float,
    T: float = 1.0,
    hard: bool = True,
    align: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pseudo-labels from weak-view logits (no gradient), on ``softmax(logits / T)`` (passed
    through ``align``, e.g. a ``DistributionAlignment``, when given).

    Returns:
        ``(mask (N,) float: max probability >= threshold, targets: class indices (N,) when
        ``hard`` else those probabilities (N, C), argmax classes (N,))``.
    """
    with torch.no_grad():
        probs = torch.softmax(logits_weak.detach().float() / T, dim=-1)
        if align is not None:
            probs = align(probs)
        max_probs, classes = probs.max(dim=-1)
        mask = (max_probs >= threshold).float()
    return mask, (classes if hard else probs), classes


def masked_consistency(
    logits_strong: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of ``CE(strong logits, pseudo-label) * mask`` (masked samples add 0)."""
    if targets.dim() == 1:
        per_sample = F.cross_entropy(logits_strong, targets, reduction="none")
    else:
        per_sample = -(targets * F.log_softmax(logits_strong, dim=-1)).sum(dim=-1)
    return (per_sample * mask).mean()


class DistributionAlignment(nn.Module):
    """Distribution alignment (ReMixMatch, Berthelot et al. 2020): pseudo-label probabilities
    scaled by ``uniform / p_model`` and renormalised, where ``p_model`` is a moving average
    (``momentum``) of the model's mean prediction on unlabelled data. With 4 labels per class a
    class that absorbs its neighbours' images is over-predicted; this pulls those images back.

    ``p_model`` is a buffer (sized by the first batch), so a resumed run continues it.
    """

    def __init__(self, momentum: float = 0.999):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("p_model", torch.empty(0))

    @torch.no_grad()
    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        n_classes = probs.shape[-1]
        if self.p_model.numel() != n_classes:
            self.p_model = torch.full((n_classes,), 1.0 / n_classes, device=probs.device)
        if self.training:
            mean = probs.mean(dim=0)
            self.p_model.mul_(self.momentum).add_(mean, alpha=1.0 - self.momentum)
        aligned = probs / (n_classes * self.p_model.clamp(min=1e-6))
        return aligned / aligned.sum(dim=-1, keepdim=True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "p_model")
        if saved is not None and saved.shape != self.p_model.shape:
            self.p_model = torch.empty_like(saved)  # sized like the checkpoint's, then copied
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# -- EMA --------------------------------------------------------------------------------------------
def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` for the exponential moving average."""
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


def ema_decay_at(decay: float, updates: int, warmup: bool) -> float:
    """The decay of update number ``updates`` (0-based): ramped as ``(1+n)/(10+n)`` with
    ``warmup``, so a short run's average is not dominated by its random start."""
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers (BN) are copied."""
    for e, m in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(decay).add_(m.detach(), alpha=1.0 - decay)
    for e, m in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(m)


def stepped(optim_wrapper) -> bool:
    """Whether the last ``update_params`` call stepped the optimizer (not an accumulation)."""
    check = getattr(optim_wrapper, "should_update", None)
    return bool(check()) if callable(check) else True


# -- logs -------------------------------------------------------------------------------------------
def pseudo_label_logs(
    classes: torch.Tensor, mask: torch.Tensor | None, unl: Mapping
) -> dict[str, torch.Tensor]:
    """``mask_ratio`` and, when the unlabelled batch secretly has labels (>= 0),
    ``pseudo_acc`` (accuracy of the accepted pseudo-labels; 0 while none is accepted, so the
    key is in every step and every process) and ``pseudo_acc_all`` (accuracy of the argmax over
    every sample with a label)."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if mask is not None:
            out["mask_ratio"] = mask.float().mean()
        label = unl.get("label") if isinstance(unl, Mapping) else None
        if not isinstance(label, torch.Tensor) or label.dim() != 1:
            return out
        known = label >= 0
        if not bool(known.any()):
            return out
        correct = (classes == label) & known
        out["pseudo_acc_all"] = correct.float().sum() / known.float().sum()
        if mask is not None:
            accepted = known & (mask > 0)
            hits = (correct & accepted).float().sum()
            out["pseudo_acc"] = hits / accepted.float().sum().clamp(min=1.0)
    return out


def detached(values: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars to log: tensors detached (the LogBuffer keeps them on the device)."""
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in values.items()}


# -- the wrapper ------------------------------------------------------------------------------------
class ClassifierWrapper(BaseModel):
    """An algorithm around a classifier: inference is ``inference_model()``'s (see the module
    docstring). Subclasses set ``inference_prefix`` (the state-dict prefix of that classifier)
    and ``inner_key`` (the config key holding the classifier's config)."""

    inner_key = "model"

    @classmethod
    def inference_spec(cls, model_cfg: Mapping[str, Any]) -> tuple[dict, str] | None:
        """``(classifier config, state-dict prefix)`` that rebuild the exported classifier
        from this wrapper's config and checkpoint, without building the wrapper."""
        inner = model_cfg.get(cls.inner_key)
        if not isinstance(inner, Mapping):
            return None
        return dict(inner), cls.inference_prefix_of(model_cfg)

    @classmethod
    def inference_prefix_of(cls, model_cfg: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def inference_model(self) -> nn.Module:
        raise NotImplementedError

    def forward(self, image: torch.Tensor, label: torch.Tensor | None = None, **kwargs):
        """The inference classifier's forward: logits, or its loss dict with ``label``."""
        model = self.inference_model()
        return model(image) if label is None else model(image, label=label, **kwargs)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return class_probabilities(self.inference_model(), image)

    def val_step(self, batch: Mapping) -> list[dict]:
        return as_steps(self.inference_model()).val_step(batch)

    def test_step(self, batch: Mapping) -> list[dict]:
        return as_steps(self.inference_model()).test_step(batch)

    def extract_features(self, batch: Mapping) -> torch.Tensor:
        return as_steps(self.inference_model()).extract_features(batch)
