"""FixMatch (Sohn et al., 2020) around any registered classifier.

Per iteration one forward of ``[labelled, weak unlabelled, strong unlabelled]`` images: the
labelled part is trained on its labels with the classifier's own loss; the weak view's most
likely class becomes the pseudo-label of its strong view wherever its probability reaches
``threshold``; the strong view is trained on those (masked cross-entropy, weight ``lambda_u``).
An EMA copy of the classifier (``ema_decay``) is what validation, test, the logged MLflow model
and export use.

Config (the strong view is the dataset's: RandAugment + cutout, see ``recipes/digits/fixmatch.py``):

    model = dict(type="FixMatch", model=dict(type="ImageClassifier", ...), threshold=0.95,
                 lambda_u=1.0, mu=7, T=1.0, ema_decay=0.999)
    data = dict(train=dict(labeled=dict(type="TFDataset", ...),
                           unlabeled=dict(type="TFDataset", weak_pipeline=[...],
                                          strong_pipeline=[...], pipeline=[...])),
                labeled_dataloader=dict(samples_per_gpu=16),
                unlabeled_dataloader=dict(samples_per_gpu=16 * 7))

Logged per step: ``loss``, ``loss_x`` (supervised), ``loss_u`` (unsupervised), ``mask_ratio``
(share of unlabelled samples accepted) and, when the unlabelled data secretly has labels,
``pseudo_acc`` (accuracy of the accepted pseudo-labels) and ``pseudo_acc_all``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from antgo_mlflow.models._build import build_module, config_path
from antgo_mlflow.models.semi.common import (
    ClassifierWrapper,
    DistributionAlignment,
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
    stepped,
    supervised_loss,
    unlabeled_views,
)
from antgo_mlflow.registry import MODELS

DEFAULT_EMA_DECAY = 0.999


def fixmatch_unsup_loss(
    logits_weak: torch.Tensor,
    logits_strong: torch.Tensor,
    threshold: float,
    T: float = 1.0,
    hard: bool = True,
    align: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FixMatch's unlabelled loss: ``(loss, mask, pseudo classes)``; only samples whose weak-view
    confidence reaches ``threshold`` contribute (the others add zero, not their own targets)."""
    mask, targets, classes = confidence_mask(logits_weak, threshold, T, hard, align)
    return masked_consistency(logits_strong, targets, mask), mask, classes


@MODELS.register_module()
class FixMatch(ClassifierWrapper):
    """FixMatch around ``model`` (see the module docstring).

    Args:
        model: MODELS config of the classifier (``model(image)`` gives logits).
        threshold: confidence a weak-view prediction needs to become a pseudo-label, in (0, 1].
        lambda_u: weight of the unlabelled loss (>= 0).
        mu: unlabelled-to-labelled batch ratio (> 0); the loaders' ``samples_per_gpu`` must
            follow it (checked before training).
        T: temperature of soft pseudo-labels (``hard_label=False``), > 0.
        hard_label: pseudo-labels as class indices (the paper) or soft probabilities.
        ema_decay: decay of the EMA copy that is validated and saved (None: no EMA, the
            trained classifier itself is the result).
        ema_warmup: ramp the decay up as ``(1+n)/(10+n)`` over the first updates.
        dist_align: align the pseudo-label distribution with a uniform one (ReMixMatch's
            distribution alignment, ``DistributionAlignment``), for class-balanced data.
        dist_align_momentum: momentum of the moving average of the model's predictions.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        threshold: float = 0.95,
        lambda_u: float = 1.0,
        mu: float = 7,
        T: float = 1.0,
        hard_label: bool = True,
        ema_decay: float | None = DEFAULT_EMA_DECAY,
        ema_warmup: bool = True,
        dist_align: bool = False,
        dist_align_momentum: float = 0.999,
    ):
        super().__init__()
        path = config_path("model")
        self.threshold = check_threshold(threshold, f"{path}.threshold")
        self.lambda_u = check_non_negative(lambda_u, f"{path}.lambda_u")
        self.mu = check_positive(mu, f"{path}.mu")
        self.T = check_positive(T, f"{path}.T")
        self.hard_label = bool(hard_label)
        self.model = build_module(MODELS, model, f"{path}.model")
        self.ema_decay = None
        self.ema_model: nn.Module | None = None
        if ema_decay is not None:
            self.ema_decay = check_fraction(ema_decay, f"{path}.ema_decay")
            self.ema_model = make_ema(self.model)
        self.ema_warmup = bool(ema_warmup)
        self.dist_align = None
        if dist_align:
            momentum = check_fraction(dist_align_momentum, f"{path}.dist_align_momentum")
            self.dist_align = DistributionAlignment(momentum)
        # EMA updates so far: a buffer, so a resumed run continues the same warm-up
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    @classmethod
    def inference_prefix_of(cls, model_cfg: Mapping[str, Any]) -> str:
        has_ema = model_cfg.get("ema_decay", DEFAULT_EMA_DECAY) is not None
        return "ema_model." if has_ema else "model."

    def inference_model(self) -> nn.Module:
        """The EMA classifier (or the trained one without EMA): validated, logged, exported."""
        return self.ema_model if self.ema_model is not None else self.model

    def check_train_setup(self, datasets, loaders, optim_wrapper) -> None:
        check_sources(datasets, loaders, "FixMatch", views=True, mu=self.mu)

    def train_step(self, batch: Mapping, optim_wrapper) -> dict[str, Any]:
        lab, unl = split_sources(batch, "FixMatch")
        if unl is None:
            check_sources({"labeled": lab}, {}, "FixMatch")  # raises: no unlabelled source
        weak, strong = unlabeled_views(unl, "FixMatch")
        n_l, n_u = lab["image"].shape[0], weak.shape[0]
        with optim_wrapper.optim_context(self):
            logits = self.model(torch.cat([lab["image"], weak, strong]))
        logits_l = logits[:n_l]
        logits_w, logits_s = logits[n_l : n_l + n_u], logits[n_l + n_u :]
        loss_x = supervised_loss(self.model, logits_l, lab["label"])
        loss_u, mask, classes = fixmatch_unsup_loss(
            logits_w, logits_s, self.threshold, self.T, self.hard_label, self.dist_align
        )
        loss = loss_x + self.lambda_u * loss_u
        optim_wrapper.update_params(loss)
        if self.ema_model is not None and stepped(optim_wrapper):
            self.update_ema()
        logs = {"loss": loss, "loss_x": loss_x, "loss_u": loss_u}
        logs.update(pseudo_label_logs(classes, mask, unl))
        return detached(logs)

    def update_ema(self) -> None:
        """One EMA step towards the trained classifier."""
        decay = ema_decay_at(self.ema_decay, int(self.ema_updates), self.ema_warmup)
        ema_update(self.ema_model, self.model, decay)
        self.ema_updates += 1
