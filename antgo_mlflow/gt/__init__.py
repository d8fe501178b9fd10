"""The standard ground-truth format (schema 1): schema, validation, atomic IO and meta.json."""

from antgo_mlflow.gt.io import (
    DATA_ROOTS_ENV,
    OutsideDatasetError,
    check_inside,
    load_gt,
    resolve_image_path,
    save_gt,
)
from antgo_mlflow.gt.meta import default_meta, read_meta, write_meta
from antgo_mlflow.gt.schema import SCHEMA_VERSION, new_sample, validate_sample, validate_samples

__all__ = [
    "DATA_ROOTS_ENV",
    "OutsideDatasetError",
    "SCHEMA_VERSION",
    "check_inside",
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
