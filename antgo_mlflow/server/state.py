"""The loop's state, in MLflow only: one pipeline run per iteration, one child run per step.

A step run carries the tags ``antgo.pipeline.iteration``, ``antgo.pipeline.step`` and
``antgo.pipeline.key`` (sha256 of the step name, iteration and its JSON inputs). A key with a
FINISHED run is skipped and its recorded outputs (tag ``antgo.pipeline.outputs``) are returned, so a
server killed at any moment and restarted continues at the first unfinished step. An unfinished run
of the key (its server was killed, or an attempt failed) is continued - the same MLflow run - so no
duplicate runs appear; one server holds a project (``lock.py``), so such a run has no live owner.

Example:
    >>> pipe = pipeline_run(client, experiment_id, "unlabel:batch1:<sha>")
    >>> out = run_step(ctx, "predict", {"pool": "..."}, predict_fn)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from antgo_mlflow.errors import AntgoError

KIND = "antgo.pipeline.kind"  # "pipeline" | "step"
ITERATION = "antgo.pipeline.iteration"
SOURCE = "antgo.pipeline.source"  # what started the iteration (a registration's tag + digest)
STEP = "antgo.pipeline.step"
KEY = "antgo.pipeline.key"
OUTPUTS = "antgo.pipeline.outputs"
ATTEMPTS = "antgo.pipeline.attempts"
STATE = "antgo.pipeline.state"  # running | waiting | finished | failed
NOTE = "antgo.pipeline.note"  # the last thing a step said (waiting on N tasks, why not promoted)
PARENT = "mlflow.parentRunId"
TAG_MAX = 5000  # MLflow tag values are limited; outputs are paths and counts


class StepWaiting(AntgoError):
    """A step cannot finish yet (labelling in progress, Label Studio unreachable): retry later."""


class StepFailed(AntgoError):
    """A step failed more often than the project's retry count: the iteration is failed."""


@dataclass
class Context:
    """What a step needs: the project, its MLflow experiment, the iteration and where files go."""

    project: str
    client: Any
    experiment_id: str
    iteration: int
    pipeline_run_id: str
    workdir: Any  # pathlib.Path: the iteration's folder (files the steps write)
    settings: dict = field(default_factory=dict)
    echo: Callable[[str], Any] = print
    retries: int = 2
    step_run_id: str | None = None  # set while a step runs

    def tag(self, key: str, value: str) -> None:
        """Set a tag on the running step's run (e.g. a Label Studio project id, at once)."""
        self.client.set_tag(self.step_run_id, key, value)

    def step_tags(self) -> dict[str, str]:
        """The running step run's tags (what an earlier attempt recorded)."""
        return dict(self.client.get_run(self.step_run_id).data.tags)


def digest(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def step_key(iteration: int, step: str, inputs: Mapping[str, Any]) -> str:
    """The idempotence key of ``step`` of ``iteration`` with ``inputs``."""
    return digest({"iteration": iteration, "step": step, "inputs": inputs})


def _search(client, experiment_id: str, filters: Mapping[str, str], order: str = "start_time ASC"):
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in filters.items())
    return client.search_runs(
        [experiment_id], query, max_results=1000, order_by=[f"attributes.{order}"]
    )


def pipeline_runs(client, experiment_id: str) -> list:
    """Every pipeline run of the experiment, oldest first."""
    return _search(client, experiment_id, {KIND: "pipeline"})


def find_pipeline(client, experiment_id: str, source: str):
    """The pipeline run started for ``source`` (None if there is none)."""
    runs = _search(client, experiment_id, {KIND: "pipeline", SOURCE: source})
    return runs[0] if runs else None


def pipeline_run(client, experiment_id: str, source: str, project: str):
    """The pipeline run of ``source``: the existing one, else a new one numbered after the last."""
    run = find_pipeline(client, experiment_id, source)
    if run is not None:
        return run
    iterations = [int(r.data.tags.get(ITERATION, 0)) for r in pipeline_runs(client, experiment_id)]
    iteration = max(iterations, default=0) + 1
    # created with all its tags in one call: a kill between two calls leaves no untagged run
    return client.create_run(
        experiment_id,
        run_name=f"pipeline-{iteration}",
        tags={
            KIND: "pipeline",
            SOURCE: source,
            ITERATION: str(iteration),
            STATE: "running",
            "antgo.project": project,
        },
    )


def step_runs(client, experiment_id: str, pipeline_run_id: str) -> list:
    """The step runs of a pipeline run, oldest first."""
    return _search(client, experiment_id, {KIND: "step", PARENT: pipeline_run_id})


def _outputs(run) -> dict:
    text = run.data.tags.get(OUTPUTS)
    return json.loads(text) if text else {}


def run_step(
    ctx: Context,
    step: str,
    inputs: Mapping[str, Any],
    fn: Callable[[Context, dict], dict],
) -> dict:
    """Run ``fn(ctx, inputs)`` as the step run of key (iteration, step, inputs), once.

    A FINISHED run of the key: its outputs, nothing runs. Otherwise the key's unfinished run (or a
    new one) runs ``fn``; its outputs (JSON: paths, counts), metrics and FINISHED status are
    recorded. ``StepWaiting`` leaves the run RUNNING (state ``waiting``) and propagates; any other
    error marks it FAILED and counts an attempt, and past ``ctx.retries`` retries raises StepFailed.
    """
    client = ctx.client
    inputs = dict(inputs)
    key = step_key(ctx.iteration, step, inputs)
    runs = _search(client, ctx.experiment_id, {KIND: "step", KEY: key})
    done = [r for r in runs if r.info.status == "FINISHED"]
    if done:
        return _outputs(done[0])
    if runs:
        run = runs[0]
        attempts = int(run.data.tags.get(ATTEMPTS, "0"))
        if attempts > ctx.retries:
            raise StepFailed(f"step {step} of iteration {ctx.iteration} failed {attempts} times")
        if run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
    else:
        run = client.create_run(
            ctx.experiment_id,
            run_name=f"{ctx.iteration}-{step}",
            tags={
                KIND: "step",
                KEY: key,
                STEP: step,
                ITERATION: str(ctx.iteration),
                PARENT: ctx.pipeline_run_id,
                ATTEMPTS: "0",
                STATE: "running",
                "antgo.project": ctx.project,
                "antgo.pipeline.inputs": json.dumps(inputs, sort_keys=True, default=str)[:TAG_MAX],
            },
        )
        attempts = 0
    run_id = run.info.run_id
    ctx.step_run_id = run_id
    client.set_tag(ctx.pipeline_run_id, "antgo.pipeline.current_step", step)
    started = time.monotonic()
    try:
        out = fn(ctx, inputs) or {}
    except StepWaiting as exc:
        client.set_tag(run_id, STATE, "waiting")
        client.set_tag(run_id, NOTE, str(exc)[:TAG_MAX])
        client.set_tag(ctx.pipeline_run_id, NOTE, f"{step}: {exc}"[:TAG_MAX])
        raise
    except BaseException as exc:
        client.set_tag(run_id, ATTEMPTS, str(attempts + 1))
        client.set_tag(run_id, STATE, "failed")
        client.set_tag(run_id, NOTE, f"{type(exc).__name__}: {exc}"[:TAG_MAX])
        interrupted = (
            isinstance(exc, (KeyboardInterrupt, SystemExit)) or type(exc).__name__ == "Terminated"
        )
        client.set_terminated(run_id, "KILLED" if interrupted else "FAILED")
        if interrupted:
            raise
        if attempts + 1 > ctx.retries:
            raise StepFailed(
                f"step {step} of iteration {ctx.iteration} failed {attempts + 1} times; last: {exc}"
            ) from exc
        raise
    finally:
        ctx.step_run_id = None
    metrics = {k: float(v) for k, v in (out.pop("_metrics", None) or {}).items()}
    metrics["step_seconds"] = time.monotonic() - started
    note = out.pop("_note", None)
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    client.set_tag(run_id, OUTPUTS, json.dumps(out, sort_keys=True, default=str)[:TAG_MAX])
    client.set_tag(run_id, STATE, "finished")
    if note:
        client.set_tag(run_id, NOTE, note[:TAG_MAX])
        client.set_tag(ctx.pipeline_run_id, NOTE, f"{step}: {note}"[:TAG_MAX])
    client.set_terminated(run_id, "FINISHED")
    return out


def finish_pipeline(client, run_id: str, failed: bool = False, note: str | None = None) -> None:
    """End a pipeline run: FINISHED, or FAILED with ``note`` (why)."""
    client.set_tag(run_id, STATE, "failed" if failed else "finished")
    client.set_tag(run_id, "antgo.pipeline.current_step", "-")
    if note:
        client.set_tag(run_id, NOTE, note[:TAG_MAX])
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def loop_state(client, experiment_id: str) -> dict:
    """What ``antgo show project`` prints: the last iteration, its step, waiting, last promotion."""
    runs = pipeline_runs(client, experiment_id)
    if not runs:
        return {"iterations": 0}
    last = runs[-1]
    tags = last.data.tags
    state = {
        "iterations": len(runs),
        "iteration": int(tags.get(ITERATION, 0)),
        "state": tags.get(STATE, "?"),
        "current_step": tags.get("antgo.pipeline.current_step", "-"),
        "note": tags.get(NOTE, ""),
        "run_id": last.info.run_id,
    }
    promoted = _search(client, experiment_id, {KIND: "step", STEP: "evaluate_promote"})
    promoted = [r for r in promoted if r.info.status == "FINISHED"]
    if promoted:
        state["last_promotion"] = promoted[-1].data.tags.get(NOTE, "")
    return state
