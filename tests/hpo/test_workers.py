"""Several worker processes on one study in a real PostgreSQL: exact trial counts, kill -9 retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow import MlflowClient

from antgo_mlflow.hpo.storage import normalise


def _antgo(*args: str, env: dict, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "antgo_mlflow", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _children(client: MlflowClient, parent_id: str):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


@pytest.mark.slow
def test_two_workers_on_postgresql_run_exactly_the_requested_trials(
    hpo_config, hpo_env, pg_url, tmp_path
):
    """The trial count is exact although both workers ask for trials at the same moments."""
    env = hpo_env
    config = hpo_config(epochs=1)
    proc = _antgo(
        "hpo", f"--config={config}", "--trials=4", "--workers=2", f"--storage={pg_url}",
        "--study=pair", "--seed=3", "--pruner=none", env=env, cwd=tmp_path,
    )  # fmt: skip
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err

    study = optuna.load_study(study_name="pair", storage=normalise(pg_url))
    numbers = [t.number for t in study.trials]
    assert numbers == [0, 1, 2, 3]
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2  # both processes took trials
    # TPE with constant_liar and per-worker seeds: no two trials got the same values
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4

    client = MlflowClient()
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = _children(client, parent)
    assert sorted(int(r.data.tags["antgo.hpo.trial"]) for r in children) == numbers
    assert {r.info.status for r in children} == {"FINISHED"}
    assert client.get_run(parent).data.tags["antgo.hpo.workers"] == "2"
    assert err.count("antgo-hpo: trial ") == 4  # reported by the parent as trials finish


def _wait_for_running_trial(storage: str, deadline: float):
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name="kill", storage=storage)
        except KeyError:
            time.sleep(0.5)
            continue
        for t in study.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.RUNNING and "mlflow_run_id" in t.user_attrs:
                if t.intermediate_values:  # it has trained and validated an epoch
                    return t
        time.sleep(0.3)
    raise AssertionError("no trial started running")


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_leaves_its_trial_failed_and_it_is_retried(
    hpo_config, hpo_env, pg_url, tmp_path
):
    storage = normalise(pg_url)
    # the victim is chosen after its first epoch: the four left (~1.3 s each) keep it running
    # until the kill even on a loaded machine (with 3 short epochs it once finished first)
    config = hpo_config(epochs=5, delay=0.02)
    proc = _antgo(
        "hpo", f"--config={config}", "--trials=3", "--workers=2", f"--storage={pg_url}",
        "--study=kill", "--pruner=none", "--heartbeat=1", env=hpo_env, cwd=tmp_path,
    )  # fmt: skip
    try:
        victim = _wait_for_running_trial(storage, time.time() + 120)
        pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert f"(pid {pid}) was killed by SIGKILL" in err

    study = optuna.load_study(study_name="kill", storage=storage)
    dead = study.trials[victim.number]
    assert dead.state == optuna.trial.TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert retry.params == dead.params
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3  # the budget counts the retry, not the lost trial

    client = MlflowClient()
    lost = client.get_run(dead.user_attrs["mlflow_run_id"])
    assert lost.info.status == "KILLED"
    assert lost.data.tags["antgo.hpo.state"] == "lost"
    assert "no heartbeat" in lost.data.tags["antgo.killed_reason"]
    again = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert again.info.run_id != lost.info.run_id
    assert again.data.tags["antgo.hpo.retry_of"] == str(dead.number)
    parent = study.user_attrs["mlflow_parent_run_id"]
    statuses = {r.info.status for r in _children(client, parent)}
    assert "RUNNING" not in statuses and client.get_run(parent).info.status == "FINISHED"
