"""The train step adopts the training run a killed server left behind, instead of training twice.

No Label Studio and no real training: the exp's entry point is a small real job (``job.py``) that
opens the run MLflow hands it, claims it (``engine.run_owner``: owner + heartbeat, as the engine
does) and waits for a ``release`` file. The "server" is a real subprocess running the train step,
``kill -9``-ed once the job trains; its ``mlflow run`` group survives, as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from antgo_mlflow.server import state
from antgo_mlflow.server.steps import step_function
from antgo_mlflow.server.steps.train import STEP_RUN_TAG, TRAIN_RUN_TAG

MLPROJECT = """name: e1
entry_points:
  train:
    parameters:
      config: {type: string, default: config.py}
    command: python job.py --config {config}
"""

JOB = """import os, time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from antgo_mlflow.engine.run_owner import claim

here = Path(__file__).parent
with open(here / "starts.txt", "a") as fh:
    fh.write(os.environ["MLFLOW_RUN_ID"] + "\\n")
with mlflow.start_run() as run:
    beat = claim(MlflowClient(), MlflowClient().get_run(run.info.run_id))
    while not (here / "release").exists():
        time.sleep(0.1)
    mlflow.log_metric("top_1", 0.5)
    beat.stop()
"""

SERVER = """import json, sys
from antgo_mlflow.project.projects import get_client
from antgo_mlflow.server import state
from antgo_mlflow.server.steps import step_function
project, exp_id, pipe, iteration, workdir, inputs = sys.argv[1:7]
ctx = state.Context(project, get_client(), exp_id, int(iteration), pipe, workdir, echo=print)
state.run_step(ctx, "train", json.loads(inputs), step_function("train"))
"""

INPUTS = {"exp": "e1", "stage": None, "data": [], "params": {}}


def _setup(project, tmp_path):
    from antgo_mlflow.project.projects import get_client, get_project

    folder = tmp_path / "e1"
    folder.mkdir()
    (folder / "MLproject").write_text(MLPROJECT)
    (folder / "job.py").write_text(JOB)
    (folder / "config.py").write_text(
        'data = dict(train=dict(type="GTDataset", ann_file="a.json"))\n'
    )
    client = get_client()
    exp_id = get_project(project, client).experiment_id
    pipe = state.pipeline_run(client, exp_id, "src-1", project)
    ctx = state.Context(
        project, client, exp_id, int(pipe.data.tags[state.ITERATION]), pipe.info.run_id,
        tmp_path / "work", echo=lambda _: None,
    )  # fmt: skip
    return folder, ctx


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_server_while_training(project, tmp_path, folder, ctx) -> str:
    """Start the train step in a server subprocess, kill -9 it once the job trained; the run id."""
    argv = [sys.executable, "-c", SERVER, project, ctx.experiment_id, ctx.pipeline_run_id,
            str(ctx.iteration), str(ctx.workdir), json.dumps(INPUTS)]  # fmt: skip
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115
    server = subprocess.Popen(argv, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

    def claimed():
        runs = _training_runs(ctx)
        return bool(runs) and "antgo.owner.pid" in runs[0].data.tags

    try:
        _wait_for(claimed, 60, "the job to claim its run")
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        log.close()
    (run,) = _training_runs(ctx)
    step = state._search(ctx.client, ctx.experiment_id, {state.KIND: "step"})[0]
    assert step.data.tags[TRAIN_RUN_TAG] == run.info.run_id  # recorded before the job trained
    assert run.data.tags[STEP_RUN_TAG] == step.info.run_id
    return run.info.run_id


def _training_runs(ctx):
    runs = ctx.client.search_runs([ctx.experiment_id], "tags.`antgo.exp` = 'e1'")
    return [r for r in runs if state.KIND not in r.data.tags]


def _step(ctx):
    return state.run_step(ctx, "train", INPUTS, step_function("train"))


def test_restarted_step_waits_for_the_orphaned_job_then_adopts_its_run(project, tmp_path):
    import pytest

    folder, ctx = _setup(project, tmp_path)
    run_id = _kill_server_while_training(project, tmp_path, folder, ctx)
    with pytest.raises(state.StepWaiting, match=f"training run {run_id} .* still runs"):
        _step(ctx)  # the orphaned job still trains: wait, start nothing
    assert len(_training_runs(ctx)) == 1
    (folder / "release").touch()
    _wait_for(lambda: ctx.client.get_run(run_id).info.status == "FINISHED", 60, "the job")
    out = _step(ctx)
    assert out["run_id"] == run_id
    runs = _training_runs(ctx)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")]
    assert (folder / "starts.txt").read_text().split() == [run_id]  # trained once


def test_restarted_step_resumes_the_same_run_when_its_job_is_gone(project, tmp_path):
    folder, ctx = _setup(project, tmp_path)
    run_id = _kill_server_while_training(project, tmp_path, folder, ctx)
    pid = int(ctx.client.get_run(run_id).data.tags["antgo.owner.pid"])
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the job dies with the server
    _wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, "the job to exit")
    (folder / "release").touch()
    out = _step(ctx)  # reaped (owner gone), then trained again into the same run
    assert out["run_id"] == run_id
    runs = _training_runs(ctx)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")]
    assert "no longer runs" in runs[0].data.tags["antgo.resumed_after"]
    assert (folder / "starts.txt").read_text().split() == [run_id, run_id]
