"""The standard ground-truth format (schema 1): schema, validation, atomic IO and meta.json."""

from antgo_mlflow.gt.io import load_gt, resolve_image_path, save_gt
from antgo_mlflow.gt.meta import default_meta, read_meta, write_meta
from antgo_mlflow.gt.schema import SCHEMA_VERSION, new_sample, validate_sample, validate_samples

__all__ = [
    "SCHEMA_VERSION",
    "default_meta",
    "load_gt",
    "new_sample",
    "read_meta",
    "resolve_image_path",
    "save_gt",
    "validate_sample",
    "validate_samples",
    "write_meta",
]
