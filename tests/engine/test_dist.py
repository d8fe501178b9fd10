"""DDP: a 2-process gloo run on the CPU matches a 1-process run with the same global batch."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow import MlflowClient

from antgo_mlflow.data.samplers import EpochSampler
from antgo_mlflow.engine import launch
from antgo_mlflow.engine.checkpoint import load_checkpoint
from antgo_mlflow.engine.launch import run_from_config
from antgo_mlflow.errors import UsageError
from tests.conftest import free_port


def test_one_process_sampler_order_is_the_union_of_the_shards():
    single = list(EpochSampler(10, shuffle=True, seed=3, num_replicas=1, rank=0))
    shards = [list(EpochSampler(10, shuffle=True, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    # Step k of each rank (batch 2) covers the same samples as step k of one process (batch 4).
    for k in range(2):
        assert sorted(shards[0][2 * k : 2 * k + 2] + shards[1][2 * k : 2 * k + 2]) == sorted(
            single[4 * k : 4 * k + 4]
        )
    s = EpochSampler(10, shuffle=True, seed=3, num_replicas=1, rank=0)
    s.set_epoch(1)
    epoch1 = list(s)
    assert epoch1 != single and sorted(epoch1) == list(range(10))
    s.skip(4)
    assert list(s) == epoch1[4:] and list(s) == epoch1  # skip applies once


def test_validation_sampler_shards_without_padding():
    parts = [
        list(EpochSampler(5, shuffle=False, num_replicas=2, rank=r, pad=False)) for r in (0, 1)
    ]
    assert parts == [[0, 2, 4], [1, 3]]


@pytest.mark.parametrize(
    "value, ids",
    [
        (None, []),
        ("", []),
        (-1, []),
        ("cpu", []),
        (0, [0]),
        ("0,1", [0, 1]),
        ("2, 3", [2, 3]),
        ([1, 0], [1, 0]),
    ],
)
def test_parse_gpu_ids(value, ids):
    assert launch.parse_gpu_ids(value) == ids


@pytest.mark.parametrize("value", ["a", "0,0", "1,-2", True])
def test_bad_gpu_ids_are_usage_errors(value):
    with pytest.raises(UsageError, match="--gpu-id"):
        launch.parse_gpu_ids(value)


def test_torchrun_command_is_an_argument_list(tmp_path):
    cmd = launch.torchrun_command(2, tmp_path / "spec.json")
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=2" in cmd and cmd[-2:] == ["--spec", str(tmp_path / "spec.json")]


def test_worker_reports_a_config_error_in_one_line(make_config, tmp_path, monkeypatch):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config_path": str(make_config(max_epochs="0")), "gpu_id": -1}))
    monkeypatch.setenv(launch.ERROR_FILE_ENV, str(tmp_path / "error"))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    assert launch._worker(["--spec", str(spec)]) == 2
    assert (tmp_path / "error").read_text() == "max_epochs: must be a positive integer, got 0"


def test_two_process_gloo_run_matches_one_process_with_the_same_global_batch(
    make_config, tmp_path, toy_npz
):
    npz = repr(str(toy_npz))

    def config(folder, batch):
        return make_config(
            folder=folder,
            experiment_name=f"'ddp-{batch}'",
            data=(
                f"dict(train=dict(type='EngineNpzData', path={npz}), val=dict(type='EngineNpzData', "
                f"path={npz}, limit=30), train_dataloader=dict(samples_per_gpu={batch}), "
                "val_dataloader=dict(samples_per_gpu=7))"
            ),
        )

    one = run_from_config(config("one/configs", 8), work_dir=tmp_path / "one")
    two = run_from_config(config("two/configs", 4), work_dir=tmp_path / "two", nproc=2)

    client = MlflowClient()
    a = load_checkpoint(tmp_path / "one" / "latest.pth")["state_dict"]
    b = load_checkpoint(tmp_path / "two" / "latest.pth")["state_dict"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key

    def epoch_losses(run_id):
        return [
            m.value
            for m in sorted(client.get_metric_history(run_id, "epoch/loss"), key=lambda m: m.step)
        ]

    assert epoch_losses(two) == pytest.approx(epoch_losses(one), abs=1e-5)
    # Only rank 0 logged: one run, recording the world size; validation saw all 30 samples once.
    exp = client.get_experiment_by_name("ddp-4")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_id == two and run.info.status == "FINISHED"
    assert run.data.params["runner.world_size"] == "2"
    assert run.data.metrics["val/count"] == 30
