"""Read and write standard GT files: a JSON list, or antgo's one-sample-per-line variant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, GTFormatError
from antgo_mlflow.fileio import atomic_write_json, read_json
from antgo_mlflow.gt.schema import SCHEMA_VERSION, validate_samples

ANNOTATION_FILE = "annotation.json"


def _gt_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / ANNOTATION_FILE
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    return path


def load_gt(path: str | os.PathLike, validate: bool = True) -> list[dict[str, Any]]:
    """Load a GT file (or a folder's ``annotation.json``) as a list of sample dicts.

    Accepts a JSON list or one JSON object per line. With ``validate`` every sample is checked
    against schema 1; errors name the file, the sample index and the field.
    """
    path = _gt_path(path)
    data = read_json(path, "a JSON list of samples", GTFormatError, json_lines=True)
    if isinstance(data, dict):
        # a single object on one line is the line variant with one sample
        data = [data] if "image_file" in data or "image_url" in data else data
    if not isinstance(data, list):
        raise GTFormatError(f"{path}: expected a JSON list of samples, got {type(data).__name__}")
    if validate:
        validate_samples(data, str(path))
    return data


def save_gt(
    path: str | os.PathLike, samples: list[dict[str, Any]], validate: bool = True, indent=None
) -> Path:
    """Write samples as a JSON list atomically (temp + rename); stamps ``schema_version``."""
    path = Path(path)
    if validate:
        validate_samples(samples, str(path))
    for sample in samples:
        sample.setdefault("schema_version", SCHEMA_VERSION)
    atomic_write_json(path, samples, indent=indent)
    return path


def resolve_image_path(gt_path: str | os.PathLike, sample: dict[str, Any]) -> Path:
    """The image file of ``sample``: ``image_file`` relative to the folder of the GT JSON."""
    base = Path(gt_path)
    base = base if base.is_dir() else base.parent
    return base / sample["image_file"]
