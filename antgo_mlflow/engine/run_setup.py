"""What a run sets up before it builds anything: seeds, the config's custom imports, its name."""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from antgo_mlflow import env
from antgo_mlflow.errors import ConfigError


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); ``deterministic`` also pins cuDNN/algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def import_custom_modules(cfg: Mapping) -> None:
    """Import ``custom_imports=dict(imports=[...])`` modules (they register models, hooks, ...)."""
    spec = cfg.get("custom_imports")
    if not spec:
        return
    names = spec.get("imports") if isinstance(spec, Mapping) else spec
    if isinstance(names, str):
        names = [names]
    allow_failed = isinstance(spec, Mapping) and bool(spec.get("allow_failed_imports", False))
    for i, name in enumerate(names or []):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if not allow_failed:
                raise ConfigError(
                    f"custom_imports.imports.{i}: cannot import {name!r} ({exc})"
                ) from exc


def find_exp_name(cfg) -> str:
    """``exp`` (or $ANTGO_EXP), else the config's experiment folder (``<exp>/configs/x.py``)."""
    name = cfg.get("exp") or env.text(env.ANTGO_EXP)
    if name:
        return str(name)
    if cfg.filename:
        parent = Path(cfg.filename).parent
        return parent.parent.name if parent.name == "configs" else parent.name
    return "default"
