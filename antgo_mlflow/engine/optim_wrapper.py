"""OptimWrapper: one optimizer with AMP, gradient clipping, accumulation and DDP gradient sync.

A model's ``train_step`` calls ``optim_wrapper.update_params(loss)`` (or ``backward`` / ``step``
/ ``zero_grad`` itself) and runs its forward under ``optim_wrapper.optim_context(model)``
(autocast when AMP is on). ``OptimWrapperDict`` holds one wrapper per name (teacher/student,
backbone/head): a model steps its members in the order it chooses, or calls the dict's own
``update_params(loss)`` to update all of them from one loss (one backward, clipping over all
their parameters, one GradScaler) — what a per-module ``optimizer`` config did before.

Built from antgo's keys by ``build_optim_wrapper``: ``optimizer`` (one dict with ``type``, or one
per sub-module) and ``optimizer_config=dict(grad_clip=dict(max_norm=..., norm_type=2),
amp=True|False|'bf16', loss_scale='dynamic'|<initial scale>, accumulative_counts=N)``.

Under DDP the wrapper averages its parameters' gradients over the processes just before each
step (one all-reduce per step, none in the accumulation iterations), whatever order a model
updates its members in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from antgo_mlflow.engine import dist
from antgo_mlflow.engine.optim import build_optimizers
from antgo_mlflow.errors import ConfigError

OPTIMIZER_CONFIG_KEYS = ("type", "grad_clip", "amp", "loss_scale", "accumulative_counts")
_HOOK_TYPES = ("OptimizerHook", "Fp16OptimizerHook")


class OptimWrapper:
    """An optimizer plus the bookkeeping of one update (see the module docstring).

    Args:
        optimizer: the torch optimizer.
        clip_grad: None or ``dict(max_norm=..., norm_type=2)``.
        accumulative_counts: step every N calls of ``update_params`` (the loss is divided by N).
        amp: autocast dtype (``torch.float16`` / ``torch.bfloat16``) or None (no AMP).
        scaler: the GradScaler (float16 AMP); wrappers of one ``OptimWrapperDict`` share one.
        sync_grads: average gradients over DDP processes before stepping.
        device_type: where autocast runs (``"cuda"``; the config enables AMP on CUDA only).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        clip_grad: Mapping | None = None,
        accumulative_counts: int = 1,
        amp: torch.dtype | None = None,
        scaler: torch.amp.GradScaler | None = None,
        sync_grads: bool = False,
        device_type: str = "cuda",
    ):
        self.optimizer = optimizer
        self.device_type = device_type
        self.clip_grad = dict(clip_grad) if clip_grad else None
        self.accumulative_counts = int(accumulative_counts)
        self.amp = amp
        self.scaler = scaler
        self.sync_grads = sync_grads
        self._count = 0  # update_params calls so far (accumulation position)
        self._max_counts: int | None = None

    # -- the one-call update ----------------------------------------------------------------------
    def update_params(self, loss: torch.Tensor) -> None:
        """Backward ``loss`` and, every ``accumulative_counts`` calls, clip, step and reset."""
        if self._count % self.accumulative_counts == 0:
            self.zero_grad()
        self._count += 1
        self.backward(self.scale_loss(loss))
        if self.should_update():
            self.step()

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` divided by the number of iterations accumulated into this step."""
        n = self.accumulative_counts
        if n == 1:
            return loss
        if self._max_counts is not None:
            tail_start = self._max_counts - self._max_counts % n
            if self._count > tail_start:  # the last, shorter group
                n = self._max_counts - tail_start
        return loss / n

    def should_update(self) -> bool:
        """True when the current accumulation group is complete (or the run's last iteration)."""
        return self._count % self.accumulative_counts == 0 or self._count == self._max_counts

    def initialize_count_status(self, done: int, total: int | None) -> None:
        """Tell the wrapper how many iterations ran (a resume) and how many the run has."""
        self._count = int(done)
        self._max_counts = int(total) if total else None

    # -- the parts --------------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """``loss.backward()`` (scaled by the GradScaler under float16 AMP)."""
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward(**kwargs)

    def step(self) -> None:
        """Sync gradients (DDP), unscale and clip them, step the optimizer (and the scaler)."""
        self._prepare_step()
        self._clip(self.params())
        self._optimizer_step()
        if self.scaler is not None:
            self.scaler.update()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def _prepare_step(self) -> None:
        if self.sync_grads:
            dist.all_reduce_grads(self.params())
        if self.scaler is not None and self.clip_grad:
            self.scaler.unscale_(self.optimizer)

    def _clip(self, params: list) -> None:
        if self.clip_grad:
            torch.nn.utils.clip_grad_norm_(params, **self.clip_grad)

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()

    # -- context and state ------------------------------------------------------------------------
    def optim_context(self, model: torch.nn.Module | None = None):
        """The forward's context: autocast under AMP, nothing otherwise."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp)

    def params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def get_lr(self) -> float:
        """The first param group's learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: Mapping) -> None:
        self.optimizer.load_state_dict(state)


class OptimWrapperDict(Mapping):
    """Named ``OptimWrapper``s; ``update_params(loss)`` updates all of them from one loss."""

    def __init__(self, **wrappers: OptimWrapper):
        if not wrappers:
            raise ConfigError("optimizer: an OptimWrapperDict needs at least one optimizer")
        self._wrappers = dict(wrappers)
        self.scaler = next(iter(self._wrappers.values())).scaler
        self._count = 0

    def __getitem__(self, name: str) -> OptimWrapper:
        return self._wrappers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._wrappers)

    def __len__(self) -> int:
        return len(self._wrappers)

    def update_params(self, loss: torch.Tensor) -> None:
        """One backward of ``loss``, then every member steps (clipping over all parameters)."""
        first = next(iter(self._wrappers.values()))
        if self._count % first.accumulative_counts == 0:
            self.zero_grad()
        self._count += 1
        first._count = self._count
        first.backward(first.scale_loss(loss))
        if not first.should_update():
            return
        for w in self._wrappers.values():
            w._prepare_step()
        if first.clip_grad:
            first._clip([p for w in self._wrappers.values() for p in w.params()])
        for w in self._wrappers.values():
            w._optimizer_step()
        if self.scaler is not None:
            self.scaler.update()

    def zero_grad(self) -> None:
        for w in self._wrappers.values():
            w.zero_grad()

    def optim_context(self, model: torch.nn.Module | None = None):
        return next(iter(self._wrappers.values())).optim_context(model)

    def initialize_count_status(self, done: int, total: int | None) -> None:
        self._count = int(done)
        for w in self._wrappers.values():
            w.initialize_count_status(done, total)

    def state_dict(self) -> dict:
        return {name: w.state_dict() for name, w in self._wrappers.items()}


def _optimizer_config(cfg: Mapping | None) -> dict[str, Any]:
    opt_cfg = dict(cfg or {})
    for name in opt_cfg:
        if name not in OPTIMIZER_CONFIG_KEYS:
            raise ConfigError(
                f"optimizer_config.{name}: unknown option (allowed: {', '.join(OPTIMIZER_CONFIG_KEYS)})"
            )
    kind = opt_cfg.get("type")
    if kind is not None and kind not in _HOOK_TYPES:
        raise ConfigError(
            f"optimizer_config.type: {kind!r} is not supported (one of {', '.join(_HOOK_TYPES)})"
        )
    counts = opt_cfg.get("accumulative_counts", 1)
    if isinstance(counts, bool) or not isinstance(counts, int) or counts < 1:
        raise ConfigError(
            f"optimizer_config.accumulative_counts: must be a positive integer, got {counts!r}"
        )
    return opt_cfg


def _grad_clip(clip: Any) -> dict | None:
    if not clip:
        return None
    if not isinstance(clip, Mapping) or "max_norm" not in clip:
        raise ConfigError("optimizer_config.grad_clip: expected dict(max_norm=..., norm_type=2)")
    extra = set(clip) - {"max_norm", "norm_type"}
    if extra:
        raise ConfigError(f"optimizer_config.grad_clip.{sorted(extra)[0]}: unknown option")
    return {"max_norm": float(clip["max_norm"]), "norm_type": float(clip.get("norm_type", 2))}


def amp_dtype(optimizer_config: Mapping | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``optimizer_config.amp`` asks for on ``device`` (None: no AMP)."""
    opt_cfg = _optimizer_config(optimizer_config)
    amp = opt_cfg.get("amp", True)
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _scaler(opt_cfg: Mapping, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    if dtype != torch.float16:
        return None  # bfloat16 needs no loss scaling
    scale = opt_cfg.get("loss_scale", "dynamic")
    if scale == "dynamic" or scale is None:
        return torch.amp.GradScaler("cuda")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(
            f"optimizer_config.loss_scale: expected 'dynamic' or a positive number, got {scale!r}"
        )
    return torch.amp.GradScaler("cuda", init_scale=float(scale))


def build_optim_wrapper(
    model: torch.nn.Module,
    optimizer_cfg: Mapping,
    optimizer_config: Mapping | None,
    device: torch.device,
    sync_grads: bool = False,
) -> OptimWrapper | OptimWrapperDict:
    """``OptimWrapper`` for one ``optimizer`` dict, ``OptimWrapperDict`` for one per sub-module."""
    opt_cfg = _optimizer_config(optimizer_config)
    clip = _grad_clip(opt_cfg.get("grad_clip"))
    dtype = amp_dtype(opt_cfg, device)
    scaler = _scaler(opt_cfg, dtype)
    optimizers = build_optimizers(model, optimizer_cfg)
    wrappers = {
        name: OptimWrapper(
            opt,
            clip,
            opt_cfg.get("accumulative_counts", 1),
            dtype,
            scaler,
            sync_grads,
            device.type,
        )
        for name, opt in optimizers.items()
    }
    if list(wrappers) == [""]:
        return wrappers[""]
    return OptimWrapperDict(**wrappers)


def optimizers_of(
    wrapper: OptimWrapper | OptimWrapperDict | None,
) -> dict[str, torch.optim.Optimizer]:
    """``{"": optimizer}`` or ``{name: optimizer}``: the torch optimizers inside ``wrapper``."""
    if wrapper is None:
        return {}
    if isinstance(wrapper, OptimWrapper):
        return {"": wrapper.optimizer}
    return {name: w.optimizer for name, w in wrapper.items()}
