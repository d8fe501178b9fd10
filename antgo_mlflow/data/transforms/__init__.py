"""Sample-dict transforms registered in TRANSFORMS: format ops, every torchvision v2 op, antgo ops.

Importing this package registers everything (it is the TRANSFORMS registry's location).

Example:
    >>> from antgo_mlflow.data.transforms import build_pipeline
    >>> pipeline = build_pipeline([
    ...     dict(type='Meta', keys=['image_file', 'tag']),
    ...     dict(type='INumpyToPIL', keys=['image'], mode='RGB'),
    ...     dict(type='RandomHorizontalFlip', keys=['image']),
    ...     dict(type='ToTensor', keys=['image']),
    ... ], path='data.train.pipeline')
    >>> sample = pipeline(sample)
"""

from antgo_mlflow.data.transforms import antgo_ops, formatting, torchvision_ops  # noqa: F401
from antgo_mlflow.data.transforms.base import BaseTransform, decode_image
from antgo_mlflow.data.transforms.compose import (
    Compose,
    RandomApply,
    RandomChoice,
    RandomOrder,
    build_pipeline,
)

__all__ = [
    "BaseTransform",
    "Compose",
    "RandomApply",
    "RandomChoice",
    "RandomOrder",
    "build_pipeline",
    "decode_image",
]
