"""meta.json beside a GT file: info, author, license, extent.total, meta.category, meta.skeleton."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import GTFormatError
from antgo_mlflow.fileio import atomic_write_json, read_json

META_FILE = "meta.json"


def default_meta(total: int = 0, category: list[str] | None = None) -> dict[str, Any]:
    """A meta dict with antgo's keys."""
    return {
        "info": "",
        "author": "",
        "license": "",
        "extent": {"total": total},
        "meta": {"category": list(category or []), "skeleton": []},
    }


def _meta_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / META_FILE if path.is_dir() or path.suffix != ".json" else path


def read_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """Read ``meta.json`` (a folder or a file path); None if it does not exist."""
    path = _meta_path(path)
    if not path.exists():
        return None
    meta = read_json(path, "a JSON object (meta.json)", GTFormatError)
    if not isinstance(meta, dict):
        raise GTFormatError(f"{path}: expected a JSON object")
    inner = meta.get("meta", {})
    if not isinstance(inner, dict):
        raise GTFormatError(f"{path}, field 'meta': expected an object")
    category = inner.get("category", [])
    if not isinstance(category, list) or not all(isinstance(c, str) for c in category):
        raise GTFormatError(f"{path}, field 'meta.category': expected a list of class names")
    return meta


def write_meta(path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``meta`` to ``meta.json`` (a folder or a file path) atomically."""
    path = _meta_path(path)
    atomic_write_json(path, meta, indent=2)
    return path
