"""The MLflow run of an active-learning step: reuse the caller's run, or own one and end it honestly.

Under ``mlflow run`` (``MLFLOW_RUN_ID``) or inside an active run the step logs into that run and
leaves ending it to its owner. Otherwise it creates a run and ends it FINISHED, FAILED on an error,
or KILLED on Ctrl-C/SIGTERM — never left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from antgo_mlflow.errors import TrackingError


@dataclass
class StepRun:
    """The run a step logs to (``client`` is an ``MlflowClient``)."""

    client: object
    run_id: str
    owned: bool

    def log(
        self,
        params: Mapping[str, object] = (),
        metrics: Mapping[str, float] = (),
        tags: Mapping[str, str] = (),
    ) -> None:
        """Params, metrics and tags in one request (params truncated to MLflow's 6,000 chars)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in dict(metrics).items()],
            params=[Param(k, str(v)[:6000]) for k, v in dict(params).items()],
            tags=[RunTag(k, str(v)) for k, v in dict(tags).items()],
        )

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)


def _experiment_id(client, experiment: str | None) -> str:
    if experiment is None:
        from mlflow.tracking.fluent import _get_experiment_id

        return _get_experiment_id()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TrackingError(f"--project={experiment}: no MLflow experiment of that name")
    return found.experiment_id


@contextlib.contextmanager
def step_run(process: str, run_name: str, experiment: str | None = None) -> Iterator[StepRun]:
    """The run to log an active-learning step to (see the module docstring)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    active = mlflow.active_run()
    run_id = active.info.run_id if active else os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        client.set_tag(run_id, "antgo.process", process)
        yield StepRun(client, run_id, owned=False)
        return
    from mlflow.tracking.context.registry import resolve_tags

    run = client.create_run(
        _experiment_id(client, experiment),
        run_name=run_name,
        tags=resolve_tags({"antgo.process": process}),
    )
    step = StepRun(client, run.info.run_id, owned=True)
    try:
        yield step
    except KeyboardInterrupt:
        client.set_terminated(step.run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(step.run_id, "FAILED")
        raise
    client.set_terminated(step.run_id, "FINISHED")
