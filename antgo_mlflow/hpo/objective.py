"""The objective: one trial = the config with the trial's values, trained by the engine's Runner.

The trial's MLflow run is made by the config's own MlflowLoggerHook, told to be a child of the
study run; ``OptunaPruningHook`` reports the metric and prunes. A trial that raises an error that
is not a config problem fails alone (``TrialFailed``, caught by Optuna); config errors
(``AntgoError``: a metric the evaluation never logs, a bad key) stop the study.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path

import optuna
from mlflow import MlflowClient

from antgo_mlflow.config import Config
from antgo_mlflow.errors import AntgoError
from antgo_mlflow.hpo.keys import (
    ERROR_ATTR,
    RUN_ID_ATTR,
    STATE_TAG,
    TAG_STUDY,
    TAG_TRIAL,
    WORKER_ATTR,
)
from antgo_mlflow.hpo.pruning import MetricNotLogged, OptunaPruningHook
from antgo_mlflow.hpo.space import SECTION, HpoSpec


class TrialFailed(Exception):
    """A trial's training raised; the trial is FAIL and the study goes on."""


def trial_config(
    base: Config,
    params: dict,
    *,
    study_name: str,
    number: int,
    parent_run_id: str,
    experiment_id: str,
    extra_tags: dict | None = None,
) -> Config:
    """``base`` with the trial's values, without the ``hpo`` section, and its MLflow hook set to
    make a child run of the study run."""
    cfg = base.copy()
    cfg.merge_overrides(dict(params))
    cfg.pop(SECTION, None)
    log_cfg = dict(cfg.get("log_config") or {})
    hooks = [dict(h) for h in (log_cfg.get("hooks") or [dict(type="TextLoggerHook")])]
    mlflow_hooks = [h for h in hooks if h.get("type") == "MlflowLoggerHook"]
    if not mlflow_hooks:
        hooks.append(dict(type="MlflowLoggerHook"))
        mlflow_hooks = hooks[-1:]
    hook = mlflow_hooks[0]
    hook.update(
        parent_run_id=parent_run_id,
        experiment_id=experiment_id,
        run_name=f"{study_name}-trial-{number}",
        tags={
            **dict(hook.get("tags") or {}),
            TAG_STUDY: study_name,
            TAG_TRIAL: str(number),
            **(extra_tags or {}),
        },
    )
    log_cfg["hooks"] = hooks
    log_cfg["mlflow"] = True
    cfg.log_config = log_cfg
    return cfg


@contextlib.contextmanager
def _fluent_experiment(experiment_id: str):
    """``mlflow.pytorch.log_model`` files the logged model under the fluent API's experiment
    ($MLFLOW_EXPERIMENT_ID/NAME, else Default), not the run's: point it at the trial's experiment
    for the trial, or ``antgo add expert --id=<trial run>`` finds no model."""
    saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    os.environ["MLFLOW_EXPERIMENT_ID"] = str(experiment_id)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def _frozen(trial):
    """The stored form of a running trial (Optuna 5's Trial has no system_attrs)."""
    trials = trial.study.get_trials(deepcopy=False)
    if trial.number < len(trials) and trials[trial.number].number == trial.number:
        return trials[trial.number]
    return next(t for t in trials if t.number == trial.number)


class Objective:
    """Callable objective for ``study.optimize``.

    Args:
        base: the loaded training config (``--cfg-options`` applied, ``hpo`` still in it).
        spec: the parsed ``hpo`` section.
        study_name, parent_run_id, experiment_id: where trials are recorded.
        work_root: trial ``N`` trains in ``work_root/trial_NNNN``.
        on_start: called first in every trial (releases the claim lock).
        gpu_id: passed to the Runner.
    """

    def __init__(
        self,
        base: Config,
        spec: HpoSpec,
        *,
        study_name: str,
        parent_run_id: str,
        experiment_id: str,
        work_root: Path,
        on_start: Callable[[], None] = lambda: None,
        gpu_id: str | None = None,
    ):
        self.base = base
        self.spec = spec
        self.study_name = study_name
        self.parent_run_id = parent_run_id
        self.experiment_id = experiment_id
        self.work_root = Path(work_root)
        self.on_start = on_start
        self.gpu_id = gpu_id

    def __call__(self, trial: optuna.Trial) -> float:
        self.on_start()
        with _fluent_experiment(self.experiment_id):
            return self._run(trial)

    def _run(self, trial: optuna.Trial) -> float:
        from antgo_mlflow.engine.runner import Runner

        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        params = {d.key: d.suggest(trial) for d in self.spec.space}
        retry_of = _frozen(trial).system_attrs.get("failed_trial")
        extra = {"antgo.hpo.retry_of": str(retry_of)} if retry_of is not None else {}
        cfg = trial_config(
            self.base,
            params,
            study_name=self.study_name,
            number=trial.number,
            parent_run_id=self.parent_run_id,
            experiment_id=self.experiment_id,
            extra_tags=extra,
        )
        hook = OptunaPruningHook(trial, self.spec.metric, self.spec.direction)
        work_dir = self.work_root / f"trial_{trial.number:04d}"
        try:
            runner = Runner(cfg, work_dir=work_dir, gpu_id=self.gpu_id, hooks=[hook])
            runner.train()
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            _set_state(trial, "interrupted")
            raise
        except AntgoError as exc:  # a config problem: the study stops
            _set_state(trial, "failed", str(exc))
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            _set_state(trial, "failed", message)
            raise TrialFailed(message) from exc
        value = hook.value()
        if value is None:
            _set_state(trial, "failed")
            raise MetricNotLogged(
                f"hpo.metric: {self.spec.metric} was never logged: the training ran no validation "
                "(check evaluation.interval and max_epochs)"
            )
        if math.isnan(value):
            _set_state(trial, "failed", f"{self.spec.metric} is NaN")
            raise TrialFailed(f"{self.spec.metric} is NaN")
        _set_state(trial, "complete")
        return value


def _set_state(trial, state: str, error: str | None = None) -> None:
    """Tag the trial's MLflow run with ``antgo.hpo.state`` (and keep the error on the trial)."""
    if error:
        trial.set_user_attr(ERROR_ATTR, " ".join(error.split())[:500])
    run_id = trial.user_attrs.get(RUN_ID_ATTR)
    if run_id:
        with contextlib.suppress(Exception):  # the tag is a convenience, never a new failure
            MlflowClient().set_tag(run_id, STATE_TAG, state)
