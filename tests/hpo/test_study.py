"""`antgo hpo` end to end on tiny data: the study run, its trial runs, --show, roles, bad input."""

from __future__ import annotations

import json
import uuid

import optuna
import pytest
from mlflow import MlflowClient

from tests.helpers import assert_one_line_error
from tests.tools._extract_data import run_inprocess


def _runs(client: MlflowClient):
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def test_a_4_trial_study_is_one_parent_run_with_4_children_and_the_best_on_the_parent(
    hpo_config, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = hpo_config(log_model=True, experiment_name="'digits-team'")
    res = run_inprocess(
        capsys, "hpo", f"--config={config}", "--trials=4", "--study=s4", "--seed=0",
        "--pruner=none",
    )  # fmt: skip
    assert res.code == 0, res
    assert res.stderr.count("antgo-hpo: trial ") == 4
    assert "Traceback" not in res.stderr

    client = MlflowClient()
    runs = _runs(client)
    (parent,) = [r for r in runs if r.data.tags.get("antgo.process") == "hpo"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.tags["antgo.hpo.trial"] for r in children) == ["0", "1", "2", "3"]
    # each trial is a training run like any other: params, per-epoch metrics, checkpoint
    child = children[0]
    assert "optimizer.lr" in child.data.params and "model.width" in child.data.params
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/top_1")]
    assert steps == [1, 2]
    assert "checkpoints" in {a.path for a in client.list_artifacts(child.info.run_id)}

    study = optuna.load_study(study_name="s4", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    best = study.best_trial
    tags = parent.data.tags
    assert tags["antgo.hpo.best_trial"] == str(best.number)
    assert tags["antgo.hpo.best_run_id"] == best.user_attrs["mlflow_run_id"]
    assert json.loads(tags["antgo.hpo.best_params"]) == best.params
    assert float(tags["antgo.hpo.best.optimizer.lr"]) == best.params["optimizer.lr"]
    assert tags["antgo.hpo.sampler"] == "tpe" and tags["antgo.hpo.pruner"] == "none"
    assert parent.data.metrics["val/top_1"] == best.value
    assert json.loads(parent.data.params["hpo.space.model.width"]) == {
        "type": "int",
        "low": 2,
        "high": 6,
    }
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "hpo")}
    assert {"hpo/optimization_history.png", "hpo/param_importances.png"} <= artifacts
    assert {"hpo/trials.json", "hpo/best.json"} <= artifacts
    assert f"run {best.user_attrs['mlflow_run_id']}" in res.stdout

    # --show, as a table and as JSON (the default storage is found without --storage)
    shown = run_inprocess(capsys, "hpo", "--show", "--study=s4")
    assert shown.code == 0, shown
    assert "optimizer.lr" in shown.stdout and shown.stdout.count("COMPLETE") == 4
    shown = run_inprocess(capsys, "hpo", "--show", "--study=s4", "--json")
    rows = json.loads(shown.stdout)["trials"]
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    assert {r["mlflow_run_id"] for r in rows} == {c.info.run_id for c in children}

    # the best trial's model takes a role with the existing role commands
    assert run_inprocess(capsys, "create", "project", "--name=digits-team").code == 0
    added = run_inprocess(
        capsys, "add", "expert", "--project=digits-team", "--exp=exp1",
        f"--id={tags['antgo.hpo.best_run_id']}",
    )  # fmt: skip
    assert added.code == 0, added
    version = client.get_model_version_by_alias("digits-team", "champion")
    assert version.run_id == tags["antgo.hpo.best_run_id"]


@pytest.mark.server
def test_a_study_continues_under_the_same_run_on_a_tracking_server(
    hpo_config, capsys, tmp_path, monkeypatch, mlflow_server
):
    """Against a real mlflow server: the default study storage is then ./optuna.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    config = hpo_config(epochs=1)
    name = f"again-{uuid.uuid4().hex[:8]}"  # the server is shared by the session's tests
    for _ in range(2):
        res = run_inprocess(capsys, "hpo", f"--config={config}", "--trials=1", f"--study={name}")
        assert res.code == 0, res
    client = MlflowClient()
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`antgo.hpo.study` = '{name}'",
    )
    (parent,) = [r for r in runs if r.data.tags.get("antgo.process") == "hpo"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and parent.data.tags["antgo.hpo.n_trials"] == "2"
    assert parent.info.status == "FINISHED" and (tmp_path / "optuna.db").is_file()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "hpo")}
    assert "hpo/optimization_history.png" in artifacts


BAD_SPACE = "{'optimizer.lrr': dict(type='float', low=0.01, high=0.5)}"
LOW_HIGH = "{'optimizer.lr': dict(type='float', low=0.5, high=0.01)}"


@pytest.mark.parametrize(
    ("space", "args", "fragments"),
    [
        (BAD_SPACE, [], ["hpo.space", "'optimizer.lrr'", "did you mean 'optimizer.lr'"]),
        (LOW_HIGH, [], ["hpo.space.optimizer.lr", "low=0.5 is greater than high=0.01"]),
        (None, ["--sampler=bayes"], ["--sampler=bayes", "tpe, random, cmaes, grid"]),
        (None, ["--pruner=asha"], ["--pruner=asha", "median, hyperband, none"]),
        (None, ["--trials=0"], ["--trials=0", ">= 1"]),
        (None, ["--workers=0"], ["--workers=0", ">= 1"]),
        (None, ["--sampler=grid"], ["hpo.space.optimizer.lr", "--sampler=grid needs discrete"]),
        (
            None,
            ["--storage=postgresql://me:pw@127.0.0.1:1/optuna"],
            ["--storage=postgresql+psycopg2://me:***@127.0.0.1:1/optuna", "cannot connect"],
        ),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(
    hpo_config, capsys, tmp_path, monkeypatch, space, args, fragments
):
    monkeypatch.chdir(tmp_path)
    config = hpo_config(space=space) if space else hpo_config()
    res = run_inprocess(capsys, "hpo", f"--config={config}", "--study=bad", *args)
    assert_one_line_error(res, *fragments)
    assert "pw@" not in res.stderr
    assert not (tmp_path / "optuna.db").exists()
    assert _runs(MlflowClient()) == []
    assert not (tmp_path / "output").exists()


def test_a_metric_never_logged_is_one_line_and_leaves_no_study(
    hpo_config, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = hpo_config(metric="val/top_5", epochs=3)
    res = run_inprocess(capsys, "hpo", f"--config={config}", "--study=nometric", "--trials=3")
    # the study had started (its first line is on stderr); the error is one line, no traceback
    assert res.code == 2 and "Traceback" not in res.stderr
    (error,) = [line for line in res.stderr.splitlines() if "error" in line]
    assert error == res.stderr.strip().splitlines()[-1]
    assert "hpo.metric: val/top_5 is never logged by the evaluation (it logs: val/top_1" in error
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert "nometric" not in optuna.get_all_study_names(storage)
    runs = _runs(MlflowClient())
    (parent,) = [r for r in runs if r.data.tags.get("antgo.process") == "hpo"]
    (trial,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FAILED" and trial.info.status == "FAILED"
    assert "val/top_5 is never logged" in parent.data.tags["antgo.error"]


def test_show_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_inprocess(capsys, "hpo", "--show", "--study=nope")
    assert_one_line_error(res, "--storage", "no study storage next to the MLflow store")
    optuna.create_study(study_name="other", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    res = run_inprocess(capsys, "hpo", "--show", "--study=nope")
    assert_one_line_error(res, "--study=nope: not in sqlite:///")
    listed = run_inprocess(capsys, "hpo", "--show")
    assert listed.code == 0 and listed.stdout.startswith("other: 0 trials")


@pytest.mark.slow
def test_mlflow_run_hpo_makes_the_project_run_the_study_run(hpo_config, hpo_env, tmp_path):
    """`mlflow run <repo> -e hpo --env-manager local -P trials=2` on a toy config."""
    import subprocess
    import sys

    from tests.hpo.conftest import REPO

    config = hpo_config(epochs=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [
            sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "hpo", "--env-manager",
            "local", "-P", f"config={config}", "-P", "trials=2", "-P", "study=proj",
            "-P", "pruner=none",
        ],
        cwd=tmp_path, env=dict(hpo_env, MLFLOW_TRACKING_URI=uri), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    runs = _runs(client)
    (parent,) = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "hpo"]
    assert parent.data.tags["antgo.process"] == "hpo" and parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    assert {r.info.experiment_id for r in runs} == {parent.info.experiment_id}
    assert "antgo.hpo.best_run_id" in parent.data.tags


@pytest.mark.parametrize(
    ("sampler", "pruner"), [("random", "hyperband"), ("cmaes", "median"), ("grid", "none")]
)
def test_every_sampler_and_pruner_runs_a_study(
    hpo_config, capsys, tmp_path, monkeypatch, sampler, pruner
):
    monkeypatch.chdir(tmp_path)
    space = (
        "{'optimizer.lr': dict(type='float', low=0.05, high=0.2, step=0.05), "
        "'model.width': dict(type='categorical', choices=[2, 4])}"
    )
    config = hpo_config(space=space, epochs=1)
    res = run_inprocess(
        capsys, "hpo", f"--config={config}", "--trials=3", f"--sampler={sampler}",
        f"--pruner={pruner}", "--seed=1", f"--study={sampler}",
    )  # fmt: skip
    assert res.code == 0, res
    study = optuna.load_study(study_name=sampler, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 3
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    if sampler == "grid":  # 8 grid points, 3 trials: no point twice
        assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3


def test_a_grid_smaller_than_the_trials_runs_each_point_once(
    hpo_config, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = hpo_config(space="{'model.width': dict(type='int', low=2, high=3)}", epochs=1)
    res = run_inprocess(
        capsys, "hpo", f"--config={config}", "--trials=5", "--sampler=grid", "--study=g"
    )
    assert res.code == 0, res
    assert "the grid has 2 points; running 2 trials" in res.stderr
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert sorted(t.params["model.width"] for t in study.trials) == [2, 3]


def _study_in_its_first_trial(config, env, cwd, name: str):
    """Start `antgo hpo` (2 long trials) and return it once its first trial reported a value."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "antgo_mlflow", "hpo", f"--config={config}", "--trials=2",
         f"--study={name}"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    storage = f"sqlite:///{cwd / 'optuna.db'}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            if study.trials and study.trials[0].intermediate_values:
                break
        except Exception:  # not created yet, or the file is busy: look again
            pass
        time.sleep(0.3)
    return proc


def test_sigterm_ends_the_study_run_and_the_running_trial_killed(hpo_config, hpo_env, tmp_path):
    import signal

    proc = _study_in_its_first_trial(hpo_config(epochs=20, delay=0.01), hpo_env, tmp_path, "term")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    runs = _runs(MlflowClient())
    (parent,) = [r for r in runs if r.data.tags.get("antgo.process") == "hpo"]
    (trial,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "KILLED" and trial.info.status == "KILLED"
    assert (tmp_path / "output" / "hpo" / "term" / "trial_0000" / "latest.pth").is_file()


def test_a_study_killed_with_sigkill_is_reaped_with_its_trial(hpo_config, hpo_env, tmp_path):
    """kill -9 of `antgo hpo` leaves its runs RUNNING; the owner record on the study run (as on
    the trial run) lets the engine's reaper (`antgo show exp`) end both KILLED with the reason."""
    import os
    import signal

    from antgo_mlflow.engine.run_owner import REASON_TAG, reap

    proc = _study_in_its_first_trial(hpo_config(epochs=20, delay=0.01), hpo_env, tmp_path, "kill")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    client = MlflowClient()
    runs = _runs(client)
    (parent,) = [r for r in runs if r.data.tags.get("antgo.process") == "hpo"]
    assert parent.info.status == "RUNNING"
    assert parent.data.tags["antgo.owner.pid"] == str(proc.pid)
    reaped = reap(client, runs)
    assert parent.info.run_id in reaped and len(reaped) == 2  # the study and its trial
    for run in _runs(client):
        assert run.info.status == "KILLED" and str(proc.pid) in run.data.tags[REASON_TAG]
