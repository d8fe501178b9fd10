"""Distillation algorithms (MODELS): ``Distiller`` (Hinton KD from a frozen teacher)."""

from antgo_mlflow.models.distill.distiller import Distiller, kd_loss

__all__ = ["Distiller", "kd_loss"]
