"""DDP helpers: process-group setup from torchrun's environment, rank queries, samplers, gathers.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; ``init_distributed``
reads them and picks NCCL on CUDA, gloo on the CPU. Without them everything here degrades to a
single process (rank 0 of 1), so the same code runs with and without DDP.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch
import torch.distributed as torch_dist
from torch.utils.data import Sampler


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (or any launcher that sets WORLD_SIZE/RANK)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> bool:
    """Join the process group described by torchrun's env vars; return True if distributed."""
    if is_distributed():
        return True
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) < 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch_dist.init_process_group(backend=backend)
    return True


def local_rank() -> int:
    """This process's rank on its node (0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0: the only process that logs to MLflow and writes checkpoints."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


def destroy() -> None:
    if is_distributed():
        torch_dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over all processes (the value itself without DDP)."""
    if not is_distributed():
        return value
    value = value.clone()
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
    return value / get_world_size()


def all_reduce_max(value: float) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([float(value)], device=_comm_device())
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return float(t.item())


def _comm_device() -> torch.device:
    if torch_dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate each process's rows of ``tensor`` (sizes may differ), on every process.

    Uses padded ``all_gather`` of tensors, not pickled objects.
    """
    if not is_distributed():
        return tensor
    device = _comm_device()
    tensor = tensor.to(device)
    size = torch.tensor([tensor.shape[0]], device=device)
    sizes = [torch.zeros_like(size) for _ in range(get_world_size())]
    torch_dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in sizes]
    torch_dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]).cpu()


def broadcast_str(text: str | None, src: int = 0) -> str | None:
    """Send a short string from ``src`` to all processes (as a byte tensor, not a pickle)."""
    if not is_distributed():
        return text
    device = _comm_device()
    data = (text or "").encode()
    length = torch.tensor([len(data) if text is not None else -1], device=device)
    torch_dist.broadcast(length, src)
    n = int(length.item())
    if n < 0:
        return None
    buf = torch.zeros(n, dtype=torch.uint8, device=device)
    if get_rank() == src:
        buf[:] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    torch_dist.broadcast(buf, src)
    return bytes(buf.cpu().tolist()).decode()


class EpochSampler(Sampler[int]):
    """A seeded, epoch-aware sampler that shards by rank and can skip the first samples of an epoch.

    With one process it yields the same global order a DistributedSampler would produce, so a
    1-process run and an N-process run with the same global batch see the same samples per step.
    ``skip(n)`` starts the current epoch after the first ``n`` samples of this rank (used to resume
    mid-epoch without replaying seen batches).
    """

    def __init__(
        self,
        dataset_len: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        pad: bool = True,
    ):
        self.n = dataset_len
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas if num_replicas is not None else get_world_size()
        self.rank = rank if rank is not None else get_rank()
        self.pad = pad
        self.epoch = 0
        self._skip = 0
        if pad:
            self.per_rank = math.ceil(self.n / self.num_replicas)
        else:
            self.per_rank = len(range(self.rank, self.n, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, n: int) -> None:
        """Skip the first ``n`` samples of the next iteration only."""
        self._skip = max(0, int(n))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.n:
            total = self.per_rank * self.num_replicas
            order += (order * math.ceil(total / self.n))[: total - self.n]
        mine = order[self.rank :: self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(mine[skip:])

    def __len__(self) -> int:
        return self.per_rank
