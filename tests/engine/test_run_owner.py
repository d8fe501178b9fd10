"""Runs left RUNNING by a dead trainer: owner tags, reaping (show exp, resume), no repeated steps."""

from __future__ import annotations

import signal
import subprocess
import time

from mlflow import MlflowClient

from antgo_mlflow.engine import run_owner
from antgo_mlflow.engine.checkpoint import load_checkpoint
from antgo_mlflow.engine.launch import run_from_config
from antgo_mlflow.project.projects import create_project
from tests.engine.conftest import TRAIN_SCRIPT
from tests.tools._extract_data import run_inprocess

PROJECT = "ownertest"


def _steps(run_id, key):
    return [m.step for m in MlflowClient().get_metric_history(run_id, key)]


def _train_and_kill9(make_config, tmp_path, subprocess_env, python, monkeypatch):
    """Train in a subprocess; SIGKILL it once metrics past the epoch-1 checkpoint were stored."""
    monkeypatch.chdir(tmp_path)  # the store's artifacts (./mlruns) stay in the test's folder
    create_project(name=PROJECT)
    cfg = make_config(
        max_epochs="3",
        data=(
            f"dict(train=dict(type='EngineNpzData', path={str(tmp_path / 'data' / 'toy.npz')!r},"
            " delay=0.02), train_dataloader=dict(samples_per_gpu=8, workers_per_gpu=0))"
        ),
        evaluation=None,
        experiment_name=repr(PROJECT),
        log_config=(
            "dict(interval=2, hooks=[dict(type='TextLoggerHook'), "
            "dict(type='MlflowLoggerHook', log_model=False, batch_seconds=0)])"
        ),
    )
    work = tmp_path / "w"
    proc = subprocess.Popen([python, "-c", TRAIN_SCRIPT, str(cfg), str(work)], env=subprocess_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    client, deadline, run_id = MlflowClient(), time.time() + 120, None
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training did not get past the first checkpoint"
        exp = client.get_experiment_by_name(PROJECT)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        run_id = runs[0].info.run_id if runs else None
        if (
            run_id
            and (work / "latest.pth").is_file()
            and max(_steps(run_id, "train/loss") or [0]) >= 12
        ):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return cfg, work, run_id


def test_kill9_run_is_reaped_as_killed(
    make_config, tmp_path, subprocess_env, python, capsys, monkeypatch
):
    _, _, run_id = _train_and_kill9(make_config, tmp_path, subprocess_env, python, monkeypatch)
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "RUNNING"  # nobody could tell MLflow otherwise
    assert run.data.tags[run_owner.OWNER_PREFIX + "pid"] and run.data.tags[run_owner.HEARTBEAT_TAG]
    res = run_inprocess(capsys, "show", "exp", f"--project={PROJECT}", "--json")
    assert res.code == 0, res
    assert '"status": "KILLED"' in res.stdout
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "KILLED" and run.info.end_time
    assert "no longer runs" in run.data.tags[run_owner.REASON_TAG]
    # its duration ends at its last heartbeat, not at the moment someone listed it
    assert run.info.end_time <= float(run.data.tags[run_owner.HEARTBEAT_TAG]) * 1000 + 1


def test_resume_after_kill9_has_no_duplicate_steps(
    make_config, tmp_path, subprocess_env, python, monkeypatch
):
    cfg, work, run_id = _train_and_kill9(make_config, tmp_path, subprocess_env, python, monkeypatch)
    assert load_checkpoint(work / "latest.pth")["meta"]["iter"] < max(_steps(run_id, "train/loss"))
    resumed = run_from_config(
        cfg, cfg_options=["data.train.delay=0"], work_dir=work, resume_from="auto"
    )
    assert resumed == run_id
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "no longer runs" in run.data.tags[run_owner.RESUMED_TAG]
    assert run_owner.REASON_TAG not in run.data.tags
    steps = _steps(run_id, "train/loss")
    assert steps == sorted(set(steps)) == list(range(2, 25, 2))  # was 2..12, then 10, 12 again


def test_a_run_from_another_host_is_reaped_when_its_heartbeat_is_old(monkeypatch):
    monkeypatch.setenv(run_owner.TIMEOUT_ENV, "60")
    client = MlflowClient()
    exp_id = client.create_experiment("heartbeats")
    now = time.time()

    def run(host, beat):
        tags = {} if host is None else {run_owner.OWNER_PREFIX + "host": host,
                                        run_owner.OWNER_PREFIX + "pid": "1",
                                        run_owner.HEARTBEAT_TAG: f"{beat:.0f}"}  # fmt: skip
        return client.create_run(exp_id, tags=tags).info.run_id

    old, fresh, unknown = run("gpu-box-7", now - 600), run("gpu-box-7", now - 5), run(None, 0)
    reaped = run_owner.reap_experiments(client, [exp_id])
    assert list(reaped) == [old] and "no heartbeat" in reaped[old]
    assert [client.get_run(r).info.status for r in (old, fresh, unknown)] == [
        "KILLED", "RUNNING", "RUNNING"
    ]  # fmt: skip
