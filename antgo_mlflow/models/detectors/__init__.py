"""Object detectors (MODELS): torchvision's FCOS, RetinaNet and Faster R-CNN behind one wrapper.

``TorchvisionDetector`` (base.py) follows the model contract (``train_step`` -> losses,
``val_step`` -> per-image boxes xyxy in the original image's pixels, scores, labels); each family
is one small file; the backbones (``TinyFPN``, ``ResNetFPN``, ``MobileNetV3FPN``) are in
backbones.py. Nothing is ever downloaded (torchvision networks are built with ``weights=None``).

Example:
    >>> model = MODELS.build(dict(type="FCOS", meta="shapes/meta.json",
    ...     backbone=dict(type="TinyFPN"), head=dict(num_convs=2)), path="model")
"""

from antgo_mlflow.models.detectors import (  # noqa: F401  (registers them)
    backbones,
    faster_rcnn,
    fcos,
    retinanet,
)
from antgo_mlflow.models.detectors.backbones import MobileNetV3FPN, ResNetFPN, TinyFPN
from antgo_mlflow.models.detectors.base import TorchvisionDetector, boxes_to_original
from antgo_mlflow.models.detectors.faster_rcnn import FasterRCNN
from antgo_mlflow.models.detectors.fcos import FCOS
from antgo_mlflow.models.detectors.retinanet import RetinaNet

__all__ = [
    "FCOS",
    "FasterRCNN",
    "RetinaNet",
    "MobileNetV3FPN",
    "ResNetFPN",
    "TinyFPN",
    "TorchvisionDetector",
    "boxes_to_original",
]
