"""Sampler and pruner choice: ``--sampler=tpe|random|cmaes|grid``, ``--pruner=median|hyperband|none``.

Names are checked without importing Optuna (bad flags fail fast); options for the chosen algorithm
may come from the config (``hpo.sampler=dict(type='tpe', n_startup_trials=4)``) and are checked
against the Optuna constructor's signature, so a typo names the key.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from antgo_mlflow.errors import ConfigError, MissingDependencyError, UsageError
from antgo_mlflow.hpo.space import SECTION, HpoSpec

SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "hyperband", "none")


def check_names(sampler: str, pruner: str) -> None:
    """One-line UsageError for an unknown sampler or pruner name."""
    if sampler not in SAMPLERS:
        raise UsageError(f"--sampler={sampler}: unknown sampler (one of {', '.join(SAMPLERS)})")
    if pruner not in PRUNERS:
        raise UsageError(f"--pruner={pruner}: unknown pruner (one of {', '.join(PRUNERS)})")


def _options(cls, chosen: str, from_cfg: Mapping[str, Any], where: str) -> dict:
    """The config's options for ``chosen`` (ignored if the config names another algorithm)."""
    options = dict(from_cfg)
    named = options.pop("type", chosen)
    if named != chosen:
        return {}
    params = inspect.signature(cls).parameters
    for key in options:
        if key not in params or key in ("search_space", "seed"):
            allowed = ", ".join(p for p in params if p not in ("search_space", "seed"))
            raise ConfigError(f"{where}.{key}: not an option of {cls.__name__} ({allowed})")
    return options


def worker_seed(seed: int | None, index: int, first_number: int) -> int | None:
    """The sampler seed of worker ``index`` in a run of a study that starts at trial
    ``first_number``. Each worker and each continuation of a study draws its own sequence: the
    same ``--seed`` on a continued study would otherwise repeat the first run's random draws."""
    if seed is None:
        return None
    return (seed + index + 1_000_003 * first_number) % 2**32


def build_sampler(name: str, spec: HpoSpec, seed: int | None, parallel: bool = False):
    """The Optuna sampler ``name`` for ``spec`` (``parallel``: several workers share the study)."""
    import optuna

    where = f"{SECTION}.sampler"
    if name == "tpe":
        cls = optuna.samplers.TPESampler
        options = _options(cls, name, spec.sampler, where)
        if parallel:
            # running trials count as bad guesses, so workers do not all probe the same region
            options.setdefault("constant_liar", True)
        return cls(seed=seed, **options)
    if name == "random":
        cls = optuna.samplers.RandomSampler
        return cls(seed=seed, **_options(cls, name, spec.sampler, where))
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401  optuna's CmaEsSampler needs it at the first trial
        except ImportError as exc:
            raise MissingDependencyError(
                "--sampler=cmaes needs the cmaes package: pip install 'antgo-mlflow[hpo]'"
            ) from exc
        cls = optuna.samplers.CmaEsSampler
        return cls(seed=seed, **_options(cls, name, spec.sampler, where))
    if name == "grid":
        cls = optuna.samplers.GridSampler
        return cls(spec.grid(), seed=seed, **_options(cls, name, spec.sampler, where))
    raise UsageError(f"--sampler={name}: unknown sampler (one of {', '.join(SAMPLERS)})")


def build_pruner(name: str, spec: HpoSpec, max_epochs: int | None = None):
    """The Optuna pruner ``name``; steps are epochs (Hyperband's max resource = ``max_epochs``)."""
    import optuna

    where = f"{SECTION}.pruner"
    if name == "median":
        cls = optuna.pruners.MedianPruner
        return cls(**_options(cls, name, spec.pruner, where))
    if name == "hyperband":
        cls = optuna.pruners.HyperbandPruner
        options = _options(cls, name, spec.pruner, where)
        if max_epochs:
            options.setdefault("max_resource", int(max_epochs))
        return cls(**options)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"--pruner={name}: unknown pruner (one of {', '.join(PRUNERS)})")
