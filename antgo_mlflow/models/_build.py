"""Small helpers shared by the model modules: config paths for errors, building sub-modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import current_build, current_path


def config_path(default: str) -> str:
    """The config path of the object being built right now, else ``default``."""
    return current_path(default)


def build_module(registry, cfg: Any, path: str, default_type: str | None = None):
    """Build ``cfg`` from ``registry`` unless it already is an object (an ``nn.Module`` instance).

    ``path`` is used when the Registry cannot find ``cfg`` inside the parent config (defaults).
    """
    if cfg is None:
        if default_type is None:
            return None
        cfg = {"type": default_type}
    if isinstance(cfg, Mapping):
        return registry.build(cfg, path=_nested_path(cfg, path))
    if callable(cfg) and not isinstance(cfg, type):  # an already built module
        return cfg
    raise ConfigError(f"{path}: expected a dict with a 'type' key, got {cfg!r}")


def _nested_path(cfg: Any, fallback: str) -> str:
    # The parent being built knows where `cfg` sits; a default value is not inside it.
    current = current_build()
    if current is not None:
        parent_path, parent = current
        if isinstance(parent, Mapping):
            for key, value in parent.items():
                if value is cfg:
                    return f"{parent_path}.{key}"
        return f"{parent_path}.{fallback.rsplit('.', 1)[-1]}"
    return fallback


def as_float_list(value: Any, path: str) -> list[float] | None:
    """Check that ``value`` is None or a list of numbers (class weights) and return it."""
    if value is None:
        return None
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: expected a list of numbers, got {value!r}") from None
    if not values:
        raise ConfigError(f"{path}: expected a non-empty list of numbers")
    return values
