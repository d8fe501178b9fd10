"""Meta Pseudo Labels (Pham et al., 2021) around any registered classifier.

A teacher and a student (two copies of the classifier, or a larger ``teacher_model``), one
optimizer each (``optimizer=dict(teacher=..., student=...)``: the engine's
``OptimWrapperDict``), updated in order every iteration:

1. teacher on ``[labelled, weak, strong]``: its supervised loss plus UDA consistency (soft
   targets ``softmax(weak / T)`` where the confidence reaches ``threshold``, on the strong view,
   weight ``lambda_u`` ramped over ``uda_steps``);
2. student on the teacher's hard pseudo-labels of the strong view: one optimizer step;
3. the student's labelled loss is measured again after its step; ``h = old - new`` (how much the
   pseudo-labels helped the student on real labels, the first-order MPL signal) scales the
   teacher's cross-entropy on its own pseudo-labels, added to its UDA loss: teacher step.

From iteration ``finetune_after`` on (the paper's last stage) only the student trains, on the
labelled batch; the teacher is left as it is.

The student (or its EMA copy, ``ema_decay``) is validated, logged and exported.

Logged per step: ``loss`` (teacher + student), ``loss_x`` (teacher, labelled), ``loss_u``
(teacher, UDA), ``loss_mpl``, ``loss_student``, ``mpl_h``, ``mask_ratio`` and, when the
unlabelled data secretly has labels, ``pseudo_acc`` / ``pseudo_acc_all`` (the teacher's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import build_module, config_path
from antgo_mlflow.models.semi.common import (
    ClassifierWrapper,
    check_fraction,
    check_non_negative,
    check_positive,
    check_sources,
    check_threshold,
    confidence_mask,
    detached,
    ema_decay_at,
    ema_update,
    make_ema,
    masked_consistency,
    pseudo_label_logs,
    split_sources,
    supervised_loss,
    unlabeled_views,
)
from antgo_mlflow.registry import MODELS

NETWORKS = ("teacher", "student")


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be a positive integer, got {value!r}")
    return value


def mpl_signal(loss_l_old: torch.Tensor, loss_l_new: torch.Tensor) -> torch.Tensor:
    """``h``: the drop of the student's labelled loss over its pseudo-label step (detached)."""
    return (loss_l_old - loss_l_new).detach()


def mpl_teacher_loss(logits_strong: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``h * CE(teacher's strong logits, its own argmax)``: descending it makes the teacher's
    pseudo-labels more likely when they helped the student (h > 0), less when they hurt."""
    hard = logits_strong.detach().argmax(dim=-1)
    return h * F.cross_entropy(logits_strong, hard)


@MODELS.register_module()
class MetaPseudoLabels(ClassifierWrapper):
    """Meta Pseudo Labels (see the module docstring).

    Args:
        model: MODELS config of the classifier (the student; the teacher too by default).
        teacher_model: MODELS config of a different teacher (None: a copy of ``model``'s).
        threshold: UDA confidence threshold, in (0, 1].
        T: UDA temperature of the teacher's soft targets (> 0).
        lambda_u: weight of the teacher's UDA loss (>= 0).
        uda_steps: iterations over which that weight ramps up linearly (>= 1).
        mu: unlabelled-to-labelled batch ratio (> 0), checked against the loaders.
        label_smoothing: of the student's loss on the pseudo-labels, in [0, 1].
        ema_decay: decay of an EMA copy of the student that is validated and saved (None:
            the student itself).
        ema_warmup: ramp the EMA decay up over the first updates.
        finetune_after: from this iteration on, fine-tune the student on the labelled batch
            alone (None: MPL to the end).
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        teacher_model: Mapping[str, Any] | None = None,
        threshold: float = 0.6,
        T: float = 0.7,
        lambda_u: float = 8.0,
        uda_steps: int = 5000,
        mu: float = 7,
        label_smoothing: float = 0.0,
        ema_decay: float | None = None,
        ema_warmup: bool = True,
        finetune_after: int | None = None,
    ):
        super().__init__()
        path = config_path("model")
        self.threshold = check_threshold(threshold, f"{path}.threshold")
        self.T = check_positive(T, f"{path}.T")
        self.lambda_u = check_non_negative(lambda_u, f"{path}.lambda_u")
        self.uda_steps = _positive_int(uda_steps, f"{path}.uda_steps")
        self.finetune_after = None
        if finetune_after is not None:
            self.finetune_after = _positive_int(finetune_after, f"{path}.finetune_after")
        self.mu = check_positive(mu, f"{path}.mu")
        self.label_smoothing = check_fraction(label_smoothing, f"{path}.label_smoothing")
        self.student = build_module(MODELS, model, f"{path}.model")
        teacher_cfg = teacher_model if teacher_model is not None else model
        self.teacher = build_module(MODELS, teacher_cfg, f"{path}.teacher_model")
        self.ema_decay = None
        self.student_ema: nn.Module | None = None
        if ema_decay is not None:
            self.ema_decay = check_fraction(ema_decay, f"{path}.ema_decay")
            self.student_ema = make_ema(self.student)
        self.ema_warmup = bool(ema_warmup)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def inference_prefix_of(cls, model_cfg: Mapping[str, Any]) -> str:
        return "student_ema." if model_cfg.get("ema_decay") is not None else "student."

    def inference_model(self) -> nn.Module:
        """The student (its EMA copy when ``ema_decay`` is set): validated, logged, exported."""
        return self.student_ema if self.student_ema is not None else self.student

    def check_train_setup(self, datasets, loaders, optim_wrapper) -> None:
        check_sources(datasets, loaders, "MetaPseudoLabels", views=True, mu=self.mu)
        self._wrappers(optim_wrapper)
        for name in NETWORKS:
            counts = getattr(optim_wrapper[name], "accumulative_counts", 1)
            if counts != 1:
                raise ConfigError(
                    "optimizer_config.accumulative_counts: MetaPseudoLabels measures the "
                    f"student after every step; accumulation ({counts}) is not supported"
                )

    @staticmethod
    def _wrappers(optim_wrapper):
        names = set(optim_wrapper) if isinstance(optim_wrapper, Mapping) else set()
        if names != set(NETWORKS):
            raise ConfigError(
                "optimizer: MetaPseudoLabels needs one optimizer per network: "
                "optimizer=dict(teacher=dict(type=...), student=dict(type=...))"
            )
        return optim_wrapper["teacher"], optim_wrapper["student"]

    def uda_weight(self) -> float:
        """``lambda_u`` ramped linearly over the first ``uda_steps`` iterations."""
        return self.lambda_u * min(1.0, (int(self.steps) + 1) / self.uda_steps)

    def train_step(self, batch: Mapping, optim_wrapper) -> dict[str, Any]:
        t_opt, s_opt = self._wrappers(optim_wrapper)
        lab, unl = split_sources(batch, "MetaPseudoLabels")
        if unl is None:
            check_sources({"labeled": lab}, {}, "MetaPseudoLabels")  # raises
        if self.finetune_after is not None and int(self.steps) >= self.finetune_after:
            return self.finetune_step(lab, s_opt)
        weak, strong = unlabeled_views(unl, "MetaPseudoLabels")
        x_l, y_l = lab["image"], lab["label"]
        n_l, n_u = x_l.shape[0], weak.shape[0]

        # 1. the teacher: supervised + UDA (its update waits for the student's feedback)
        with t_opt.optim_context(self.teacher):
            t_logits = self.teacher(torch.cat([x_l, weak, strong]))
        t_l, t_w, t_s = t_logits[:n_l], t_logits[n_l : n_l + n_u], t_logits[n_l + n_u :]
        loss_x = supervised_loss(self.teacher, t_l, y_l)
        mask, soft, classes = confidence_mask(t_w, self.threshold, self.T, hard=False)
        loss_u = masked_consistency(t_s, soft, mask)
        loss_uda = loss_x + self.uda_weight() * loss_u

        # 2. the student: one step on the teacher's hard pseudo-labels of the strong view
        with s_opt.optim_context(self.student):
            s_logits = self.student(torch.cat([x_l, strong]))
        loss_l_old = F.cross_entropy(s_logits[:n_l].detach().float(), y_l)
        loss_student = F.cross_entropy(
            s_logits[n_l:], classes, label_smoothing=self.label_smoothing
        )
        s_opt.update_params(loss_student)
        self.update_student_ema()

        # 3. the student's labelled loss after its step drives the teacher's MPL loss
        with torch.no_grad(), s_opt.optim_context(self.student):
            loss_l_new = F.cross_entropy(self.student(x_l).float(), y_l)
        h = mpl_signal(loss_l_old, loss_l_new)
        loss_mpl = mpl_teacher_loss(t_s, h)
        loss_teacher = loss_uda + loss_mpl
        t_opt.update_params(loss_teacher)
        self.steps += 1

        logs = {
            "loss": loss_teacher + loss_student,
            "loss_x": loss_x,
            "loss_u": loss_u,
            "loss_mpl": loss_mpl,
            "loss_student": loss_student,
            "mpl_h": h,
        }
        logs.update(pseudo_label_logs(classes, mask, unl))
        return detached(logs)

    def update_student_ema(self) -> None:
        """One EMA step of the exported copy towards the student (when ``ema_decay`` is set)."""
        if self.student_ema is not None:
            decay = ema_decay_at(self.ema_decay, int(self.steps), self.ema_warmup)
            ema_update(self.student_ema, self.student, decay)

    def finetune_step(self, lab: Mapping, s_opt) -> dict[str, Any]:
        """One supervised step of the student on the labelled batch; the teacher does not move."""
        with s_opt.optim_context(self.student):
            logits = self.student(lab["image"])
        loss = supervised_loss(self.student, logits, lab["label"])
        s_opt.update_params(loss)
        self.update_student_ema()
        self.steps += 1
        return detached({"loss": loss, "loss_student": loss})
