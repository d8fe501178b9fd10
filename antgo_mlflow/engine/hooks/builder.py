"""The hooks a run gets from its config: ``checkpoint_config``, ``log_config.hooks``, ``custom_hooks``."""

from __future__ import annotations

from collections.abc import Mapping

from antgo_mlflow.engine.hooks.base import Hook, get_priority
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import HOOKS


def config_hooks(cfg: Mapping, is_main: bool) -> list[Hook]:
    """Checkpoint, text and MLflow hooks (rank 0 only), then ``custom_hooks`` (every rank).

    ``log_config.hooks`` defaults to a TextLoggerHook; a MlflowLoggerHook is added unless listed
    or ``log_config.mlflow=False``.
    """
    hooks: list[Hook] = []
    log_cfg = dict(cfg.get("log_config") or {})
    listed = log_cfg.get("hooks")
    listed = [dict(type="TextLoggerHook")] if listed is None else list(listed)
    if is_main:
        ckpt_cfg = dict(cfg.get("checkpoint_config") or {})
        ckpt_cfg.setdefault("type", "CheckpointHook")
        ckpt_cfg.pop("out_dir", None)  # the Runner's work_dir wins (antgo's --root)
        hooks.append(build_hook(ckpt_cfg, "checkpoint_config"))
        types = [h.get("type") for h in listed if isinstance(h, Mapping)]
        if "MlflowLoggerHook" not in types and log_cfg.get("mlflow", True):
            listed.append(dict(type="MlflowLoggerHook"))
        for i, h in enumerate(listed):
            hooks.append(build_hook(h, f"log_config.hooks.{i}"))
    for i, h in enumerate(cfg.get("custom_hooks") or []):
        hooks.append(build_hook(h, f"custom_hooks.{i}"))
    return hooks


def build_hook(hook_cfg: Mapping, path: str) -> Hook:
    """A hook from ``dict(type=..., priority=..., **args)``; errors name ``path``."""
    if not isinstance(hook_cfg, Mapping):
        raise ConfigError(f"{path}: expected dict(type=...), got {hook_cfg!r}")
    hook_cfg = dict(hook_cfg)
    priority = hook_cfg.pop("priority", None)
    hook = HOOKS.build(hook_cfg, path=path)
    if not isinstance(hook, Hook):
        raise ConfigError(f"{path}.type: {hook_cfg.get('type')} is not a Hook")
    if priority is not None:
        try:
            get_priority(priority)
        except ValueError as exc:
            raise ConfigError(f"{path}.priority: {exc}") from None
        hook.priority = priority
    return hook
