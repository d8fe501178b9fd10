"""The ``hpo`` section of a training config: objective (metric, direction) and search space.

Space keys are the dotted paths ``--cfg-options`` uses; each must name a value that exists in
the config, so a typo fails before the first trial with the key in the message. Parsing imports
neither torch, mlflow nor optuna (``suggest`` receives an Optuna trial from the caller).

Example:
    hpo = dict(
        metric="val/top_1",
        direction="maximize",
        space={
            "optimizer.lr": dict(type="float", low=1e-4, high=0.3, log=True),
            "model.backbone.widen_factor": dict(type="int", low=1, high=4),
            "optimizer.type": dict(type="categorical", choices=["SGD", "AdamW"]),
        },
    )
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from antgo_mlflow.errors import ConfigError

SECTION = "hpo"
SECTION_KEYS = ("metric", "direction", "space", "sampler", "pruner")
KINDS = ("float", "int", "categorical")
_DIM_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_DIRECTIONS = {"maximize": "maximize", "max": "maximize", "minimize": "minimize", "min": "minimize"}
_LESS_IS_BETTER = ("loss", "error", "err", "mse", "mae", "rmse", "nll")
#: the value types Optuna stores for a categorical choice
_CHOICE_TYPES = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Dimension:
    """One searched value: ``key`` (dotted config path) and its distribution."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """Draw this value from an Optuna ``trial``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self, where: str) -> list:
        """Every value of a discrete dimension (for ``--sampler=grid``)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if not self.step:
            raise ConfigError(
                f"{where}.{self.key}: --sampler=grid needs discrete values; give this float "
                "a step= or make it type='categorical'"
            )
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def as_dict(self) -> dict:
        """The config form of this dimension (for logging)."""
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class HpoSpec:
    """The parsed ``hpo`` section."""

    metric: str  # 'val/<key>' as the MLflow hook logs it
    direction: str  # 'maximize' | 'minimize'
    space: tuple[Dimension, ...]
    sampler: Mapping[str, Any] = field(default_factory=dict)  # dict(type=..., **kwargs)
    pruner: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metric_key(self) -> str:
        """The key of the evaluation's metric dict (``top_1`` for ``val/top_1``)."""
        return self.metric.split("/", 1)[1]

    def space_json(self) -> str:
        """The space as JSON text (logged on the study's run)."""
        return json.dumps({d.key: d.as_dict() for d in self.space}, sort_keys=True)

    def grid(self, where: str = f"{SECTION}.space") -> dict[str, list]:
        """``{key: values}`` for Optuna's GridSampler."""
        return {d.key: d.grid_values(where) for d in self.space}

    def grid_size(self) -> int:
        size = 1
        for values in self.grid().values():
            size *= len(values)
        return size


def infer_direction(metric: str) -> str:
    """'minimize' for loss/error-like names, else 'maximize'."""
    name = metric.lower()
    return "minimize" if any(tok in name for tok in _LESS_IS_BETTER) else "maximize"


def _where(cfg) -> str:
    return getattr(cfg, "filename", None) or "the config"


def _number(value: Any, where: str, integer: bool) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{where}: must be {kind}, got {value!r}")
    return value


def parse_dimension(key: str, spec: Any, where: str) -> Dimension:
    """Validate one space entry (``dict(type=..., ...)``) and return it as a Dimension."""
    where = f"{where}.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected dict(type='float'|'int'|'categorical', ...)")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}.type: must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(spec) - _DIM_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(_DIM_KEYS[kind]))
        raise ConfigError(f"{where}.{unknown[0]}: unknown option for type={kind} ({allowed})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list")
        for i, choice in enumerate(choices):
            if not isinstance(choice, _CHOICE_TYPES):
                raise ConfigError(
                    f"{where}.choices.{i}: {choice!r} is not a number, string, bool or None"
                )
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}.choices: has duplicates")
        return Dimension(key, kind, choices=tuple(choices))
    integer = kind == "int"
    for name in ("low", "high"):
        if name not in spec:
            raise ConfigError(f"{where}.{name}: missing (type={kind} needs low and high)")
    low = _number(spec["low"], f"{where}.low", integer)
    high = _number(spec["high"], f"{where}.high", integer)
    if low > high:
        raise ConfigError(f"{where}: low={low!r} is greater than high={high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: must be True or False, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}.low: must be > 0 with log=True, got {low!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, f"{where}.step", integer)
        if step <= 0:
            raise ConfigError(f"{where}.step: must be > 0, got {step!r}")
        if log and step != 1:
            raise ConfigError(f"{where}: step and log=True cannot be combined")
        if integer and step == 1:
            step = None
    return Dimension(key, kind, low=low, high=high, log=log, step=step)


def check_key(cfg: Mapping, key: str, where: str) -> None:
    """Fail unless dotted ``key`` names an existing value of ``cfg`` (dict keys, list indices)."""
    node: Any = cfg
    walked: list[str] = []
    for part in key.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                here = ".".join(walked) or "the top level"
                hint = difflib.get_close_matches(part, [str(k) for k in node], n=1)
                suffix = f" (did you mean {'.'.join([*walked, hint[0]])!r}?)" if hint else ""
                raise ConfigError(
                    f"{where}: {key!r} is not in {_where(cfg)}: {here} has no key {part!r}{suffix}"
                )
            node = node[part]
        elif isinstance(node, (list, tuple)):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise ConfigError(
                    f"{where}: {key!r} is not in {_where(cfg)}: {'.'.join(walked)} is a list "
                    f"of {len(node)}, {part!r} is not an index"
                ) from None
        else:
            raise ConfigError(
                f"{where}: {key!r} is not in {_where(cfg)}: {'.'.join(walked)} is a "
                f"{type(node).__name__}, not a dict"
            )
        walked.append(part)


def _algorithm(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"type": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a name or dict(type=..., **options)")
    return dict(value)


def parse_spec(cfg: Mapping) -> HpoSpec:
    """Parse and validate ``cfg.hpo`` against ``cfg`` itself (keys must exist, validation must run).

    Raises:
        ConfigError: one line naming the config file and the ``hpo.…`` key that is wrong.
    """
    section = cfg.get(SECTION)
    if section is None:
        raise ConfigError(
            f"{SECTION}: {_where(cfg)} has no hpo section (add hpo = dict(metric='val/top_1', "
            "direction='maximize', space={'optimizer.lr': dict(type='float', low=1e-4, "
            "high=0.1, log=True)}))"
        )
    if not isinstance(section, Mapping):
        raise ConfigError(f"{SECTION}: expected a dict in {_where(cfg)}")
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(
            f"{SECTION}.{unknown[0]}: unknown key in {_where(cfg)} ({', '.join(SECTION_KEYS)})"
        )
    metric = section.get("metric", "val/top_1")
    if not isinstance(metric, str) or not metric.strip("/"):
        raise ConfigError(f"{SECTION}.metric: expected a name like 'val/top_1', got {metric!r}")
    if "/" not in metric:
        metric = f"val/{metric}"
    if not metric.startswith("val/"):
        raise ConfigError(
            f"{SECTION}.metric: {metric!r} is not a validation metric (expected 'val/<key>' "
            "of evaluation.metric)"
        )
    evaluation = cfg.get("evaluation") or {}
    data = cfg.get("data") or {}
    if not evaluation.get("metric") or not data.get("val"):
        missing = "evaluation.metric" if not evaluation.get("metric") else "data.val"
        raise ConfigError(
            f"{SECTION}.metric: {metric} comes from validation, but {_where(cfg)} has no {missing}"
        )
    direction = section.get("direction") or infer_direction(metric)
    if direction not in _DIRECTIONS:
        raise ConfigError(
            f"{SECTION}.direction: must be 'maximize' or 'minimize', got {direction!r}"
        )
    space = section.get("space")
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            f"{SECTION}.space: expected a non-empty dict of dotted keys, e.g. "
            "{'optimizer.lr': dict(type='float', low=1e-4, high=0.1, log=True)}"
        )
    dims = []
    for key, spec in space.items():
        if not isinstance(key, str) or not key or not all(key.split(".")):
            raise ConfigError(f"{SECTION}.space: {key!r} is not a dotted config key")
        if key == SECTION or key.startswith(f"{SECTION}."):
            raise ConfigError(f"{SECTION}.space.{key}: the hpo section cannot search itself")
        dims.append(parse_dimension(key, spec, f"{SECTION}.space"))
        check_key(cfg, key, f"{SECTION}.space")
    return HpoSpec(
        metric=metric,
        direction=_DIRECTIONS[direction],
        space=tuple(dims),
        sampler=_algorithm(section.get("sampler"), f"{SECTION}.sampler"),
        pruner=_algorithm(section.get("pruner"), f"{SECTION}.pruner"),
    )
