"""Inference: load any model (runs:/, models:/name@alias, models:/m-…, .onnx, .pth) and run it batched.

- ``loader``: resolve a URI or file and load it safely (a checkpoint never runs code).
- ``predictor``: per-task predictors (``PREDICTORS``) running batched on numpy images;
  ``detection``: the detectors' one (boxes in original pixels).
- ``preprocess``: the training preprocessing; ``runtime``: ONNX Runtime / torch execution.
- ``inputs``: images from GT JSON or shards; ``pseudo_label``: the pseudo-label workflow.

Importing this package pulls in neither torch nor mlflow (they load with the first model).
"""

from antgo_mlflow.inference.detection import DetectionPredictor
from antgo_mlflow.inference.loader import (
    CheckpointModel,
    build_from_checkpoint,
    checkpoint_of_run,
    load_model,
    load_models,
    load_torch_module,
)
from antgo_mlflow.inference.predictor import (
    PREDICTORS,
    ClassificationPredictor,
    ModelInfo,
    Predictor,
    check_same_classes,
)
from antgo_mlflow.inference.preprocess import Preprocess

__all__ = [
    "PREDICTORS",
    "CheckpointModel",
    "ClassificationPredictor",
    "DetectionPredictor",
    "ModelInfo",
    "Predictor",
    "Preprocess",
    "build_from_checkpoint",
    "check_same_classes",
    "checkpoint_of_run",
    "load_model",
    "load_models",
    "load_torch_module",
]
