"""Checkpoints: files, safe loading, load_from reports, resume into the same MLflow run (also after SIGTERM)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from antgo_mlflow.engine.checkpoint import (
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from antgo_mlflow.engine.launch import run_from_config
from antgo_mlflow.errors import ConfigError
from tests.engine.toys import EngineTinyNet


def _steps(run_id, key):
    return [m.step for m in MlflowClient().get_metric_history(run_id, key)]


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save_checkpoint({"rng": rng_state()}, tmp_path / "r.pth")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_load_from_reports_missing_unexpected_and_mismatched_keys(tmp_path):
    src = EngineTinyNet(width=4).state_dict()
    src["extra.weight"] = torch.zeros(2)
    src["fc.weight"] = torch.zeros(4, 99)  # wrong shape
    del src["fc.bias"]
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.items()}}, path)
    report = load_weights(EngineTinyNet(width=4), path)
    assert report.loaded == 2  # conv.weight, conv.bias
    assert report.unexpected == ["extra.weight"]
    assert report.missing == ["fc.bias"]
    assert report.mismatched == ["fc.weight (4, 99) vs (4, 16)"]
    text = report.text()
    assert "1 missing in checkpoint" in text and "1 unexpected" in text and "shape mismatch" in text


def test_load_from_rejects_pickled_code_and_missing_files(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "obj": object()}, path)  # needs pickle globals to load
    with pytest.raises(ConfigError, match=r"load_from: .*evil.pth is not a readable checkpoint"):
        load_weights(EngineTinyNet(), path)
    with pytest.raises(ConfigError, match=r"load_from: .*nope.pth not found"):
        load_weights(EngineTinyNet(), tmp_path / "nope.pth")


def test_load_from_initialises_the_model_only(make_config, tmp_path, capsys):
    cfg = make_config(max_epochs="1")
    scratch = run_from_config(cfg, work_dir=tmp_path / "a")
    trained = load_checkpoint(tmp_path / "a" / "latest.pth")["state_dict"]
    run_id = run_from_config(
        cfg,
        work_dir=tmp_path / "b",
        load_from=tmp_path / "a" / "latest.pth",
        no_validate=True,
        max_epochs=1,
    )
    assert "all keys matched" in capsys.readouterr().err
    # A fresh run (not a resume): its own run id and epoch counter from 1.
    assert _steps(run_id, "epoch/loss") == [1]

    def first_loss(rid):
        return MlflowClient().get_metric_history(rid, "train/loss")[0].value

    assert first_loss(run_id) < first_loss(scratch)  # started from the trained weights
    assert set(trained) == set(load_checkpoint(tmp_path / "b" / "latest.pth")["state_dict"])
    report = MlflowClient().download_artifacts(run_id, "load_from.txt", str(tmp_path))
    assert "all keys matched" in open(report).read()


def test_interrupted_run_resumes_into_the_same_run_and_matches_an_uninterrupted_one(
    make_config, tmp_path
):
    cfg = make_config(max_epochs="3", experiment_name="'resume'")
    straight = run_from_config(cfg, work_dir=tmp_path / "straight")

    cfg_int = make_config(
        folder="exp2/configs",
        max_epochs="3",
        experiment_name="'resume'",
        custom_hooks="[dict(type='EngineInterruptHook', at_iter=11)]",
    )
    work = tmp_path / "int"
    with pytest.raises(KeyboardInterrupt):
        run_from_config(cfg_int, work_dir=work)
    meta = load_checkpoint(work / "latest.pth")["meta"]
    assert (meta["epoch"], meta["inner_iter"], meta["iter"]) == (1, 3, 11)
    run_id = meta["mlflow_run_id"]
    assert MlflowClient().get_run(run_id).info.status == "KILLED"

    resumed = run_from_config(
        cfg, work_dir=work, resume_from=work / "latest.pth"
    )  # same model/data, without the interrupting hook
    assert resumed == run_id
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert _steps(run_id, "epoch/loss") == [1, 2, 3]
    steps = _steps(run_id, "train/loss")
    assert steps == list(range(2, 25, 2))  # every 2nd iteration of 3x8, none twice
    assert run.data.tags["antgo.resumed_at_iter"] == "11"
    # Mid-epoch resume replays nothing: the weights equal an uninterrupted run's.
    a = load_checkpoint(tmp_path / "straight" / "latest.pth")["state_dict"]
    b = load_checkpoint(work / "latest.pth")["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert straight != run_id


def test_sigterm_mid_epoch_saves_latest_and_marks_killed_then_resume_continues(
    make_config, tmp_path, sigterm_training
):
    slow = make_config(
        max_epochs="3",
        data=(
            f"dict(train=dict(type='EngineNpzData', path={str(tmp_path / 'data' / 'toy.npz')!r}, delay=0.03), "
            "train_dataloader=dict(samples_per_gpu=8, workers_per_gpu=0))"
        ),
        evaluation=None,
    )
    work = tmp_path / "w"
    returncode, err = sigterm_training(slow, work, "Epoch [1/3][2/8]")
    assert returncode != 0
    assert "interrupted: saved" in err
    meta = load_checkpoint(work / "latest.pth")["meta"]
    assert meta["epoch"] == 0 and 2 <= meta["inner_iter"] < 8
    run_id = meta["mlflow_run_id"]
    assert MlflowClient().get_run(run_id).info.status == "KILLED"
    logged = _steps(run_id, "train/loss")
    assert logged and max(logged) <= meta["iter"]

    resumed = run_from_config(
        slow, cfg_options=["data.train.delay=0"], work_dir=work, resume_from="auto"
    )
    assert resumed == run_id
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
    steps = _steps(run_id, "train/loss")
    assert steps == sorted(set(steps)) == list(range(2, 25, 2))
    assert _steps(run_id, "epoch/loss") == [1, 2, 3]


def test_hooks_add_state_to_checkpoints_and_get_it_back_on_resume(make_config, tmp_path):
    from tests.engine.toys import EngineStateHook

    EngineStateHook.loaded.clear()
    cfg = make_config(
        max_epochs="1", evaluation=None, custom_hooks="[dict(type='EngineStateHook')]"
    )
    work = tmp_path / "w"
    run_id = run_from_config(cfg, work_dir=work)
    assert load_checkpoint(work / "epoch_1.pth")["engine_state"] == {"epoch_seen": 1}
    assert run_from_config(cfg, work_dir=work, resume_from="auto", max_epochs=2) == run_id
    assert EngineStateHook.loaded == [{"epoch_seen": 1}]
    assert _steps(run_id, "epoch/loss") == [1, 2]
