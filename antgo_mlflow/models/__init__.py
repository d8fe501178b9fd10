"""Models (MODELS) and losses (LOSSES); importing this registers them all.

The contract between models and the engine (``antgo_mlflow.models.base``):

* Models are ``torch.nn.Module``s built with ``MODELS.build(cfg.model, path="model")``. The MODELS
  registry's ``locations`` is this package, so this file imports every model module; LOSSES'
  location is ``antgo_mlflow.models.losses``.
* The loops call ``model.train_step(batch, optim_wrapper) -> dict`` of scalars to log,
  ``model.val_step(batch)`` / ``model.test_step(batch) -> list`` of per-sample predictions
  (classification: ``{"pred_score": (C,) probabilities, "pred_label": int}``; detection:
  ``{"bboxes": (K, 4) xyxy in original pixels, "scores": (K,), "labels": (K,)}``) and, for
  active learning, ``model.extract_features(batch) -> (N, D)``. ``BaseModel`` implements them
  for supervised classification on top of antgo's forward contract:
* ``model(image, label=None, **kwargs)``:
  with ``label`` (class indices (N,) or soft labels (N, C)) it returns a dict of losses
  ``{'loss': total, ...}`` in which every key starting with ``loss`` is a scalar tensor; the
  default ``train_step`` backpropagates their sum and logs every scalar entry (e.g. ``acc_top1``
  when the head has ``cal_acc=True``). Without ``label`` it returns the logits (N, C). Extra
  batch fields (``image_meta``, ...) arrive as kwargs and are ignored.
* ``model.predict(image)`` returns class probabilities (N, C): softmax, or sigmoid for
  multi-label losses (``BCELoss``, ``FocalLoss(use_sigmoid=True)``). ONNX export traces a wrapper
  that calls ``predict``.
* A plain ``nn.Module`` following the forward contract (no ``train_step``) trains unchanged:
  the engine wraps it with ``base.as_steps``.
* Metrics (``antgo_mlflow.engine.metrics``, METRICS) receive the per-sample predictions and the
  batch: ``reset()``, ``process(predictions, batch)``, ``compute() -> dict[str, float]``.

Registered here: ImageClassifier; heads ClsHead, StackedLinearClsHead; backbones WideResNet,
TVBackbone, ResnetTV; detectors FCOS, RetinaNet, FasterRCNN and their backbones TinyFPN,
ResNetFPN, MobileNetV3FPN (``antgo_mlflow.models.detectors``); semi-supervised FixMatch,
MetaPseudoLabels (``semi/``) and distillation Distiller (``distill/``), each wrapping a classifier
(``inference_model()`` is what is exported). Losses: CrossEntropyLoss, BCELoss, FocalLoss,
LabelSmoothingLoss, KLDivLoss.

Example:
    >>> from antgo_mlflow.registry import MODELS
    >>> model = MODELS.build(dict(type="ImageClassifier",
    ...     backbone=dict(type="WideResNet", num_classes=10, depth=28, widen_factor=2),
    ...     head=dict(type="ClsHead")), path="model")
"""

from antgo_mlflow.models import (  # noqa: F401  (registers)
    backbones,
    base,
    classifier,
    detectors,
    distill,
    heads,
    losses,
    semi,
)
from antgo_mlflow.models.base import BaseModel, PlainModelSteps, as_steps
from antgo_mlflow.models.classifier import ImageClassifier
from antgo_mlflow.models.heads import ClsHead, StackedLinearClsHead

__all__ = [
    "BaseModel",
    "ClsHead",
    "ImageClassifier",
    "PlainModelSteps",
    "StackedLinearClsHead",
    "as_steps",
]
