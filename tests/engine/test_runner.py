"""Runner: training reaches a loss drop and records a complete MLflow run; bad configs fail clearly."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient

from antgo_mlflow.config import Config
from antgo_mlflow.data.collate import collate
from antgo_mlflow.engine.launch import run_from_config
from antgo_mlflow.engine.runner import Runner
from antgo_mlflow.errors import AntgoError
from tests.engine import toys


def _runs(experiment="engine-tests"):
    exp = MlflowClient().get_experiment_by_name(experiment)
    return [] if exp is None else MlflowClient().search_runs([exp.experiment_id])


def test_two_epochs_reduce_loss_and_log_a_complete_run(make_config, tmp_path):
    cfg = make_config(
        checkpoint_config="dict(interval=1, max_keep_ckpts=1)",
        log_config="dict(interval=2, hooks=[dict(type='TextLoggerHook')])",  # MLflow hook added
    )
    work = tmp_path / "work"
    run_id = run_from_config(cfg, work_dir=work)

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    epoch_loss = [
        m.value
        for m in sorted(client.get_metric_history(run_id, "epoch/loss"), key=lambda m: m.step)
    ]
    assert len(epoch_loss) == 2 and epoch_loss[1] < epoch_loss[0]
    # Params: the flattened config, including nested keys.
    assert run.data.params["optimizer.type"] == "SGD"
    assert run.data.params["model.type"] == "EngineTinyNet"
    assert run.data.params["data.train_dataloader.samples_per_gpu"] == "8"
    # Step metrics every log_config.interval=2 iterations, steps increasing.
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) == 8
    assert {"train/lr", "train/acc", "epoch/throughput_img_s", "val/top_1"} <= set(run.data.metrics)
    # Tags, config artifact, checkpoints, model and dataset input.
    assert run.data.tags["antgo.exp"] == "exp1"
    assert run.data.tags["antgo.config_hash"] == Config.fromfile(cfg).hash()
    root = {a.path for a in client.list_artifacts(run_id)}
    assert "config.py" in root
    assert {a.path for a in client.list_artifacts(run_id, "checkpoints")} == {
        "checkpoints/best.pth",
        "checkpoints/best.json",
    }
    assert "metrics/summary.txt" in {a.path for a in client.list_artifacts(run_id, "metrics")}
    assert len(run.outputs.model_outputs) == 1
    model = mlflow.pytorch.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
    assert model is not None
    contexts = {(i.dataset.name, t.value) for i in run.inputs.dataset_inputs for t in i.tags}
    assert ("EngineNpzData:train", "train") in contexts
    # Files: max_keep_ckpts=1 keeps the last epoch file; latest/best/best.json/train.log exist.
    names = {p.name for p in work.iterdir()}
    assert {"epoch_2.pth", "latest.pth", "best.pth", "best.json", "train.log"} <= names
    assert "epoch_1.pth" not in names
    best = json.loads((work / "best.json").read_text())
    assert best["key"] == "top_1" and best["score"] == max(
        m.value for m in client.get_metric_history(run_id, "val/top_1")
    )


def test_a_run_that_raises_ends_failed(make_config, tmp_path):
    cfg = make_config(custom_hooks="[dict(type='EngineExplodeHook', at_iter=3)]")
    with pytest.raises(RuntimeError, match="boom"):
        run_from_config(cfg, work_dir=tmp_path / "w")
    (run,) = _runs()
    assert run.info.status == "FAILED"
    assert "boom" in run.data.tags["antgo.error"]
    assert not (tmp_path / "w" / "latest.pth").exists()  # a crash does not overwrite latest


@pytest.mark.parametrize(
    "override, fragment",
    [
        (
            {"model": "dict(type='EngineTinyNett')"},
            "model.type: unknown model 'EngineTinyNett' (did you mean 'EngineTinyNet'?)",
        ),
        (
            {"model": "dict(type='EngineTinyNet', widht=3)"},
            "model.widht: EngineTinyNet has no argument 'widht'",
        ),
        (
            {"data": "dict(train=dict(type='EngineNpzData', path='/no/such.npz'))"},
            "data.train: path: /no/such.npz not found",
        ),
        (
            {
                "data": "dict(train=dict(type='EngineNpzData', path=NPZ), train_dataloader=dict(samples_per_gpu=0))"
            },
            "data.train_dataloader.samples_per_gpu: must be a positive integer, got 0",
        ),
        (
            {
                "data": "dict(train=dict(type='EngineNpzData', path=NPZ), train_dataloader=dict(batch_size=4))"
            },
            "data.train_dataloader.batch_size: unknown option",
        ),
        ({"optimizer": "dict(type='SGD', lrr=0.1)"}, "optimizer.lrr: SGD has no argument 'lrr'"),
        ({"optimizer": "dict(type='Sgd', lr=0.1)"}, "optimizer.type: unknown optimizer 'Sgd'"),
        ({"lr_config": "dict(policy='Cosine')"}, "lr_config.policy: unknown policy 'Cosine'"),
        (
            {"lr_config": "dict(policy='Step', steps=[1])"},
            "lr_config.steps: policy Step has no argument 'steps'",
        ),
        (
            {"custom_hooks": "[dict(type='NoSuchHook')]"},
            "custom_hooks.0.type: unknown hook 'NoSuchHook'",
        ),
        (
            {"evaluation": "dict(metric=dict(type='EngineAccuracy'), save_best='top_9')"},
            "evaluation.save_best: the metric has no key 'top_9'",
        ),
        ({"max_epochs": None}, "max_epochs: missing"),
        ({"optimizer_config": "dict(grad_clipp=1)"}, "optimizer_config.grad_clipp: unknown option"),
        (
            {"log_config": "dict(interval=2, hooks=[dict(type='TextLoggerHook', interval=3)])"},
            "TextLoggerHook.interval: 3 is not a multiple of log_config.interval (2)",
        ),
        (
            {
                "log_config": "dict(interval=2, hooks=[dict(type='MlflowLoggerHook', by_epoch=False)])"
            },
            "log_config.hooks.0: building MlflowLoggerHook failed: by_epoch=False is not supported",
        ),
    ],
)
def test_bad_config_fails_with_one_line_naming_the_key(
    make_config, toy_npz, tmp_path, override, fragment
):
    override = {k: (v.replace("NPZ", repr(str(toy_npz))) if v else v) for k, v in override.items()}
    cfg = make_config(**override)
    with pytest.raises(AntgoError) as info:
        run_from_config(cfg, work_dir=tmp_path / "w")
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message
    # Config problems found while building leave no run behind (save_best is only known at the
    # first validation, so that one ends FAILED instead).
    if "save_best" in fragment:
        assert [r.info.status for r in _runs()] == ["FAILED"]
    else:
        assert not _runs()


def test_hooks_run_in_priority_order_and_see_metrics(make_config, tmp_path):
    toys.EngineRecorderHook.calls.clear()
    cfg = make_config(
        max_epochs="1",
        custom_hooks="[dict(type='EngineRecorderHook', tag='late', priority='LOWEST'), "
        "dict(type='EngineRecorderHook', tag='early', priority=5)]",
        log_config="dict(interval=2, hooks=[dict(type='TextLoggerHook'), dict(type='MlflowLoggerHook', log_model=False)])",
    )
    run_from_config(cfg, work_dir=tmp_path / "w")
    calls = toys.EngineRecorderHook.calls
    assert [c[:2] for c in calls if c[1] == "before_run"] == [
        ("early", "before_run"),
        ("late", "before_run"),
    ]
    val = [c for c in calls if c[1] == "after_val_epoch"]
    assert val[0][0] == "early" and "top_1" in val[0][2]
    assert calls[-1] == ("late", "after_run")


def test_test_process_writes_json_and_logs_to_the_training_run(make_config, tmp_path):
    cfg = make_config(
        max_epochs="1",
        log_config="dict(interval=4, hooks=[dict(type='MlflowLoggerHook', log_model=False)])",
    )
    work = tmp_path / "w"
    run_id = run_from_config(cfg, work_dir=work)
    out = tmp_path / "metrics.json"
    metrics = run_from_config(cfg, process="test", checkpoint=work / "best.pth", json_out=out)
    assert json.loads(out.read_text()) == metrics
    assert set(metrics) == {"top_1", "count"} and metrics["count"] == 32
    run = MlflowClient().get_run(run_id)
    assert run.data.metrics["test/top_1"] == metrics["top_1"]
    assert run.info.status == "FINISHED"


def test_test_without_checkpoint_file_is_one_line(make_config, tmp_path):
    with pytest.raises(AntgoError, match=r"--checkpoint: .*missing.pth not found"):
        run_from_config(make_config(), process="test", checkpoint=tmp_path / "missing.pth")


def test_runner_trains_into_an_active_run(make_config, tmp_path):
    cfg = Config.fromfile(make_config(max_epochs="1"))
    cfg.merge_overrides({"log_config.hooks": [dict(type="MlflowLoggerHook", log_model=False)]})
    with mlflow.start_run() as active:
        run_id = Runner(cfg, work_dir=tmp_path / "w").train()
        assert run_id == active.info.run_id
        assert mlflow.active_run() is not None  # the caller's run is left open for them
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
    assert "val/top_1" in MlflowClient().get_run(run_id).data.metrics


def test_collate_stacks_tensors_and_keeps_ragged_fields():
    import torch

    batch = collate(
        [
            {"image": torch.zeros(1, 2, 2), "label": 1, "boxes": torch.zeros(2, 4), "name": "a"},
            {"image": torch.ones(1, 2, 2), "label": 0, "boxes": torch.zeros(3, 4), "name": "b"},
        ]
    )
    assert batch["image"].shape == (2, 1, 2, 2)
    assert batch["label"].tolist() == [1, 0]
    assert isinstance(batch["boxes"], list) and batch["name"] == ["a", "b"]


def test_runner_trains_the_shipped_classifier_with_the_shipped_metric(make_config, tmp_path):
    """The real ImageClassifier/WideResNet (models/) and AccuracyEval (engine.metrics) plug in."""
    npz = repr(str(toys.make_npz(tmp_path / "rgb.npz", n=32, size=16, channels=3)))
    cfg = make_config(
        max_epochs="1",
        model=(
            "dict(type='ImageClassifier', backbone=dict(type='WideResNet', num_classes=4, depth=10, "
            "widen_factor=1), head=dict(type='ClsHead'))"
        ),
        data=(
            f"dict(train=dict(type='EngineNpzData', path={npz}), val=dict(type='EngineNpzData', "
            f"path={npz}), train_dataloader=dict(samples_per_gpu=16), val_dataloader=dict(samples_per_gpu=16))"
        ),
        evaluation="dict(metric=dict(type='AccuracyEval', topk=(1,)), save_best='top_1')",
    )
    run = MlflowClient().get_run(run_from_config(cfg, work_dir=tmp_path / "w"))
    assert run.info.status == "FINISHED"
    assert "val/top_1" in run.data.metrics and "epoch/loss" in run.data.metrics


def test_a_stream_dataset_needs_and_uses_iters_per_epoch(make_config, toy_npz, tmp_path):
    npz = repr(str(toy_npz))
    data = f"dict(train=dict(type='EngineStreamData', path={npz}), train_dataloader=dict(samples_per_gpu=8{{}}))"
    with pytest.raises(AntgoError, match="data.train_dataloader.iters_per_epoch: needed"):
        run_from_config(make_config(data=data.format(""), evaluation=None), work_dir=tmp_path / "a")
    cfg = make_config(folder="b/configs", data=data.format(", iters_per_epoch=3"), evaluation=None)
    run_id = run_from_config(cfg, work_dir=tmp_path / "b")
    steps = [m.step for m in MlflowClient().get_metric_history(run_id, "train/loss")]
    assert steps == [2, 4, 6]  # 2 epochs x 3 iterations, logged every 2nd


def test_text_logger_interval_and_iteration_lines_are_honoured(make_config, tmp_path):
    cfg = make_config(
        max_epochs="2",
        evaluation=None,
        log_config=(
            "dict(interval=2, hooks=[dict(type='TextLoggerHook', interval=4, by_epoch=False), "
            "dict(type='MlflowLoggerHook', log_model=False)])"
        ),
    )
    run_from_config(cfg, work_dir=tmp_path / "w")
    lines = [ln for ln in (tmp_path / "w" / "train.log").read_text().splitlines() if "loss" in ln]
    assert [ln.split("]")[0] for ln in lines if ln.startswith("Iter")] == [
        f"Iter [{i}/16" for i in (4, 8, 12, 16)
    ]
