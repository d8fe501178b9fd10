"""Knowledge distillation (Hinton et al., 2015) from a frozen teacher into any registered classifier.

The teacher is any model the shared loader resolves (``runs:/<id>``, ``models:/<name>@<alias>``,
a ``.pth`` checkpoint, a PyTorch MLflow model), by default the project's lead expert,
``models:/<project>@champion``. It is built through MODELS (``PretrainedModel``, registered by
``antgo_mlflow.inference.teacher``) so this layer never imports the loader; it stays frozen, in
eval mode and outside the state dict (checkpoints hold the student only).

The student is trained on ``alpha * KD(T) + (1 - alpha) * CE``: the cross-entropy on the
labelled batch, the KD term ``T^2 * KL(teacher || student)`` at temperature ``T`` on the labelled
*and* unlabelled images (unlabelled images get only the KD term; ``threshold`` > 0 keeps only
those the teacher is confident about). ``feature_weight`` > 0 adds a feature-matching term
(MSE between the student's embedding, through a learned linear map, and the teacher's).
The student is what is validated, logged, exported and registered.

Logged per step: ``loss``, ``loss_x`` (CE), ``loss_kd``, ``loss_feat`` (with features),
``mask_ratio`` (unlabelled images kept) and, when the unlabelled data secretly has labels,
``pseudo_acc`` / ``pseudo_acc_all`` (the teacher's accuracy on them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from antgo_mlflow import env
from antgo_mlflow.errors import AntgoError, ConfigError
from antgo_mlflow.models._build import build_module, config_path
from antgo_mlflow.models.base import as_steps
from antgo_mlflow.models.semi.common import (
    ClassifierWrapper,
    check_fraction,
    check_non_negative,
    check_positive,
    check_sources,
    confidence_mask,
    detached,
    pseudo_label_logs,
    single_view,
    split_sources,
    supervised_loss,
)
from antgo_mlflow.registry import MODELS

PROJECT_ENV = env.ANTGO_PROJECT  # set by `antgo train --project=...`
TEACHER_TYPE = "PretrainedModel"


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    T: float = 4.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinton's KD term: the mean over samples of ``T^2 * KL(softmax(t/T) || softmax(s/T))``
    (``weight`` (N,) multiplies each sample's term; masked samples add zero)."""
    from antgo_mlflow.models.losses import KLDivLoss

    per_sample = KLDivLoss(temperature=T, reduction="none")(student_logits, teacher_logits)
    if weight is not None:
        per_sample = per_sample * weight
    return per_sample.mean()


def default_teacher(project: str | None, path: str) -> str:
    """``models:/<project>@champion`` for ``project`` (else ``$ANTGO_PROJECT``)."""
    project = project or env.text(PROJECT_ENV)
    if not project:
        raise ConfigError(
            f"{path}.teacher: no teacher given and no project known; set {path}.teacher to a "
            f"model URI (models:/<name>@champion, runs:/<id>) or {path}.project"
        )
    return f"models:/{project}@champion"


def _num_outputs(module: nn.Module, image: torch.Tensor) -> int:
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(image)
    finally:
        module.train(was)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return int(out.shape[-1])


@MODELS.register_module()
class Distiller(ClassifierWrapper):
    """A student trained from a frozen teacher (see the module docstring).

    Args:
        model: MODELS config of the student classifier.
        teacher: a model URI or file the shared loader resolves, or a MODELS config (e.g.
            ``dict(type='PretrainedModel', uri=..., from_checkpoint=True)``); None:
            ``models:/<project>@champion``.
        project: the project whose champion is the default teacher (default ``$ANTGO_PROJECT``).
        alpha: weight of the KD term, in [0, 1] (``1 - alpha`` weighs the cross-entropy).
        T: distillation temperature (> 0).
        threshold: teacher confidence an unlabelled image needs to be distilled on, in [0, 1]
            (0: every image).
        feature_weight: weight of the feature-matching term (>= 0; > 0 loads the teacher from
            its checkpoint, which has ``extract_features``).
        input_size: (H, W) of the probe image that compares the class counts, when the teacher
            does not say which size it takes.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        teacher: str | Mapping[str, Any] | None = None,
        project: str | None = None,
        alpha: float = 0.9,
        T: float = 4.0,
        threshold: float = 0.0,
        feature_weight: float = 0.0,
        input_size: Sequence[int] = (32, 32),
    ):
        super().__init__()
        path = config_path("model")
        self.alpha = check_fraction(alpha, f"{path}.alpha")
        self.T = check_positive(T, f"{path}.T")
        self.threshold = check_fraction(threshold, f"{path}.threshold")
        self.feature_weight = check_non_negative(feature_weight, f"{path}.feature_weight")
        self.student = build_module(MODELS, model, f"{path}.model")
        teacher_module = self._build_teacher(teacher, project, path)
        self._teacher = [teacher_module]  # a list: not a sub-module, not in the state dict
        size = tuple(getattr(teacher_module, "input_size", None) or input_size)
        probe = torch.zeros(2, 3, int(size[0]), int(size[1]))
        n_teacher = getattr(teacher_module, "num_classes", None) or _num_outputs(
            teacher_module, probe
        )
        n_student = _num_outputs(self.student, probe)
        if n_teacher != n_student:
            raise ConfigError(
                f"{path}.teacher: {self.teacher_uri} predicts {n_teacher} classes, the student "
                f"({path}.model) {n_student}"
            )
        self.feature_proj: nn.Module | None = None
        if self.feature_weight > 0:
            self.feature_proj = self._projection(teacher_module, probe, path)

    # -- the teacher ----------------------------------------------------------------------------
    def _build_teacher(self, teacher, project, path: str) -> nn.Module:
        if teacher is None:
            teacher = default_teacher(project, path)
        if isinstance(teacher, str):
            self.teacher_uri = teacher
            teacher = {"type": TEACHER_TYPE, "uri": teacher}
            if self.feature_weight > 0:
                teacher["from_checkpoint"] = True
        elif isinstance(teacher, Mapping):
            self.teacher_uri = str(teacher.get("uri") or teacher.get("type"))
        else:
            raise ConfigError(f"{path}.teacher: expected a model URI or a dict, got {teacher!r}")
        try:
            module = MODELS.build(dict(teacher), path=f"{path}.teacher")
        except AntgoError as exc:
            if str(exc).startswith(f"{path}.teacher"):
                raise
            raise ConfigError(f"{path}.teacher: {exc}") from None
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()
        return module

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (not part of the state dict)."""
        return self._teacher[0]

    def _teacher_on(self, device: torch.device) -> nn.Module:
        teacher = self._teacher[0]
        first = next(iter(teacher.parameters()), None)
        if first is not None and first.device != device:
            self._teacher[0] = teacher = teacher.to(device)
        return teacher

    def _projection(self, teacher: nn.Module, probe: torch.Tensor, path: str) -> nn.Module:
        if not callable(getattr(teacher, "extract_features", None)):
            raise ConfigError(
                f"{path}.feature_weight: the teacher {self.teacher_uri} gives no features; "
                f"use {path}.teacher=dict(type='{TEACHER_TYPE}', uri=..., from_checkpoint=True)"
            )
        was = self.student.training
        self.student.eval()
        with torch.no_grad():
            d_s = as_steps(self.student).extract_features({"image": probe}).shape[1]
            d_t = teacher.extract_features({"image": probe}).shape[1]
        self.student.train(was)
        return nn.Linear(int(d_s), int(d_t))

    # -- the contract ---------------------------------------------------------------------------
    @classmethod
    def inference_prefix_of(cls, model_cfg: Mapping[str, Any]) -> str:
        return "student."

    def inference_model(self) -> nn.Module:
        """The student: validated, logged, exported and registered."""
        return self.student

    def check_train_setup(self, datasets, loaders, optim_wrapper) -> None:
        check_sources(datasets, loaders, "Distiller", unlabeled="optional")

    def train_step(self, batch: Mapping, optim_wrapper) -> dict[str, Any]:
        lab, unl = split_sources(batch, "Distiller")
        x_l = lab["image"]
        teacher = self._teacher_on(x_l.device)
        images = [x_l] if unl is None else [x_l, single_view(unl)]
        x = torch.cat(images)
        n_l = x_l.shape[0]
        with optim_wrapper.optim_context(self):
            s_logits = self.student(x)
            with torch.no_grad():
                t_logits = teacher(x)
        t_logits = (t_logits[0] if isinstance(t_logits, (list, tuple)) else t_logits).float()
        loss_x = supervised_loss(self.student, s_logits[:n_l], lab["label"])
        weight = torch.ones(x.shape[0], device=x.device)
        logs: dict[str, Any] = {}
        if unl is not None:
            mask, _, classes = confidence_mask(t_logits[n_l:], self.threshold)
            weight[n_l:] = mask
            logs.update(pseudo_label_logs(classes, mask, unl))
        loss_kd = kd_loss(s_logits, t_logits, self.T, weight)
        loss = self.alpha * loss_kd + (1.0 - self.alpha) * loss_x
        if self.feature_proj is not None:
            loss_feat = self._feature_loss(teacher, x, optim_wrapper)
            loss = loss + self.feature_weight * loss_feat
            logs["loss_feat"] = loss_feat
        optim_wrapper.update_params(loss)
        logs.update({"loss": loss, "loss_x": loss_x, "loss_kd": loss_kd})
        return detached(logs)

    def _feature_loss(self, teacher: nn.Module, x: torch.Tensor, optim_wrapper) -> torch.Tensor:
        with optim_wrapper.optim_context(self):
            f_s = self.feature_proj(as_steps(self.student).extract_features({"image": x}))
            with torch.no_grad():
                f_t = teacher.extract_features({"image": x})
        return F.mse_loss(f_s.float(), f_t.float())
