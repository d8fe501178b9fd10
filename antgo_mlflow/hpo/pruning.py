"""The engine side of a trial: report the objective at each validation, stop when Optuna prunes.

``OptunaPruningHook`` is an ordinary Hook (registered in HOOKS). At every validation it reports
``metric`` to the trial (step = completed epochs) and asks ``trial.should_prune()``. A pruned
trial stops at the next boundary after the epoch's checkpoint is written (``after_train_epoch``
when validation comes first, else the next ``before_train_epoch``/``before_train_iter``) by
raising ``PruneTrial``: the MLflow hook ends the run KILLED with ``antgo.hpo.state=pruned``,
Optuna records the trial PRUNED, and nothing prints a traceback.
"""

from __future__ import annotations

import math

import optuna

from antgo_mlflow.engine.hooks.base import Hook
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.hpo.keys import RUN_ID_ATTR, STATE_TAG
from antgo_mlflow.registry import HOOKS


class PruneTrial(optuna.TrialPruned):
    """Raised by the hook to stop a pruned trial; carries how its MLflow run must end."""

    run_status = "KILLED"

    def __init__(self, epoch: int, metric: str, value: float):
        super().__init__(f"pruned at epoch {epoch}: {metric}={value:.6g}")
        self.run_tags = {STATE_TAG: "pruned", "antgo.hpo.pruned_at_epoch": str(epoch)}


class MetricNotLogged(ConfigError):
    """The objective's metric is not in what the evaluation returns."""


@HOOKS.register_module()
class OptunaPruningHook(Hook):
    """Report ``metric`` to an Optuna ``trial`` at each validation; stop training when pruned.

    Args:
        trial: the ``optuna.Trial`` this training run evaluates.
        metric: ``'val/<key>'`` of the evaluation's metric dict.
        direction: ``'maximize'`` or ``'minimize'`` (which value is the best so far).
        prune: False only reports (the pruner still sees the values).
    """

    priority = "LOWEST"  # after the checkpoint and MLflow hooks at every point

    def __init__(self, trial, metric: str = "val/top_1", direction: str = "maximize", prune=True):
        self.trial = trial
        self.metric = metric if "/" in metric else f"val/{metric}"
        self.key = self.metric.split("/", 1)[1]
        self.maximize = direction == "maximize"
        self.prune = prune
        self.best: float | None = None
        self.last: float | None = None
        self.reported = 0
        self._pruned: PruneTrial | None = None

    def before_run(self, runner) -> None:
        # the MLflow hook (priority VERY_LOW) has made the run: remember it on the trial, so the
        # run can be closed if this worker dies
        if runner.run_id:
            self.trial.set_user_attr(RUN_ID_ATTR, runner.run_id)

    def after_val_epoch(self, runner, metrics: dict) -> None:
        if not metrics:
            return  # not the main process
        if self.key not in metrics:
            logged = ", ".join(f"val/{k}" for k in metrics) or "nothing"
            raise MetricNotLogged(
                f"hpo.metric: {self.metric} is never logged by the evaluation (it logs: {logged})"
            )
        value = float(metrics[self.key])
        step = int(runner.epoch)
        self.last = value
        if not math.isnan(value) and (
            self.best is None or (value > self.best if self.maximize else value < self.best)
        ):
            self.best = value
        self.trial.report(value, step)
        self.reported += 1
        max_epochs = getattr(runner, "max_epochs", None)
        last_epoch = max_epochs is not None and step >= max_epochs
        if self.prune and not last_epoch and self.trial.should_prune():
            self._pruned = PruneTrial(step, self.metric, value)

    def _stop_if_pruned(self) -> None:
        if self._pruned is not None:
            raise self._pruned

    def after_train_epoch(self, runner) -> None:
        self._stop_if_pruned()

    def before_train_epoch(self, runner) -> None:
        self._stop_if_pruned()

    def before_train_iter(self, runner, batch_idx, batch) -> None:
        self._stop_if_pruned()

    def value(self) -> float | None:
        """The trial's objective: the best reported value (the model ``best.pth`` keeps when
        ``evaluation.save_best`` is the same metric)."""
        return self.best if self.best is not None else self.last
