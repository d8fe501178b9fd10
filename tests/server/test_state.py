"""The loop's state in MLflow: a step's key with a FINISHED run is skipped; a killed or failed
step continues the same run; failures are retried, then the iteration fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from antgo_mlflow.server import state


def _ctx(project, tmp_path, retries=2):
    from antgo_mlflow.project.projects import get_client, get_project

    client = get_client()
    exp_id = get_project(project, client).experiment_id
    pipe = state.pipeline_run(client, exp_id, "train/unlabel:b1:abc", project)
    return state.Context(
        project, client, exp_id, int(pipe.data.tags[state.ITERATION]), pipe.info.run_id,
        tmp_path, echo=lambda _: None, retries=retries,
    )  # fmt: skip


def _step_runs(ctx, step):
    return state._search(ctx.client, ctx.experiment_id, {state.KIND: "step", state.STEP: step})


def test_a_finished_key_is_skipped_and_new_inputs_run_again(project, tmp_path):
    ctx = _ctx(project, tmp_path)
    calls = []

    def fn(c, inputs):
        calls.append(inputs["x"])
        return {"double": inputs["x"] * 2, "_metrics": {"n": 3}}

    assert state.run_step(ctx, "predict", {"x": 2}, fn) == {"double": 4}
    assert state.run_step(ctx, "predict", {"x": 2}, fn) == {"double": 4}
    assert calls == [2]  # the second call was skipped
    (run,) = _step_runs(ctx, "predict")
    assert run.info.status == "FINISHED" and run.data.metrics["n"] == 3
    assert run.data.tags[state.PARENT] == ctx.pipeline_run_id
    assert state.run_step(ctx, "predict", {"x": 5}, fn) == {"double": 10}
    assert calls == [2, 5] and len(_step_runs(ctx, "predict")) == 2
    # the same source gives the same pipeline run (iteration 1), a new one the next number
    again = state.pipeline_run(ctx.client, ctx.experiment_id, "train/unlabel:b1:abc", project)
    assert again.info.run_id == ctx.pipeline_run_id
    other = state.pipeline_run(ctx.client, ctx.experiment_id, "train/unlabel:b2:def", project)
    assert other.data.tags[state.ITERATION] == "2"


def test_failures_are_retried_in_the_same_run_then_fail_the_step(project, tmp_path):
    ctx = _ctx(project, tmp_path, retries=1)
    attempts = []

    def flaky(c, inputs):
        attempts.append(1)
        raise RuntimeError("training job died")

    with pytest.raises(RuntimeError):
        state.run_step(ctx, "train", {"exp": "e"}, flaky)
    with pytest.raises(state.StepFailed, match="failed 2 times; last: training job died"):
        state.run_step(ctx, "train", {"exp": "e"}, flaky)
    with pytest.raises(state.StepFailed):  # no third attempt
        state.run_step(ctx, "train", {"exp": "e"}, flaky)
    assert len(attempts) == 2
    (run,) = _step_runs(ctx, "train")
    assert run.info.status == "FAILED" and run.data.tags[state.ATTEMPTS] == "2"


def test_a_waiting_step_stays_one_run_until_it_finishes(project, tmp_path):
    ctx = _ctx(project, tmp_path)
    done = {"n": 0}

    def label(c, inputs):
        c.tag("antgo.label.project_id", c.step_tags().get("antgo.label.project_id", "7"))
        done["n"] += 1
        if done["n"] < 3:
            raise state.StepWaiting(f"waiting on {3 - done['n']} labelling tasks")
        return {"human": "x.json"}

    for _ in range(2):
        with pytest.raises(state.StepWaiting):
            state.run_step(ctx, "label", {"selected": "s.json"}, label)
    info = state.loop_state(ctx.client, ctx.experiment_id)
    assert info["current_step"] == "label" and "waiting on 1 labelling tasks" in info["note"]
    assert state.run_step(ctx, "label", {"selected": "s.json"}, label) == {"human": "x.json"}
    (run,) = _step_runs(ctx, "label")
    assert run.info.status == "FINISHED" and run.data.tags["antgo.label.project_id"] == "7"


CHILD = """
import sys, time
from antgo_mlflow.project.projects import get_client, get_project
from antgo_mlflow.server import state
project, marker = sys.argv[1], sys.argv[2]
client = get_client()
exp_id = get_project(project, client).experiment_id
pipe = state.pipeline_run(client, exp_id, "train/unlabel:b1:abc", project)
ctx = state.Context(project, client, exp_id, 1, pipe.info.run_id, ".", echo=print)
def slow(c, inputs):
    open(marker, "w").write(c.step_run_id)
    time.sleep(600)
state.run_step(ctx, "train", {"exp": "e"}, slow)
"""


def test_kill_9_during_a_step_then_restart_continues_the_same_run(project, tmp_path):
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, project, str(marker)], env=dict(os.environ), cwd=tmp_path
    )
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), "the child never started its step"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_run = Path(marker).read_text()
    ctx = _ctx(project, tmp_path)
    assert state.run_step(ctx, "train", {"exp": "e"}, lambda c, i: {"run_id": c.step_run_id}) == {
        "run_id": killed_run
    }
    (run,) = _step_runs(ctx, "train")  # no duplicate run for the key
    assert run.info.status == "FINISHED"
