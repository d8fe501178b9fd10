"""Backbones registered in MODELS: ``WideResNet`` and torchvision networks (``TVBackbone``, ``ResnetTV``)."""

from antgo_mlflow.models.backbones import torchvision, wideres  # noqa: F401  (registers them)
from antgo_mlflow.models.backbones.torchvision import ResnetTV, TVBackbone
from antgo_mlflow.models.backbones.wideres import WideResNet

__all__ = ["ResnetTV", "TVBackbone", "WideResNet"]
