"""Where a run computes: the device from ``--gpu-id``, and moving batches onto it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from antgo_mlflow.engine import dist
from antgo_mlflow.errors import UsageError


def resolve_device(gpu_id: int | str | None) -> torch.device:
    """None: CUDA when available (the local rank's GPU under torchrun); ``-1``/``"cpu"``: CPU."""
    if gpu_id is None or gpu_id == "":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank() if dist.launched_by_torchrun() else 0)
        return torch.device("cpu")
    if isinstance(gpu_id, str):
        if gpu_id.strip().lower() == "cpu":
            return torch.device("cpu")
        try:
            gpu_id = int(gpu_id.split(",")[0])
        except ValueError:
            raise UsageError(f"--gpu-id={gpu_id}: expected a GPU index like 0 or 0,1") from None
    if gpu_id < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(
            f"--gpu-id={gpu_id}: CUDA is not available on this machine (use --gpu-id=-1)"
        )
    if dist.launched_by_torchrun():
        return torch.device("cuda", dist.local_rank())
    if gpu_id >= torch.cuda.device_count():
        raise UsageError(f"--gpu-id={gpu_id}: only {torch.cuda.device_count()} GPU(s) visible")
    return torch.device("cuda", gpu_id)


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
