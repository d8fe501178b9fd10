"""Where a run computes: the device from ``--gpu-id``, and moving batches onto it.

``--gpu-id`` names GPUs the machine may not have (the tutorial's ``--gpu-id=0`` on a laptop): a
GPU that is not there is not an error. The run falls back to the GPUs that are (or to the CPU),
prints one warning line, and the Runner records the device and the reason on the MLflow run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from antgo_mlflow.engine import dist
from antgo_mlflow.engine.launch import parse_gpu_ids

_warned: set[str] = set()


def usable_gpu_ids(ids: Sequence[int]) -> tuple[list[int], str | None]:
    """The GPUs of ``ids`` this machine has, and a warning line when some or all are missing.

    Example:
        >>> usable_gpu_ids([0, 1])  # on a machine without CUDA
        ([], '--gpu-id=0,1: CUDA is not available on this machine; training on the CPU')
    """
    ids = list(ids)
    if not ids:
        return [], None
    asked = ",".join(str(i) for i in ids)
    if not torch.cuda.is_available():
        return [], f"--gpu-id={asked}: CUDA is not available on this machine; training on the CPU"
    count = torch.cuda.device_count()
    kept = [i for i in ids if i < count]
    if kept == ids:
        return ids, None
    where = ",".join(str(i) for i in kept) if kept else "the CPU"
    return kept, f"--gpu-id={asked}: only {count} GPU(s) visible; training on {where}"


def warn_once(line: str | None) -> None:
    """Print ``antgo: warning: <line>`` to stderr, once per process for the same line."""
    if line and line not in _warned:
        _warned.add(line)
        print(f"antgo: warning: {line}", file=sys.stderr, flush=True)


def choose_device(gpu_id: int | str | Sequence[int] | None) -> tuple[torch.device, str | None]:
    """The device for ``--gpu-id`` and, when it had to fall back, why (else None).

    None or ``""``: CUDA when available (the local rank's GPU under torchrun); ``-1``/``"cpu"``:
    the CPU; ``0`` or ``0,1``: the first listed GPU the machine has (a one-process run uses one
    GPU), else the CPU.
    """
    if gpu_id is None or gpu_id == "":
        if torch.cuda.is_available():
            return torch.device(
                "cuda", dist.local_rank() if dist.launched_by_torchrun() else 0
            ), None
        return torch.device("cpu"), None
    ids = parse_gpu_ids(gpu_id)
    if not ids:
        return torch.device("cpu"), None
    if dist.launched_by_torchrun() and torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank()), None
    kept, note = usable_gpu_ids(ids)
    if not kept:
        return torch.device("cpu"), note
    return torch.device("cuda", kept[0]), note


def resolve_device(gpu_id: int | str | None) -> torch.device:
    """``choose_device`` that prints its fallback warning (once) and returns only the device."""
    device, note = choose_device(gpu_id)
    warn_once(note)
    return device


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``obj`` with every tensor (also inside dicts, lists and tuples) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj


def batch_size(batch: Any) -> int:
    """Samples in ``batch`` (summed over the sources of a several-source batch)."""
    if isinstance(batch, Mapping):
        for key in ("image", "image_weak"):
            value = batch.get(key)
            if isinstance(value, torch.Tensor):
                return int(value.shape[0])
        if batch and all(isinstance(v, Mapping) for v in batch.values()):
            return sum(batch_size(v) for v in batch.values())
        for value in batch.values():
            if isinstance(value, (torch.Tensor, list)):
                return len(value)
    return 0
