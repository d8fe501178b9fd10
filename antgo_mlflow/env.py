"""Environment variables antgo-mlflow reads, declared once with their meaning and default."""

from __future__ import annotations

import os
from pathlib import Path

#: Folder for prepared data (embedded datasets converted to GT + shards). Default ~/.cache/antgo-mlflow.
ANTGO_CACHE_DIR = "ANTGO_CACHE_DIR"
#: "0" turns progress bars off, "1" forces them on; unset: on only when stderr is a terminal
#: (bars rewrite their line with carriage returns, which a log file keeps as clutter).
ANTGO_PROGRESS = "ANTGO_PROGRESS"
#: "1" makes the CLI print tracebacks, like `antgo --debug`.
ANTGO_DEBUG = "ANTGO_DEBUG"
#: Folder of per-user machine configuration (registered submitters). Default ~/.config/antgo-mlflow;
#: created 0700, files in it 0600. Tests point it at a temporary folder.
ANTGO_CONFIG_DIR = "ANTGO_CONFIG_DIR"


def cache_dir() -> Path:
    """The cache folder (created on demand by callers)."""
    value = os.environ.get(ANTGO_CACHE_DIR)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "antgo-mlflow"


def config_dir() -> Path:
    """The per-user configuration folder (not created here; ``submit.config`` creates it 0700)."""
    value = os.environ.get(ANTGO_CONFIG_DIR)
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".config") / "antgo-mlflow"
