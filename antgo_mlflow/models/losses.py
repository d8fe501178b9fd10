"""Classification losses registered in LOSSES (cross-entropy, BCE, focal, label smoothing, KL).

Every loss is an ``nn.Module`` called as ``loss(pred, target, weight=None)``:
``pred`` are logits (N, C); ``target`` is either class indices (N,) or a float matrix (N, C) of
soft labels (Mixup/CutMix, distillation); ``weight`` is an optional per-sample weight (N,).
The result is multiplied by ``loss_weight``. ``activation`` tells a head how to turn logits into
probabilities for this loss ('softmax' or 'sigmoid').

Example:
    >>> from antgo_mlflow.registry import LOSSES
    >>> ce = LOSSES.build(dict(type="CrossEntropyLoss", label_smoothing=0.1))
    >>> ce(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.models._build import as_float_list, config_path
from antgo_mlflow.registry import LOSSES

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str, path: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ConfigError(f"{path}.reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(loss: torch.Tensor, reduction: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Apply per-sample ``weight`` (N,) to a per-sample ``loss`` (N,) and reduce it."""
    if weight is not None:
        loss = loss * weight.to(loss.dtype)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _as_target(pred: torch.Tensor, target: torch.Tensor, path: str = "loss") -> torch.Tensor:
    """Normalise labels: (N,1) -> (N,); float class indices -> long; soft (N,C) kept as float."""
    if target.dim() == 2 and target.shape[1] == 1 and pred.shape[1] != 1:
        target = target[:, 0]
    if target.dim() == 1:
        return target.long()
    if target.shape != pred.shape:
        raise ConfigError(
            f"{path}: soft labels have shape {tuple(target.shape)} but the model predicts "
            f"{tuple(pred.shape)} (check num_classes)"
        )
    return target.to(pred.dtype)


def _bad_labels(pred: torch.Tensor, target: torch.Tensor, ignore_index: int) -> DataError | None:
    """A DataError for index labels outside the predicted classes (None if they are fine).

    Called only after torch failed, so a correct batch pays nothing.
    """
    if target.dim() != 1 or target.is_floating_point():
        return None
    bad = target[(target != ignore_index) & ((target < 0) | (target >= pred.shape[1]))]
    if not bad.numel():
        return None
    value = int(bad[0])
    hint = (
        " (image_label -1 means 'no image class': is this a detection GT given to a classifier?)"
        if value == -1
        else ""
    )
    return DataError(
        f"data.train: label {value} is not a class index in 0..{pred.shape[1] - 1}{hint}"
    )


def _one_hot(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    return F.one_hot(target.clamp(min=0), num_classes).to(dtype)


class _ClassWeighted(nn.Module):
    """Holds ``class_weight`` as a buffer and checks its length against the predictions."""

    activation = "softmax"

    def __init__(self, class_weight, path: str, loss_weight: float, reduction: str):
        super().__init__()
        self._path = path
        self.loss_weight = float(loss_weight)
        self.reduction = _check_reduction(reduction, path)
        weights = as_float_list(class_weight, f"{path}.class_weight")
        # A buffer follows .to(device) and lands in checkpoints; None keeps state_dict empty.
        self.register_buffer(
            "class_weight", None if weights is None else torch.tensor(weights), persistent=False
        )

    def _weights_for(self, pred: torch.Tensor) -> torch.Tensor | None:
        if self.class_weight is None:
            return None
        if self.class_weight.numel() != pred.shape[1]:
            raise ConfigError(
                f"{self._path}.class_weight: has {self.class_weight.numel()} values but the model "
                f"predicts {pred.shape[1]} classes"
            )
        return self.class_weight.to(pred.dtype)


@LOSSES.register_module()
class CrossEntropyLoss(_ClassWeighted):
    """Softmax cross-entropy on class indices or soft labels (same numbers as ``F.cross_entropy``).

    Args:
        loss_weight: multiplier of the result.
        class_weight: one weight per class (rare classes up-weighted), e.g. ``[100, 3, 1, 2]``.
        label_smoothing: epsilon of label smoothing (0 = off).
        reduction: 'mean', 'sum' or 'none'.
        use_soft: True makes index labels one-hot first (soft labels are always accepted).
        ignore_index: index labels equal to it add no loss (index labels only).
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        class_weight=None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        use_soft: bool = False,
        ignore_index: int = -100,
    ):
        path = config_path("loss")
        super().__init__(class_weight, path, loss_weight, reduction)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ConfigError(
                f"{path}.label_smoothing: expected 0 <= value < 1, got {label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)
        self.use_soft = bool(use_soft)
        self.ignore_index = int(ignore_index)

    def forward(self, pred, target, weight=None):
        target = _as_target(pred, target, self._path)
        if self.use_soft and target.dim() == 1:
            target = _one_hot(target, pred.shape[1], pred.dtype)
        try:
            loss = F.cross_entropy(
                pred,
                target,
                weight=self._weights_for(pred),
                label_smoothing=self.label_smoothing,
                ignore_index=self.ignore_index,
                reduction="none" if weight is not None else self.reduction,
            )
        except (IndexError, RuntimeError) as exc:
            problem = _bad_labels(pred, target, self.ignore_index)
            if problem is None:
                raise
            raise problem from exc
        if weight is not None:
            loss = _reduce(loss, self.reduction, weight)
        return self.loss_weight * loss


@LOSSES.register_module()
class BCELoss(_ClassWeighted):
    """Sigmoid binary cross-entropy per class (multi-label heads); index labels become one-hot.

    Args:
        loss_weight: multiplier of the result.
        class_weight: one weight per class, multiplies each class's term.
        pos_weight: one weight per class for positive examples (``BCEWithLogitsLoss``'s pos_weight).
        reduction: 'mean' (over samples and classes, like torch), 'sum' or 'none' (per sample).
    """

    activation = "sigmoid"

    def __init__(
        self, loss_weight: float = 1.0, class_weight=None, pos_weight=None, reduction: str = "mean"
    ):
        path = config_path("loss")
        super().__init__(class_weight, path, loss_weight, reduction)
        pos = as_float_list(pos_weight, f"{path}.pos_weight")
        self.register_buffer(
            "pos_weight", None if pos is None else torch.tensor(pos), persistent=False
        )

    def forward(self, pred, target, weight=None):
        target = _as_target(pred, target, self._path)
        if target.dim() == 1:
            target = _one_hot(target, pred.shape[1], pred.dtype)
        pos = None if self.pos_weight is None else self.pos_weight.to(pred.dtype)
        loss = F.binary_cross_entropy_with_logits(
            pred, target, weight=self._weights_for(pred), pos_weight=pos, reduction="none"
        )
        if self.reduction == "mean" and weight is None:
            return self.loss_weight * loss.mean()
        return self.loss_weight * _reduce(loss.mean(dim=1), self.reduction, weight)


@LOSSES.register_module()
class FocalLoss(_ClassWeighted):
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` (Lin et al.), down-weighting easy samples.

    Args:
        gamma: focusing parameter (0 gives cross-entropy / BCE).
        alpha: weight of positives (sigmoid form: ``alpha`` for 1s, ``1 - alpha`` for 0s;
            softmax form: a plain multiplier). None turns it off.
        use_sigmoid: False (default) = softmax focal loss for single-label classification, mean
            over samples; True = sigmoid focal loss per class (as in RetinaNet / mmcls), mean
            over samples and classes.
        loss_weight, class_weight, reduction: as in CrossEntropyLoss.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        use_sigmoid: bool = False,
        loss_weight: float = 1.0,
        class_weight=None,
        reduction: str = "mean",
    ):
        path = config_path("loss")
        super().__init__(class_weight, path, loss_weight, reduction)
        if float(gamma) < 0:
            raise ConfigError(f"{path}.gamma: expected >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.use_sigmoid = bool(use_sigmoid)
        self.activation = "sigmoid" if self.use_sigmoid else "softmax"

    def forward(self, pred, target, weight=None):
        target = _as_target(pred, target, self._path)
        if target.dim() == 1:
            target = _one_hot(target, pred.shape[1], pred.dtype)
        class_weight = self._weights_for(pred)
        if self.use_sigmoid:
            prob = pred.sigmoid()
            bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
            p_t = prob * target + (1 - prob) * (1 - target)
            loss = bce * (1 - p_t).pow(self.gamma)
            if self.alpha is not None:
                loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))
            if class_weight is not None:
                loss = loss * class_weight
            if self.reduction == "mean" and weight is None:
                return self.loss_weight * loss.mean()
            return self.loss_weight * _reduce(loss.mean(dim=1), self.reduction, weight)
        log_prob = F.log_softmax(pred, dim=1)
        loss = -target * (1 - log_prob.exp()).pow(self.gamma) * log_prob
        if class_weight is not None:
            loss = loss * class_weight
        if self.alpha is not None:
            loss = loss * self.alpha
        return self.loss_weight * _reduce(loss.sum(dim=1), self.reduction, weight)


@LOSSES.register_module()
class LabelSmoothingLoss(_ClassWeighted):
    """Cross-entropy against smoothed labels ``(1 - eps) * one_hot + eps / C`` (mmcls 'original').

    Args:
        label_smooth_val: epsilon.
        mode: 'original' (eps spread over all C classes) or 'classy_vision'
            (eps / (C - 1) on the other classes, 1 - eps on the true class).
        loss_weight, class_weight, reduction: as in CrossEntropyLoss.
    """

    def __init__(
        self,
        label_smooth_val: float = 0.1,
        mode: str = "original",
        loss_weight: float = 1.0,
        class_weight=None,
        reduction: str = "mean",
    ):
        path = config_path("loss")
        super().__init__(class_weight, path, loss_weight, reduction)
        if not 0.0 <= float(label_smooth_val) < 1.0:
            raise ConfigError(
                f"{path}.label_smooth_val: expected 0 <= value < 1, got {label_smooth_val}"
            )
        if mode not in ("original", "classy_vision"):
            raise ConfigError(f"{path}.mode: expected 'original' or 'classy_vision', got {mode!r}")
        self.eps = float(label_smooth_val)
        self.mode = mode

    def forward(self, pred, target, weight=None):
        target = _as_target(pred, target, self._path)
        num_classes = pred.shape[1]
        if target.dim() == 1:
            target = _one_hot(target, num_classes, pred.dtype)
        if self.mode == "original":
            smooth = target * (1 - self.eps) + self.eps / num_classes
        else:
            smooth = target * (1 - self.eps) + (1 - target) * self.eps / max(num_classes - 1, 1)
        class_weight = self._weights_for(pred)
        loss = -smooth * F.log_softmax(pred, dim=1)
        if class_weight is not None:
            loss = loss * class_weight
        return self.loss_weight * _reduce(loss.sum(dim=1), self.reduction, weight)


@LOSSES.register_module()
class KLDivLoss(nn.Module):
    """Distillation loss ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    Called as ``loss(student_logits, teacher_logits)``; the teacher side is detached.

    Args:
        temperature: softening temperature T (> 0).
        loss_weight: multiplier of the result.
        reduction: 'batchmean' (the mathematically correct mean), 'mean' (over samples),
            'sum' or 'none' (per sample).
    """

    activation = "softmax"

    def __init__(
        self, temperature: float = 1.0, loss_weight: float = 1.0, reduction: str = "batchmean"
    ):
        super().__init__()
        path = config_path("loss")
        if float(temperature) <= 0:
            raise ConfigError(f"{path}.temperature: expected > 0, got {temperature}")
        if reduction not in ("batchmean", *_REDUCTIONS):
            raise ConfigError(
                f"{path}.reduction: expected batchmean/mean/sum/none, got {reduction!r}"
            )
        self._path = path
        self.temperature = float(temperature)
        self.loss_weight = float(loss_weight)
        self.reduction = reduction

    def forward(self, pred, target, weight=None):
        if target.shape != pred.shape:
            raise ConfigError(
                f"{self._path}: KLDivLoss needs teacher logits of shape {tuple(pred.shape)}, "
                f"got {tuple(target.shape)}"
            )
        t = self.temperature
        log_student = F.log_softmax(pred / t, dim=1)
        log_teacher = F.log_softmax(target.detach().to(pred.dtype) / t, dim=1)
        per_sample = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1) * (t * t)
        reduction = "mean" if self.reduction == "batchmean" else self.reduction
        return self.loss_weight * _reduce(per_sample, reduction, weight)
