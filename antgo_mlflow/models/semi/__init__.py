"""Semi-supervised algorithms (MODELS), each wrapping any registered classifier:
``FixMatch`` and ``MetaPseudoLabels``. Shared pieces live in ``common``."""

from antgo_mlflow.models.semi.fixmatch import FixMatch
from antgo_mlflow.models.semi.mpl import MetaPseudoLabels

__all__ = ["FixMatch", "MetaPseudoLabels"]
