"""The whole loop for one iteration: a real Label Studio answered by a *simulated annotator* (from
the digits' hidden labels, through Label Studio's API), real training through the exp's MLproject,
real MLflow registry; the server is kill -9-ed during *label* and during *train* and restarted.

Checks: the iteration finishes with one run per step, one Label Studio project, one (adopted)
training run, the registrations human-1/pseudo-1/rest-1, and a promotion note with both metrics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from antgo_mlflow.review.labelling import Api, LabelStudioServer, label_studio_venv
from tests.conftest import free_port
from tests.server.annotator import Annotator
from tests.server.conftest import digits_gt

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(label_studio_venv() is None, reason="Label Studio venv not installed"),
]

MLPROJECT = """name: e1
entry_points:
  train:
    parameters:
      config: {type: string, default: config.py}
    command: python -m antgo_mlflow.entrypoints.train --config {config} --test false
"""


def _config(labelled: Path, val: Path) -> str:
    recipe = (Path(__file__).resolve().parents[2] / "recipes" / "digits" / "config.py").read_text()
    recipe = recipe.replace("_digits = prepare_digits()", "")
    recipe = recipe.replace("from antgo_mlflow.data.sources.digits import prepare_digits", "")
    recipe = recipe.replace("max_epochs = 6", "max_epochs = 2")
    recipe = recipe.replace('type="TFDataset",\n        data_path_list=_digits.shard_paths("train")',
                            f'type="GTDataset",\n        ann_file={str(labelled)!r}')  # fmt: skip
    for split in ("val", "test"):
        recipe = recipe.replace(f'type="TFDataset",\n        data_path_list=_digits.shard_paths("{split}")',
                                f'type="GTDataset",\n        ann_file={str(val)!r}')  # fmt: skip
    return recipe.replace("samples_per_gpu=64", "samples_per_gpu=16")


def _wait_for(predicate, timeout, what, log: Path, proc: subprocess.Popen):
    """Waits for `predicate`; on a timeout or a server that exited, fails with the server's log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    state = "timed out" if proc.poll() is None else f"the server exited ({proc.returncode})"
    tail = log.read_text(errors="replace")[-3000:]
    raise AssertionError(f"{state} waiting for {what}; server log:\n{tail}")


def test_one_iteration_end_to_end_with_kill_9_during_label_and_train(project, tmp_path, store):
    from mlflow import MlflowClient

    from antgo_mlflow.project import experiments
    from antgo_mlflow.project.data_registry import add_data, list_data
    from antgo_mlflow.project.projects import get_project
    from antgo_mlflow.project.roles import promote, register_run, role_history
    from antgo_mlflow.project.settings import update_setting
    from antgo_mlflow.server import state

    labelled = digits_gt(tmp_path / "labelled", range(0, 40))
    test = digits_gt(tmp_path / "test", range(1500, 1560))
    pool = digits_gt(tmp_path / "pool", range(100, 160), labelled=False)
    (tmp_path / "e1").mkdir()
    (tmp_path / "e1" / "MLproject").write_text(MLPROJECT)
    (tmp_path / "e1" / "config.py").write_text(_config(labelled, test))
    client = MlflowClient()
    first = experiments.train(project, "e1")["run_id"]  # the product: 40 human labels
    exp = get_project(project, client)
    version = register_run(client, project, exp, first).version
    promote(project, version, "product", note="initial")
    promote(project, version, "expert", note="initial")
    update_setting(project, "activelearning", name="margin")
    add_data(project, "test", str(test), "fixed")
    add_data(project, "train/unlabel", str(pool), "batch1")

    workdir = tmp_path / "work"
    workdir.mkdir()
    ls = LabelStudioServer(tmp_path / "ls", free_port(), workdir).start(echo=lambda _: None)
    annotator = Annotator(Api(ls.url, ls.token))
    annotator.start()
    env = dict(os.environ, LABEL_STUDIO_API_KEY=ls.token, ANTGO_PROGRESS="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    argv = [sys.executable, "-m", "antgo_mlflow", "server", f"--project={project}",
            f"--workdir={workdir}", "--budget=10", "--threshold=0.0", "--interval=1",
            f"--label-studio={ls.url}", "--margin=-1"]  # fmt: skip
    log_path = tmp_path / "server.log"
    log = open(log_path, "ab")  # noqa: SIM115

    def server():
        return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def step_tag(step, key):
        runs = state._search(client, exp.experiment_id, {state.KIND: "step", state.STEP: step})
        return runs[0].data.tags.get(key) if runs else None

    def trainer_claimed(run_id):  # the job the train step started owns its run: it trains
        return bool(run_id) and "antgo.owner.pid" in client.get_run(run_id).data.tags

    restarts = 0
    try:
        proc = server()  # 1: kill -9 while it waits on the labelling
        _wait_for(
            lambda: step_tag("label", "antgo.label.imported"), 240, "the label step", log_path, proc
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        restarts += 1
        annotator.enabled.set()
        proc = server()  # 2: kill -9 during training
        _wait_for(lambda: trainer_claimed(step_tag("train", "antgo.pipeline.train_run")), 240,
                  "the train step's job to train", log_path, proc)  # fmt: skip
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        restarts += 1
        proc = server()  # 3: finishes the iteration
        _wait_for(
            lambda: state.loop_state(client, exp.experiment_id).get("state") == "finished",
            420, "the iteration to finish", log_path, proc,
        )  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        annotator.stop.set()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        projects = Api(ls.url, ls.token).call("GET", "/api/projects")["results"]
        ls.stop()
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert "stopped" in output, output[-3000:]
    assert len(projects) == 1 and annotator.answered == 10  # one Label Studio project, ever
    (pipe,) = state.pipeline_runs(client, exp.experiment_id)
    steps = state.step_runs(client, exp.experiment_id, pipe.info.run_id)
    assert sorted(r.data.tags[state.STEP] for r in steps) == sorted(
        ["predict", "select", "label", "pack_register", "train", "evaluate_promote"]
    )  # one run per step: no duplicates after two kill -9s
    assert all(r.info.status == "FINISHED" for r in steps + [pipe])
    trained = [r for r in client.search_runs([exp.experiment_id], "tags.`antgo.exp` = 'e1'")
               if state.KIND not in r.data.tags and r.info.status == "FINISHED"]  # fmt: skip
    # the initial product + one candidate: the restarted train step adopted the run the job
    # orphaned by the kill -9 went on training, and trained nothing itself
    assert len(trained) == 2
    everything = [r for r in client.search_runs([exp.experiment_id], "tags.`antgo.exp` = 'e1'")
                  if state.KIND not in r.data.tags]  # fmt: skip
    assert len(everything) == 2  # no killed/failed extra training run either
    train_step = next(r for r in steps if r.data.tags[state.STEP] == "train")
    candidate = train_step.data.tags["antgo.pipeline.train_run"]
    assert candidate in {r.info.run_id for r in trained} and candidate != first
    assert f"train: run {candidate} finished while the server was down" in output  # adopted
    data = list_data(project)
    assert sorted(r["tag"] for r in data["train/label"]) == ["human-1", "pseudo-1"]
    human = next(r for r in data["train/label"] if r["tag"] == "human-1")
    assert human["num"] == 10
    assert pipe.data.metrics["labels_added"] == 10
    notes = [e.get("note") or "" for e in role_history(project)]
    assert any("candidate top1=" in n and "vs product top1=" in n for n in notes)
