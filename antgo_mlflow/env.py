"""Environment variables antgo-mlflow reads, declared once with their meaning and default."""

from __future__ import annotations

import os
from pathlib import Path

#: Folder for prepared data (embedded datasets converted to GT + shards). Default ~/.cache/antgo-mlflow.
ANTGO_CACHE_DIR = "ANTGO_CACHE_DIR"
#: "0" turns progress bars off (tests and CI set it).
ANTGO_PROGRESS = "ANTGO_PROGRESS"
#: "1" makes the CLI print tracebacks, like `antgo --debug`.
ANTGO_DEBUG = "ANTGO_DEBUG"


def cache_dir() -> Path:
    """The cache folder (created on demand by callers)."""
    value = os.environ.get(ANTGO_CACHE_DIR)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "antgo-mlflow"
