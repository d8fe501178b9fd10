"""Optimizers and LR schedules from antgo configs (``optimizer``, ``lr_config``) on torch.optim.

Every ``torch.optim`` optimizer is registered in OPTIMIZERS by its class name and every
``torch.optim.lr_scheduler`` class in SCHEDULERS. antgo's ``lr_config`` policies
(``CosineAnnealing``, ``Step``, ``Poly``, ``OneCycle``, ``Fixed``, plus ``warmup``) are mapped onto
torch's own schedulers (``CosineAnnealingLR``, ``MultiStepLR``, ``PolynomialLR``, ``OneCycleLR``,
``LinearLR``/``ConstantLR`` chained with ``SequentialLR``); nothing is re-implemented.

Example:
    >>> optimizers = build_optimizers(model, dict(type="SGD", lr=0.1, momentum=0.9))
    >>> schedule = build_schedulers(optimizers, dict(policy="CosineAnnealing", min_lr=1e-5,
    ...                             warmup="linear", warmup_iters=100), max_epochs=10,
    ...                             iters_per_epoch=50)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler as tls

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import OPTIMIZERS, SCHEDULERS


def _register_torch() -> None:
    for name, obj in vars(torch.optim).items():
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer):
            if obj is not torch.optim.Optimizer and OPTIMIZERS._modules.get(name) is None:
                OPTIMIZERS.register_module(name=name, module=obj)
    for name, obj in vars(tls).items():
        if inspect.isclass(obj) and issubclass(obj, tls.LRScheduler) and not name.startswith("_"):
            if obj is not tls.LRScheduler and SCHEDULERS._modules.get(name) is None:
                SCHEDULERS.register_module(name=name, module=obj)


_register_torch()


# -- optimizers ---------------------------------------------------------------------------------
def _is_per_module(cfg: Mapping) -> bool:
    return "type" not in cfg and bool(cfg) and all(isinstance(v, Mapping) for v in cfg.values())


def build_optimizers(
    model: torch.nn.Module, cfg: Mapping[str, Any]
) -> dict[str, torch.optim.Optimizer]:
    """Build the optimizer(s) named by ``cfg``: one dict with ``type``, or one per sub-module.

    Returns ``{"": optimizer}`` for a single optimizer over all parameters, or
    ``{"teacher": ..., "student": ...}`` for a per-module dict (keys are attribute names of the model).
    """
    if not isinstance(cfg, Mapping) or not cfg:
        raise ConfigError("optimizer: expected dict(type='SGD', lr=...) or a dict per sub-module")
    if not _is_per_module(cfg):
        params = [p for p in model.parameters() if p.requires_grad]
        return {"": _build_one(cfg, params, "optimizer")}
    out = {}
    for name, sub in cfg.items():
        module = getattr(model, name, None)
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"optimizer.{name}: the model has no sub-module {name!r}")
        params = [p for p in module.parameters() if p.requires_grad]
        out[name] = _build_one(sub, params, f"optimizer.{name}")
    return out


def _build_one(cfg: Mapping, params: list, path: str) -> torch.optim.Optimizer:
    cfg = dict(cfg)
    if "params" in cfg:
        raise ConfigError(f"{path}.params: parameters come from the model; remove this key")
    if not params:
        raise ConfigError(f"{path}: the model has no trainable parameters to optimise")
    return OPTIMIZERS.build(cfg, path=path, default_args={"params": params})


# -- schedules ----------------------------------------------------------------------------------
POLICIES = ("CosineAnnealing", "Step", "Poly", "OneCycle", "Fixed", "Exp", "Linear")
WARMUPS = ("linear", "constant", "exp")


@dataclass
class Schedule:
    """The schedulers for each optimizer and whether they step per iteration or per epoch."""

    schedulers: dict[str, Any]
    by_epoch: bool
    constant: bool = False  # every LR stays fixed: the Runner need not step it

    def step(self) -> None:
        for sched in self.schedulers.values():
            sched.step()

    def state_dict(self) -> dict:
        return {name: s.state_dict() for name, s in self.schedulers.items()}

    def load_state_dict(self, state: Mapping) -> None:
        for name, s in self.schedulers.items():
            if name in state:
                s.load_state_dict(state[name])


def build_schedulers(
    optimizers: Mapping[str, torch.optim.Optimizer],
    cfg: Mapping[str, Any] | None,
    max_epochs: int,
    iters_per_epoch: int,
    total_iters: int | None = None,
) -> Schedule:
    """Build the LR schedule(s) from ``lr_config`` (one for all optimizers, or one per name).

    antgo policies step every iteration (``step=[..]`` and warm-up are in epochs/iterations as in
    antgo); a raw torch scheduler (``type='StepLR'``) steps per epoch unless ``by_epoch=False``.
    ``total_iters`` (default ``max_epochs * iters_per_epoch``) is the length of the whole run.
    """
    cfg = dict(cfg or {"policy": "Fixed"})
    per_module = set(cfg) <= set(optimizers) and all(isinstance(v, Mapping) for v in cfg.values())
    per_module = per_module and bool(cfg) and list(optimizers) != [""]
    scheds: dict[str, Any] = {}
    by_epoch_flags = set()
    for name, opt in optimizers.items():
        sub = dict(cfg[name]) if per_module else dict(cfg)
        path = f"lr_config.{name}" if per_module else "lr_config"
        total = total_iters or max_epochs * iters_per_epoch
        sched, by_epoch = _build_schedule(opt, sub, path, total, iters_per_epoch)
        scheds[name] = sched
        by_epoch_flags.add(by_epoch)
    if len(by_epoch_flags) > 1:
        raise ConfigError(
            "lr_config: per-module schedules must all step per epoch or per iteration"
        )
    constant = all(getattr(s, "_antgo_fixed", False) for s in scheds.values())
    return Schedule(scheds, by_epoch_flags.pop() if by_epoch_flags else False, constant)


def _build_schedule(opt, cfg: dict, path: str, total_iters: int, iters_per_epoch: int):
    if "type" in cfg:
        by_epoch = bool(cfg.pop("by_epoch", True))
        return SCHEDULERS.build(cfg, path=path, default_args={"optimizer": opt}), by_epoch
    policy = cfg.pop("policy", "Fixed")
    if policy not in POLICIES:
        raise ConfigError(
            f"{path}.policy: unknown policy {policy!r} (one of {', '.join(POLICIES)})"
        )
    by_epoch = bool(cfg.pop("by_epoch", True))  # antgo: milestones/step counts are in epochs
    warmup = cfg.pop("warmup", None)
    warmup_iters = int(cfg.pop("warmup_iters", 0) or 0)
    warmup_ratio = float(cfg.pop("warmup_ratio", 0.1))
    if cfg.pop("warmup_by_epoch", False):
        warmup_iters *= iters_per_epoch
    if warmup is not None and warmup not in WARMUPS:
        raise ConfigError(
            f"{path}.warmup: unknown warm-up {warmup!r} (one of {', '.join(WARMUPS)})"
        )
    if warmup is not None and warmup_iters <= 0:
        raise ConfigError(f"{path}.warmup_iters: must be a positive number of iterations")
    if warmup is None:
        warmup_iters = 0
    total = max(1, total_iters)
    unit = iters_per_epoch if by_epoch else 1
    main_iters = max(1, total - warmup_iters)
    try:
        main = _policy(policy, opt, cfg, path, main_iters, unit, total)
    except TypeError as exc:
        raise ConfigError(f"{path}: bad argument for policy {policy}: {exc}") from exc
    if policy == "OneCycle" or not warmup_iters:
        return main, False
    if warmup == "linear":
        warm = tls.LinearLR(
            opt, start_factor=warmup_ratio, end_factor=1.0, total_iters=warmup_iters
        )
    elif warmup == "constant":
        warm = tls.ConstantLR(opt, factor=warmup_ratio, total_iters=warmup_iters)
    else:
        gamma = warmup_ratio ** (1.0 / warmup_iters)
        warm = tls.LambdaLR(opt, _ExpWarmup(warmup_ratio, gamma, warmup_iters))
    return tls.SequentialLR(opt, [warm, main], milestones=[warmup_iters]), False


class _ExpWarmup:
    """LambdaLR factor for an exponential warm-up (a class so its state pickles with the scheduler)."""

    def __init__(self, ratio: float, gamma: float, iters: int):
        self.ratio, self.gamma, self.iters = ratio, gamma, iters

    def __call__(self, step: int) -> float:
        return 1.0 if step >= self.iters else self.ratio / (self.gamma**step)


def _check_keys(cfg: dict, allowed: tuple[str, ...], path: str, policy: str) -> None:
    for key in cfg:
        if key not in allowed:
            raise ConfigError(
                f"{path}.{key}: policy {policy} has no argument {key!r} (allowed: {', '.join(allowed)})"
            )


def _policy(policy: str, opt, cfg: dict, path: str, n: int, unit: int, total: int):
    if policy == "Fixed":
        _check_keys(cfg, (), path, policy)
        sched = tls.ConstantLR(opt, factor=1.0, total_iters=0)
        sched._antgo_fixed = True  # stepping it changes nothing: the Runner skips it
        return sched
    if policy == "CosineAnnealing":
        _check_keys(cfg, ("min_lr", "min_lr_ratio"), path, policy)
        if "min_lr_ratio" in cfg:
            base = opt.param_groups[0]["lr"]
            return tls.CosineAnnealingLR(opt, T_max=n, eta_min=base * float(cfg["min_lr_ratio"]))
        return tls.CosineAnnealingLR(opt, T_max=n, eta_min=float(cfg.get("min_lr", 0.0)))
    if policy == "Step":
        _check_keys(cfg, ("step", "gamma", "min_lr"), path, policy)
        step = cfg.get("step")
        gamma = float(cfg.get("gamma", 0.1))
        if step is None:
            raise ConfigError(f"{path}.step: policy Step needs step=<int> or a list of epochs")
        if isinstance(step, int):
            return tls.StepLR(opt, step_size=max(1, step * unit), gamma=gamma)
        return tls.MultiStepLR(opt, milestones=[int(s) * unit for s in step], gamma=gamma)
    if policy == "Poly":
        _check_keys(cfg, ("power", "min_lr"), path, policy)
        power = float(cfg.get("power", 1.0))
        min_lr = float(cfg.get("min_lr", 0.0))
        if min_lr == 0.0:
            return tls.PolynomialLR(opt, total_iters=n, power=power)
        base = opt.param_groups[0]["lr"]
        return tls.LambdaLR(opt, _PolyFactor(n, power, min_lr / base if base else 0.0))
    if policy == "Exp":
        _check_keys(cfg, ("gamma",), path, policy)
        return tls.ExponentialLR(opt, gamma=float(cfg.get("gamma", 0.99)) ** (1.0 / unit))
    if policy == "Linear":
        _check_keys(cfg, ("end_factor",), path, policy)
        return tls.LinearLR(opt, 1.0, float(cfg.get("end_factor", 0.0)), total_iters=n)
    # OneCycle: torch's OneCycleLR owns the whole schedule, warm-up included.
    allowed = (
        "max_lr",
        "pct_start",
        "anneal_strategy",
        "div_factor",
        "final_div_factor",
        "three_phase",
    )
    _check_keys(cfg, allowed, path, policy)
    kwargs = dict(cfg)
    kwargs.setdefault("max_lr", [g["lr"] for g in opt.param_groups])
    return tls.OneCycleLR(opt, total_steps=total, **kwargs)


class _PolyFactor:
    """LambdaLR factor for a polynomial decay to ``min_ratio`` of the base LR."""

    def __init__(self, total: int, power: float, min_ratio: float):
        self.total, self.power, self.min_ratio = total, power, min_ratio

    def __call__(self, step: int) -> float:
        progress = min(step, self.total) / self.total
        return (1 - self.min_ratio) * math.pow(1 - progress, self.power) + self.min_ratio


def current_lr(optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, float]:
    """The first param group's LR of each optimizer, keyed ``lr`` or ``lr_<name>``."""
    return {
        ("lr" if not name else f"lr_{name}"): float(opt.param_groups[0]["lr"])
        for name, opt in optimizers.items()
    }
