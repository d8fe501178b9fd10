"""MLflow logging details: dataset inputs, params limits, artifact modes, async step metrics, a real server."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from antgo_mlflow.engine.launch import run_from_config


def _artifacts(run_id, path=None):
    return sorted(a.path for a in MlflowClient().list_artifacts(run_id, path))


def test_dataset_input_digest_comes_from_the_shard_manifest(make_config, toy_npz, tmp_path):
    npz = repr(str(toy_npz))
    cfg = make_config(
        max_epochs="1",
        evaluation=None,
        data=f"dict(train=dict(type='EngineNpzData', path={npz}, manifest=True), train_dataloader=dict(samples_per_gpu=16))",
    )
    run = MlflowClient().get_run(run_from_config(cfg, work_dir=tmp_path / "w"))
    (inp,) = run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest) == ("toy-shards", "d1g3st0123")
    assert str(toy_npz) in inp.dataset.source
    assert [(t.key, t.value) for t in inp.tags] == [("mlflow.data.context", "train")]


def test_many_and_long_params_are_batched_and_truncated(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    cfg = make_config(
        max_epochs="1",
        evaluation=None,
        experiment_name=None,
        notes=repr("x" * 7000),
        extra="{f'k{i}': i for i in range(150)}",
    )
    run_id = run_from_config(cfg, work_dir=tmp_path / "w")
    run = MlflowClient().get_run(run_id)
    assert MlflowClient().get_experiment(run.info.experiment_id).name == "from-env"
    assert len(run.data.params["notes"]) == 6000
    assert run.data.params["extra.k149"] == "149"


@pytest.mark.parametrize(
    "mode, expected",
    [("all", ["epoch_1.pth", "epoch_2.pth", "best.json", "best.pth"]), ("none", [])],
)
def test_checkpoint_artifacts_follow_log_artifacts(make_config, tmp_path, mode, expected):
    cfg = make_config(checkpoint_config=f"dict(interval=1, log_artifacts={mode!r})")
    run_id = run_from_config(cfg, work_dir=tmp_path / "w")
    assert _artifacts(run_id, "checkpoints") == sorted(f"checkpoints/{n}" for n in expected)


@pytest.mark.parametrize("batch_seconds, requests", [(0, 3), (60, 1)])
def test_step_metrics_are_sent_asynchronously_in_batches(
    make_config, tmp_path, monkeypatch, batch_seconds, requests
):
    # A spy around the real MlflowClient.log_batch (the store still receives everything).
    calls = []
    real = MlflowClient.log_batch

    def spy(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        calls.append((len(metrics), synchronous))
        return real(
            self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous
        )

    monkeypatch.setattr(MlflowClient, "log_batch", spy)
    hook = f"dict(type='MlflowLoggerHook', log_model=False, batch_seconds={batch_seconds})"
    cfg = make_config(
        max_epochs="1", evaluation=None, log_config=f"dict(interval=4, hooks=[{hook}])"
    )
    run_id = run_from_config(cfg, work_dir=tmp_path / "w")
    # batch_seconds=0: iterations 4 and 8, then the epoch metrics; 60: all in the epoch flush.
    assert len([c for c in calls if c[1] is False]) == requests
    assert [m.step for m in MlflowClient().get_metric_history(run_id, "train/loss")] == [4, 8]


@pytest.mark.server
def test_training_against_a_real_mlflow_server(make_config, tmp_path, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cfg = make_config(max_epochs="1", experiment_name="'engine-server'")
    run_id = run_from_config(cfg, work_dir=tmp_path / "w")
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.type"] == "EngineTinyNet"
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [2, 4, 6, 8]
    assert "val/top_1" in run.data.metrics
    assert "config.py" in [a.path for a in client.list_artifacts(run_id)]
    assert "checkpoints/best.pth" in [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert run.inputs.dataset_inputs


def test_a_parent_run_id_makes_a_child_run_even_inside_another_run(
    make_config, tmp_path, monkeypatch
):
    """HPO trials: a child of the study run, never the run in $MLFLOW_RUN_ID."""
    client = MlflowClient()
    exp = client.create_experiment("studies")
    parent = client.create_run(exp).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", parent)
    hook = f"dict(type='MlflowLoggerHook', log_model=False, parent_run_id={parent!r}, experiment_id={exp!r}, tags={{'k': 'v'}})"
    cfg = make_config(max_epochs="1", log_config=f"dict(interval=2, hooks=[{hook}])")
    run_id = run_from_config(cfg, work_dir=tmp_path / "w")
    run = client.get_run(run_id)
    assert run_id != parent and run.info.experiment_id == exp
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["k"] == "v"
    assert run.info.status == "FINISHED" and client.get_run(parent).info.status == "RUNNING"


def test_an_exception_with_a_run_status_ends_the_run_with_it_and_its_tags(make_config, tmp_path):
    from antgo_mlflow.engine.hooks.base import Hook
    from antgo_mlflow.registry import HOOKS

    class Stop(Exception):
        run_status = "KILLED"
        run_tags = {"antgo.hpo.state": "pruned"}

    @HOOKS.register_module(force=True)
    class EngineStopHook(Hook):
        def after_train_epoch(self, runner):
            raise Stop("enough")

    cfg = make_config(max_epochs="3", custom_hooks="[dict(type='EngineStopHook')]")
    with pytest.raises(Stop):
        run_from_config(cfg, work_dir=tmp_path / "w")
    (run,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("engine-tests").experiment_id]
    )
    assert run.info.status == "KILLED"
    assert run.data.tags["antgo.hpo.state"] == "pruned" and "antgo.error" not in run.data.tags
    assert _artifacts(run.info.run_id, "checkpoints") == [
        "checkpoints/best.json",
        "checkpoints/best.pth",
    ]
