"""Models (MODELS) and losses (LOSSES) for image classification; importing this registers them all.

The contract between models and the Runner (fixed; the engine relies on it):

* Models are ``torch.nn.Module``s built with ``MODELS.build(cfg.model, path="model")``. The MODELS
  registry's ``locations`` is this package, so this file imports every model module; LOSSES'
  location is ``antgo_mlflow.models.losses``.
* ``model(image, label=None, **kwargs)``:
  with ``label`` (class indices (N,) or soft labels (N, C)) it returns a dict of losses
  ``{'loss': total, ...}`` in which every key starting with ``loss`` is a scalar tensor; the Runner
  backpropagates ``sum(v for k, v in out.items() if k.startswith('loss'))`` and logs every scalar
  entry (e.g. ``acc_top1`` when the head has ``cal_acc=True``). Without ``label`` it returns the
  logits (N, C). Extra batch fields (``image_meta``, ...) arrive as kwargs and are ignored.
* ``model.predict(image)`` returns class probabilities (N, C): softmax, or sigmoid for
  multi-label losses (``BCELoss``, ``FocalLoss(use_sigmoid=True)``). ONNX export traces a wrapper
  that calls ``predict``.
* Metrics (``antgo_mlflow.engine.metrics``, METRICS) take numpy ``preds`` (N, C) and ``labels`` (N,)
  and return ``dict[str, float]``.

Registered here: ImageClassifier; heads ClsHead, StackedLinearClsHead; backbones WideResNet,
TVBackbone, ResnetTV; detectors FCOS, RetinaNet, FasterRCNN and their backbones TinyFPN,
ResNetFPN, MobileNetV3FPN (``antgo_mlflow.models.detectors``). Losses: CrossEntropyLoss, BCELoss, FocalLoss, LabelSmoothingLoss, KLDivLoss.

Example:
    >>> from antgo_mlflow.registry import MODELS
    >>> model = MODELS.build(dict(type="ImageClassifier",
    ...     backbone=dict(type="WideResNet", num_classes=10, depth=28, widen_factor=2),
    ...     head=dict(type="ClsHead")), path="model")
"""

from antgo_mlflow.models import backbones, classifier, detectors, heads, losses  # noqa: F401  (registers them)
from antgo_mlflow.models.classifier import ImageClassifier
from antgo_mlflow.models.heads import ClsHead, StackedLinearClsHead

__all__ = ["ClsHead", "ImageClassifier", "StackedLinearClsHead"]
