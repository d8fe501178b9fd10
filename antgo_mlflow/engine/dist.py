"""DDP helpers: process-group setup from torchrun's environment, rank queries, gradient sync, gathers.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; ``init_distributed``
reads them and picks NCCL on CUDA, gloo on the CPU. Without them everything here degrades to a
single process (rank 0 of 1), so the same code runs with and without DDP.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist


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


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s parameters and buffers (what DDP does at wrap time)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            torch_dist.broadcast(tensor.data, src)


def all_reduce_grads(params: list[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over all processes (one flat all-reduce).

    A parameter without a gradient on some process (an unused branch) gets zeros there; one
    without a gradient anywhere keeps ``None`` (the optimizer skips it, as DDP would).
    """
    if not is_distributed() or not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    torch_dist.all_reduce(has, op=torch_dist.ReduceOp.MAX)
    used = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not used:
        return
    grads = [p.grad for p in used]
    flat = torch._utils._flatten_dense_tensors(grads)
    torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
    flat /= get_world_size()
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(synced)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s buffers (BatchNorm statistics)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.buffers():
            torch_dist.broadcast(tensor.data, src)
