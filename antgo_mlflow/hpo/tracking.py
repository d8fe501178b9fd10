"""The study in MLflow: a parent run (definition, best trial, plots) over the trials' child runs.

The child runs are made by the engine's MlflowLoggerHook (``parent_run_id``); this module opens
and summarises the parent, and closes the run of a trial whose worker died.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from antgo_mlflow.hpo import plots
from antgo_mlflow.hpo.keys import (
    EXPERIMENT_ATTR,
    PARENT_ATTR,
    RUN_ID_ATTR,
    STATE_TAG,
    TAG_STUDY,
    TAG_TRIAL,
)
from antgo_mlflow.hpo.space import HpoSpec
from antgo_mlflow.hpo.table import to_json, trial_rows

_VALUE_LIMIT = 5000
KILLED_REASON_TAG = "antgo.killed_reason"


def _tags(items: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(str(k), str(v)[:_VALUE_LIMIT]) for k, v in items.items()]


def open_study_run(
    client: MlflowClient, experiment_id: str, study, spec: HpoSpec, tags: Mapping[str, Any]
) -> tuple[str, bool]:
    """The study's parent run: ``$MLFLOW_RUN_ID`` (``mlflow run -e hpo``), else the run a
    resumed study recorded, else a new one. Returns ``(run_id, created)``; the run is RUNNING."""
    run_id = os.environ.get("MLFLOW_RUN_ID") or study.user_attrs.get(PARENT_ATTR)
    created = False
    if run_id:
        try:
            client.get_run(run_id)
        except MlflowException:
            run_id = None
    if not run_id:
        from mlflow.tracking.context.registry import resolve_tags

        run = client.create_run(
            experiment_id,
            run_name=study.study_name,
            tags=resolve_tags({"antgo.process": "hpo", TAG_STUDY: study.study_name}),
        )
        run_id, created = run.info.run_id, True
    client.update_run(run_id, status="RUNNING")
    client.log_batch(
        run_id, tags=_tags({"antgo.process": "hpo", TAG_STUDY: study.study_name, **tags})
    )
    existing = client.get_run(run_id).data.params
    params = {
        "hpo.metric": spec.metric,
        "hpo.direction": spec.direction,
        **{f"hpo.space.{d.key}": json.dumps(d.as_dict()) for d in spec.space},
    }
    new = [Param(k[:250], str(v)[:6000]) for k, v in params.items() if k not in existing]
    if new:
        client.log_batch(run_id, params=new)
    study.set_user_attr(PARENT_ATTR, run_id)
    study.set_user_attr(EXPERIMENT_ATTR, experiment_id)
    return run_id, created


def own_study_run(client: MlflowClient, run_id: str):
    """Record this process as the study run's owner, with a heartbeat (``engine.run_owner``), so
    a study killed with ``kill -9`` is reaped KILLED by ``antgo show exp`` instead of staying
    RUNNING. Returns the heartbeat; ``stop()`` it when the study ends. With several ``antgo
    hpo`` processes on one study (many machines), the last one to start is the owner."""
    from antgo_mlflow.engine.run_owner import claim

    return claim(client, client.get_run(run_id))


def summarise(client: MlflowClient, run_id: str, study, spec: HpoSpec) -> dict[str, Any]:
    """Log the best trial (value, params, run id), counts, the trials table and the plots on the
    study run; returns the summary (empty ``best`` when no trial completed)."""
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in states}
    summary: dict[str, Any] = {"counts": counts, "best": {}}
    metrics = [Metric(f"hpo/n_{k}", float(v), _now_ms(), 0) for k, v in counts.items() if v]
    tags: dict[str, Any] = {"antgo.hpo.n_trials": len(trials)}
    complete = [t for t in trials if t.state == states.COMPLETE]
    if complete:
        best = study.best_trial
        best_run = best.user_attrs.get(RUN_ID_ATTR)
        summary["best"] = {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "mlflow_run_id": best_run,
        }
        tags.update(
            {
                "antgo.hpo.best_trial": best.number,
                "antgo.hpo.best_value": repr(best.value),
                "antgo.hpo.best_params": json.dumps(best.params, sort_keys=True),
                **{f"antgo.hpo.best.{k}": v for k, v in best.params.items()},
            }
        )
        if best_run:
            tags["antgo.hpo.best_run_id"] = best_run
        # the study run sorts in the MLflow UI by the same column as its trials
        metrics.append(Metric(spec.metric, float(best.value), _now_ms(), 0))
        metrics.append(Metric("hpo/best_value", float(best.value), _now_ms(), 0))
    client.log_batch(run_id, metrics=metrics, tags=_tags(tags))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "trials.json").write_text(to_json(trial_rows(study)) + "\n")
        (folder / "best.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        plots.optimization_history(study, spec.metric, folder / "optimization_history.png")
        plots.param_importances(study, folder / "param_importances.png")
        client.log_artifacts(run_id, str(folder), "hpo")
    return summary


def end_run(client: MlflowClient, run_id: str, status: str, tags: Mapping[str, Any] = ()) -> None:
    """End ``run_id`` with ``status`` after logging ``tags``."""
    if tags:
        client.log_batch(run_id, tags=_tags(dict(tags)))
    client.set_terminated(run_id, status)


def close_lost_run(trial, reason: str) -> str | None:
    """End the MLflow run of a trial whose worker died (if the run is still RUNNING): KILLED with
    ``antgo.hpo.state=lost`` and the reason in ``antgo.killed_reason`` (as the engine's reaper of
    runs whose trainer is gone). Returns the run id it closed."""
    run_id = trial.user_attrs.get(RUN_ID_ATTR)
    if not run_id:
        return None
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    if run.info.status != "RUNNING" or run.data.tags.get(TAG_TRIAL) != str(trial.number):
        return None  # finished, or a retry clone still pointing at its original's run
    end_run(client, run_id, "KILLED", {STATE_TAG: "lost", KILLED_REASON_TAG: reason})
    return run_id


class RetryLostTrials:
    """Heartbeat-stale trial callback: queue the trial again (Optuna's
    ``RetryHeartbeatStaleTrialCallback``) and close its MLflow run."""

    def __init__(self, grace_s: int, max_retry: int | None = 3):
        import optuna

        self.grace_s = grace_s
        self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study, trial) -> None:
        before = len(study.get_trials(deepcopy=False))
        self._retry(study, trial)
        retried = len(study.get_trials(deepcopy=False)) > before
        reason = f"worker lost: no heartbeat for more than {self.grace_s} s; " + (
            "the trial is queued again" if retried else "retry limit reached"
        )
        with contextlib.suppress(MlflowException):
            close_lost_run(trial, reason)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
