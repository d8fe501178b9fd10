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
#: Extra folders (``os.pathsep``-separated) a GT file's images may live in besides its own folder.
ANTGO_DATA_ROOTS = "ANTGO_DATA_ROOTS"
#: Project / experiment overriding the ``MLproject`` marker (``antgo train`` sets them for the child).
ANTGO_PROJECT = "ANTGO_PROJECT"
ANTGO_EXP = "ANTGO_EXP"
#: Set by the DDP launcher: rank 0 writes the MLflow run id / a one-line error into these files.
ANTGO_RUN_ID_FILE = "ANTGO_RUN_ID_FILE"
ANTGO_ERROR_FILE = "ANTGO_ERROR_FILE"
#: Seconds between run heartbeats (default 30), and the age after which a heartbeat from another
#: host means the run's owner is gone (default 300).
ANTGO_HEARTBEAT_S = "ANTGO_HEARTBEAT_S"
ANTGO_HEARTBEAT_TIMEOUT_S = "ANTGO_HEARTBEAT_TIMEOUT_S"
#: The Optuna storage URL of `antgo hpo` worker processes (set by the study process, never on a
#: command line: it may hold a password).
ANTGO_HPO_STORAGE = "ANTGO_HPO_STORAGE"
#: The Label Studio virtualenv (default ~/.cache/antgo-mlflow/label-studio-venv).
ANTGO_LABEL_STUDIO_VENV = "ANTGO_LABEL_STUDIO_VENV"
#: Annotator passwords, ``name:password`` lines (a 0600 file via --white-users-file is preferred).
ANTGO_WHITE_USERS = "ANTGO_WHITE_USERS"
#: The Optuna storage URL an HPO worker joins (set by ``antgo hpo`` for the workers it starts).
ANTGO_HPO_STORAGE = "ANTGO_HPO_STORAGE"
#: The Label Studio the automation server (`antgo server`) sends labelling to (its
#: ``--label-studio`` default); its API token is in ``LABEL_STUDIO_API_KEY``.
ANTGO_LABEL_STUDIO_URL = "ANTGO_LABEL_STUDIO_URL"


def text(name: str) -> str | None:
    """The value of ``name``, None when unset or empty."""
    return os.environ.get(name) or None


def progress_enabled() -> bool:
    """False when ``ANTGO_PROGRESS=0``."""
    return os.environ.get(ANTGO_PROGRESS, "1") != "0"


def progress_forced() -> bool | None:
    """``ANTGO_PROGRESS``: ``0`` -> False (no bars), any other value -> True (bars even in a
    file), unset or empty -> None (bars on a terminal only, see ``antgo_mlflow.progress``)."""
    value = os.environ.get(ANTGO_PROGRESS, "").strip()
    return None if not value else value != "0"


def debug() -> bool:
    """True when ``ANTGO_DEBUG=1``."""
    return os.environ.get(ANTGO_DEBUG) == "1"


def data_roots() -> list[str]:
    """The folders of ``ANTGO_DATA_ROOTS`` (empty entries dropped)."""
    return [r for r in os.environ.get(ANTGO_DATA_ROOTS, "").split(os.pathsep) if r.strip()]


def seconds(name: str, default: float) -> float:
    """A positive number of seconds from ``name``; ``default`` when unset, not a number or <= 0."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


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
