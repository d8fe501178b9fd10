"""Checkpoint files: save atomically, load safely (``weights_only``), restore RNG state, report keys.

A checkpoint is a dict: ``meta`` (epoch, iter, inner_iter, mlflow_run_id, the config as plain data, best score),
``state_dict`` (the model, without a DDP ``module.`` prefix), ``optimizer``, ``scheduler``,
``scaler`` and ``rng`` (python, numpy, torch, cuda). It holds only tensors and plain values, so
``torch.load(weights_only=True)`` reads it: no pickled code runs when a checkpoint is loaded.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.fileio import atomic_open

log = logging.getLogger(__name__)

#: ``epoch_N.pth``, the CheckpointHook's per-epoch files (also as MLflow artifact paths).
EPOCH_FILE_RE = re.compile(r"(?:^|/)epoch_(\d+)\.pth$")


def epoch_number(name: str | os.PathLike) -> int | None:
    """N for a file (or artifact path) named ``epoch_N.pth``, else None."""
    match = EPOCH_FILE_RE.search(str(name).replace(os.sep, "/"))
    return int(match.group(1)) if match else None


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a reader never sees a half-written file)."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save(dict(checkpoint), fh)
    return path


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """Read a checkpoint on the CPU with ``weights_only=True``; ConfigError naming ``what`` if bad."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what}: {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file or a pickle that needs code: both are the user's file
        raise ConfigError(
            f"{what}: {path} is not a readable checkpoint ({type(exc).__name__}: {exc})".split(
                "\n"
            )[0]
        ) from exc
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{what}: {path} does not hold a dict of tensors")
    return dict(obj)


def model_state(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint (ours, mmcv's ``state_dict``, or a bare state dict)."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    return {_strip_prefix(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


@dataclass
class LoadReport:
    """What ``load_weights`` did: keys loaded, missing from the file, unexpected, shape mismatches."""

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def text(self) -> str:
        """A short human-readable report (one line when everything matched)."""
        head = f"load_from {self.path}: loaded {self.loaded} tensors"
        if self.clean:
            return head + ", all keys matched"
        lines = [head]
        for label, keys in (
            ("missing in checkpoint (kept initialised)", self.missing),
            ("unexpected in checkpoint (ignored)", self.unexpected),
            ("shape mismatch (kept initialised)", self.mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (
                    f", ... ({len(keys) - 8} more)" if len(keys) > 8 else ""
                )
                lines.append(f"  {len(keys)} {label}: {shown}")
        return "\n".join(lines)


def load_weights(
    model: torch.nn.Module, path: str | os.PathLike, what: str = "load_from", prefix: str = ""
) -> LoadReport:
    """Load only the model weights from ``path`` (non-strict) and report what did not match.

    ``prefix`` takes the weights of one sub-module (``"ema_model."``) with the prefix removed.
    """
    state = model_state(load_checkpoint(path, what))
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = model.state_dict()
    report = LoadReport(str(path))
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            usable[key] = value
    report.missing = [k for k in own if k not in state]
    if not usable:
        raise ConfigError(
            f"{what}: {path} has no weights that fit this model ({len(state)} tensors, none matched)"
        )
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report


# -- RNG state, stored as tensors/ints so that weights_only loading accepts it -----------------
def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) random states."""
    np_state = np.random.get_state()
    state = {
        "python": _py_state_to_tensor(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    """Restore what ``rng_state`` captured (parts missing from ``state`` are left alone)."""
    if "python" in state:
        random.setstate(_tensor_to_py_state(state["python"]))
    if "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, s["pos"], s["has_gauss"], s["cached"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):  # fewer GPUs than when saved: keep the fresh seeds
            log.warning("could not restore the CUDA RNG state (different GPU count)")


def _py_state_to_tensor(state: tuple) -> dict:
    version, internal, gauss = state
    return {
        "version": int(version),
        "internal": torch.tensor(internal, dtype=torch.int64),
        "gauss": float(gauss) if gauss is not None else None,
    }


def _tensor_to_py_state(d: Mapping) -> tuple:
    return (d["version"], tuple(int(x) for x in d["internal"].tolist()), d["gauss"])
