"""Training hooks (HOOKS registry location): checkpoints, text logging, MLflow logging.

Importing this package registers ``CheckpointHook``, ``TextLoggerHook`` and ``MlflowLoggerHook``.
"""

from antgo_mlflow.engine.hooks.base import POINTS, PRIORITIES, Hook, get_priority
from antgo_mlflow.engine.hooks.checkpoint import CheckpointHook
from antgo_mlflow.engine.hooks.logger import TextLoggerHook
from antgo_mlflow.engine.hooks.mlflow_logger import MlflowLoggerHook

__all__ = [
    "POINTS",
    "PRIORITIES",
    "CheckpointHook",
    "Hook",
    "MlflowLoggerHook",
    "TextLoggerHook",
    "get_priority",
]
