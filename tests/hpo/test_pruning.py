"""The pruning hook inside the engine: report at each validation, stop cleanly when pruned."""

from __future__ import annotations

import optuna
import pytest
import torch
from mlflow import MlflowClient

from antgo_mlflow.config import Config
from antgo_mlflow.hpo.objective import Objective
from antgo_mlflow.hpo.pruning import MetricNotLogged
from antgo_mlflow.hpo.space import parse_spec

LR_CHOICES = "{'optimizer.lr': dict(type='categorical', choices=[0.3, 1e-9])}"


def _objective(cfg_path, tmp_path, metric="val/top_1"):
    cfg = Config.fromfile(cfg_path)
    client = MlflowClient()
    exp = client.create_experiment("pruning")
    parent = client.create_run(exp, run_name="study").info.run_id
    spec = parse_spec(cfg)
    objective = Objective(
        cfg,
        spec,
        study_name="s",
        parent_run_id=parent,
        experiment_id=exp,
        work_root=tmp_path / "trials",
    )
    return objective, client, parent


def test_a_pruned_trial_stops_after_its_checkpoint_and_its_run_ends_killed(hpo_config, tmp_path):
    path = hpo_config(space=LR_CHOICES, epochs=3)
    objective, client, parent = _objective(path, tmp_path)
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    study.enqueue_trial({"optimizer.lr": 0.3})
    study.enqueue_trial({"optimizer.lr": 1e-9})  # learns nothing: worse than trial 0 at epoch 1
    study.optimize(objective, n_trials=2)

    good, bad = study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE and good.value > 0.5
    assert bad.state == optuna.trial.TrialState.PRUNED
    pruned_at = max(bad.intermediate_values)
    assert pruned_at < 3

    run = client.get_run(bad.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["antgo.hpo.state"] == "pruned"
    assert run.data.tags["antgo.hpo.pruned_at_epoch"] == str(pruned_at)
    assert "antgo.error" not in run.data.tags
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["antgo.hpo.trial"] == "1"
    # the epoch's checkpoint was written before training stopped: it resumes where it stopped
    latest = torch.load(
        tmp_path / "trials" / "trial_0001" / "latest.pth", map_location="cpu", weights_only=True
    )
    assert latest["meta"]["epoch"] == pruned_at
    assert latest["meta"]["mlflow_run_id"] == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "val/top_1")
    assert [m.step for m in history] == sorted(bad.intermediate_values)

    finished = client.get_run(good.user_attrs["mlflow_run_id"])
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["antgo.hpo.state"] == "complete"
    steps = [m.step for m in client.get_metric_history(finished.info.run_id, "val/top_1")]
    assert steps == [1, 2, 3]


def test_a_metric_the_evaluation_never_logs_stops_after_the_first_validation(hpo_config, tmp_path):
    path = hpo_config(metric="val/top_5", epochs=3)
    objective, client, _ = _objective(path, tmp_path)
    study = optuna.create_study(direction="maximize")
    with pytest.raises(MetricNotLogged) as err:
        study.optimize(objective, n_trials=1)
    assert "val/top_5 is never logged by the evaluation (it logs: val/top_1, val/count)" in str(
        err.value
    )
    (trial,) = study.trials
    assert trial.intermediate_values == {}
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert "val/top_5 is never logged" in run.data.tags["antgo.error"]
    # it stopped at the first validation, not after training every epoch
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/top_1")] == [1]
