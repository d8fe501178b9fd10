"""Loops: several training sources, weak/strong views, mixing ratios, iteration-based training."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from mlflow import MlflowClient

from antgo_mlflow.engine.checkpoint import load_checkpoint
from antgo_mlflow.engine.launch import run_from_config
from antgo_mlflow.errors import AntgoError
from tests.engine import toys


def _steps(run_id, key):
    return sorted(m.step for m in MlflowClient().get_metric_history(run_id, key))


def _two_source_config(make_config, npz, folder="two/configs", delay=0.0, **overrides):
    path = repr(str(npz))
    keys = dict(
        model="dict(type='EngineTwoSourceNet')",
        data=(
            f"dict(train=dict(labeled=dict(type='EngineNpzData', path={path}, limit=16), "
            f"unlabeled=dict(type='EngineUnlabeledData', path={path}, views=True, delay={delay})), "
            "labeled_dataloader=dict(samples_per_gpu=4), unlabeled_dataloader=dict(samples_per_gpu=8), "
            f"val=dict(type='EngineNpzData', path={path}, limit=16), val_dataloader=dict(samples_per_gpu=16))"
        ),
        max_epochs="2",
        experiment_name="'two-source'",
    )
    keys.update(overrides)
    return make_config(folder=folder, **keys)


def test_two_sources_with_their_own_batch_sizes_reach_train_step_and_log_both_losses(
    make_config, toy_npz, tmp_path
):
    toys.EngineTwoSourceNet.seen.clear()
    run_id = run_from_config(_two_source_config(make_config, toy_npz), work_dir=tmp_path / "w")
    seen = toys.EngineTwoSourceNet.seen
    # An epoch is the longest source (64 unlabeled / 8 = 8 batches); the 16 labeled samples (4
    # batches) cycle twice per epoch, each pass reshuffled.
    assert len(seen) == 16
    assert {s["labeled"] for s in seen} == {(4, 1, 8, 8)}
    assert {s["weak"] for s in seen} == {s["strong"] for s in seen} == {(8, 1, 8, 8)}
    epoch1 = [i for s in seen[:8] for i in s["unlabeled_index"]]
    assert sorted(epoch1) == list(range(64))  # every unlabeled sample once per epoch
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert {"train/loss_sup", "train/loss_unsup", "train/mask_ratio", "epoch/loss_sup"} <= set(
        run.data.metrics
    )
    assert _steps(run_id, "train/loss_unsup") == list(range(2, 17, 2))
    contexts = {i.dataset.name for i in run.inputs.dataset_inputs}
    assert {"EngineNpzData:labeled", "EngineUnlabeledData:unlabeled"} <= contexts
    assert "val/top_1" in run.data.metrics


def test_an_interrupted_two_source_run_resumes_to_the_same_weights(make_config, toy_npz, tmp_path):
    straight = _two_source_config(make_config, toy_npz, experiment_name="'ts-resume'")
    run_from_config(straight, work_dir=tmp_path / "a")
    broken = _two_source_config(
        make_config,
        toy_npz,
        folder="b/configs",
        experiment_name="'ts-resume'",
        custom_hooks="[dict(type='EngineInterruptHook', at_iter=11)]",
    )
    with pytest.raises(KeyboardInterrupt):
        run_from_config(broken, work_dir=tmp_path / "b")
    run_from_config(straight, work_dir=tmp_path / "b", resume_from="auto")
    a = load_checkpoint(tmp_path / "a" / "latest.pth")["state_dict"]
    b = load_checkpoint(tmp_path / "b" / "latest.pth")["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_sigterm_stops_a_two_source_run_and_resume_continues_the_same_run(
    make_config, toy_npz, tmp_path, sigterm_training
):
    cfg = _two_source_config(make_config, toy_npz, delay=0.02, evaluation=None)
    work = tmp_path / "w"
    returncode, err = sigterm_training(cfg, work, "Epoch [1/2][2/8]")
    assert returncode != 0 and "interrupted: saved" in err
    meta = load_checkpoint(work / "latest.pth")["meta"]
    run_id = meta["mlflow_run_id"]
    assert MlflowClient().get_run(run_id).info.status == "KILLED"
    assert 2 <= meta["iter"] < 16
    resumed = run_from_config(
        cfg, cfg_options=["data.train.unlabeled.delay=0"], work_dir=work, resume_from="auto"
    )
    assert resumed == run_id
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
    for key in ("train/loss_sup", "train/loss_unsup"):
        assert _steps(run_id, key) == list(range(2, 17, 2))  # none lost, none twice


def test_mixing_ratios_drive_the_samples_of_a_training_run(make_config, tmp_path):
    toys.EngineSourceCounter.sources.clear()
    cfg = make_config(
        model="dict(type='EngineSourceCounter')",
        data=(
            "dict(train=dict(type='EngineMixData', sizes=(500, 500)), train_dataloader=dict("
            "samples_per_gpu=50, sampler=dict(type='MixSampler', ratios=[3, 1])))"
        ),
        evaluation=None,
        max_epochs="2",
    )
    run_from_config(cfg, work_dir=tmp_path / "w")
    counts = Counter(toys.EngineSourceCounter.sources)
    assert sum(counts.values()) == 2000
    assert abs(counts[0] / 2000 - 0.75) <= 0.05


def test_iteration_based_training_counts_iterations_and_validates_per_round(
    make_config, toy_npz, tmp_path
):
    cfg = make_config(
        max_epochs=None,
        evaluation="dict(metric=dict(type='EngineAccuracy'), save_best='top_1')",
        train_cfg="dict(type='IterBasedTrainLoop', max_iters=10, val_interval=4)",
    )
    work = tmp_path / "w"
    run_id = run_from_config(cfg, work_dir=work)
    assert _steps(run_id, "train/loss") == [2, 4, 6, 8, 10]
    assert _steps(run_id, "val/top_1") == [1, 2, 3]  # rounds of 4, 4 and 2 iterations
    assert load_checkpoint(work / "latest.pth")["meta"]["iter"] == 10


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (
            {"train_cfg": "dict(type='EpochBasedTrainLoop', max_epochs=3)"},
            "train_cfg.max_epochs: 3 contradicts max_epochs=2",
        ),
        (
            {"train_cfg": "dict(type='IterBasedTrainLoop', max_iters=5)"},
            "max_epochs: the IterBasedTrainLoop counts train_cfg.max_iters",
        ),
        ({"train_cfg": "dict(type='EpochLoop')"}, "train_cfg.type: unknown loop 'EpochLoop'"),
        (
            {"data": "dict(train=dict(a=dict(type='EngineNpzData', path='/no.npz')))"},
            "data.train.a: path: /no.npz not found",
        ),
        (
            {"optimizer_config": "dict(accumulative_counts=0)"},
            "optimizer_config.accumulative_counts: must be a positive integer",
        ),
    ],
)
def test_bad_loop_configs_fail_with_one_line(make_config, tmp_path, overrides, fragment):
    with pytest.raises(AntgoError) as info:
        run_from_config(make_config(**overrides), work_dir=tmp_path / "w")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_single_source_model_refuses_several_sources(make_config, toy_npz, tmp_path):
    cfg = _two_source_config(make_config, toy_npz, model="dict(type='EngineTinyNet')")
    with pytest.raises(AntgoError, match="several sources .labeled, unlabeled. need a model"):
        run_from_config(cfg, work_dir=tmp_path / "w")


def test_a_batch_larger_than_the_training_set_with_drop_last_says_both_numbers(
    make_config, toy_npz, tmp_path
):
    data = (
        f"dict(train=dict(type='EngineNpzData', path={str(toy_npz)!r}), "
        "train_dataloader=dict(samples_per_gpu=100, workers_per_gpu=0, drop_last=True))"
    )
    with pytest.raises(AntgoError) as info:
        run_from_config(make_config(data=data), work_dir=tmp_path / "w", no_validate=True)
    message = str(info.value)
    assert "a batch of 100 is larger than the 64 training samples" in message, message
    assert "drop_last" in message and "\n" not in message
