"""The `train` and `export` entry points, run as MLflow runs them (subprocesses, real store).

One tiny training run (module fixture) feeds every test: export from its run id and from its
checkpoint, and the bad paths, each one line on stderr with exit code 2.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.entrypoints.conftest import REPO, entry_env, tiny_options
from tests.helpers import assert_one_line_error


def _entry(name: str, *args: str, uri: str, cache, cwd, timeout: float = 300):
    proc = subprocess.run(
        [sys.executable, "-m", f"antgo_mlflow.entrypoints.{name}", *args],
        cwd=cwd,
        env=entry_env(uri, cache),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return _Result(proc.returncode, proc.stdout, proc.stderr)


class _Result:
    def __init__(self, code, stdout, stderr):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self):
        return (
            f"_Result({self.code}, stdout={self.stdout[-500:]!r}, stderr={self.stderr[-1500:]!r})"
        )


def test_train_logs_a_finished_run_with_test_metrics_checkpoint_and_model(use_trained_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(use_trained_store.run_id)
    assert run.info.status == "FINISHED"
    assert "test/top_1" in run.data.metrics
    assert run.data.params["max_epochs"] == "1"
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/best.pth" in artifacts
    assert run.inputs.dataset_inputs, "the training data is logged as an mlflow.data input"
    assert "antgo-train: test (best.pth): top_1=" in use_trained_store.stderr


def test_checkpoints_record_the_config_as_plain_data_not_code(use_trained_store):
    import json

    import torch

    ckpt = torch.load(use_trained_store.work_dir / "best.pth", weights_only=True)
    data = ckpt["meta"]["config_dict"]
    assert "config" not in ckpt["meta"]  # no config text: nothing a loader could execute
    assert data["model"]["type"] == "ImageClassifier"
    assert json.loads(json.dumps(data)) == data  # JSON-safe


def test_training_run_inputs_name_their_manifest_schema_profile_and_the_test_set(
    use_trained_store,
):
    """What the MLflow UI's Datasets panel shows: a path, the fields, counts; train, val, test."""
    import json
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    run = MlflowClient().get_run(use_trained_store.run_id)
    by_context = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    # the tiny run trains on the val split: MLflow keeps one input for the same name + digest
    assert set(by_context) == {"train", "test"}
    for context, dataset in by_context.items():
        assert dataset.source_type == "local", context
        uri = json.loads(dataset.source)["uri"]
        assert uri.endswith("-manifest.json") and Path(uri).is_file(), (context, uri)
        columns = {c["name"]: c["type"] for c in json.loads(dataset.schema)["mlflow_colspec"]}
        assert columns["image"] == "binary" and columns["image_label"] == "long", columns
        assert {"image_file", "tag", "height", "width"} <= set(columns)
        profile = json.loads(dataset.profile)
        assert profile["unlabelled"] == 0 and profile["classes"] == 10, profile
    train = json.loads(by_context["train"].profile)  # the tiny run trains on the val split
    assert train["samples"] == train["labelled"] == 179
    assert train["class_counts"].startswith("0: 18, 1: 18")
    assert by_context["test"].name == "test"


def test_test_metrics_are_linked_to_the_logged_model_and_test_set(use_trained_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(use_trained_store.run_id)
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    metrics = {m.key: m for m in model.metrics}
    assert metrics["test/top_1"].value == run.data.metrics["test/top_1"]
    test_input = next(i for i in run.inputs.dataset_inputs if i.tags[0].value == "test")
    assert metrics["test/top_1"].dataset_digest == test_input.dataset.digest


def test_the_printed_export_hint_is_the_way_the_run_was_started(use_trained_store):
    """Started with `python -m ...train`: the hint is the export script, and it parses."""
    import shlex

    from antgo_mlflow.entrypoints.export import build_parser

    line = next(ln for ln in use_trained_store.stderr.splitlines() if "export: " in ln)
    argv = shlex.split(line.split("export: ", 1)[1])
    assert argv[1:3] == ["-m", "antgo_mlflow.entrypoints.export"]
    assert build_parser().parse_args(argv[3:]).run_id == use_trained_store.run_id


def test_export_from_run_id_checks_parity_and_logs_onnx_to_a_child_run(use_trained_store, tmp_path):
    import mlflow
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    t = use_trained_store
    result = _entry(
        "export", "--run-id", t.run_id, "--output", str(out), uri=t.uri, cache=t.cache, cwd=tmp_path
    )
    assert result.code == 0, result
    assert "ONNX Runtime vs PyTorch max abs diff" in result.stdout
    diff = float(result.stdout.split("max abs diff ")[1].split()[0])
    assert diff <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"image": np.zeros((3, 3, 32, 32), np.float32)})[0]
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)

    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{t.run_id}'",
        search_all_experiments=True,
        output_format="list",
    )
    assert len(children) == 1
    child = children[0]
    assert child.data.tags["antgo.process"] == "export"
    assert child.data.metrics["export/max_abs_diff"] <= 1e-4
    model = mlflow.models.get_model_info(f"runs:/{child.info.run_id}/onnx_model")
    assert "onnx" in model.flavors
    assert tuple(model.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 3, 32, 32)
    # what the loader reads back: the training preprocessing
    assert model.metadata["antgo.preprocess"]["size"] == [32, 32]
    assert len(model.metadata["antgo.preprocess"]["mean"]) == 3


def test_export_from_checkpoint_with_static_batch_and_old_opset(use_trained_store, tmp_path):
    from antgo_mlflow.entrypoints.export import export_model

    best = use_trained_store.work_dir / "best.pth"
    result = export_model(
        checkpoint=best, opset=13, dynamic_batch=False, output=tmp_path / "m.onnx", log=False
    )
    assert result.opset == 13 and result.max_abs_diff <= 1e-4
    import onnx

    model = onnx.load(str(tmp_path / "m.onnx"))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 32]


def test_export_of_unknown_run_is_one_line(use_trained_store, tmp_path):
    t = use_trained_store
    result = _entry(
        "export",
        "--run-id",
        "0123456789abcdef0123456789abcdef",
        uri=t.uri,
        cache=t.cache,
        cwd=tmp_path,
    )
    assert_one_line_error(result, "--run-id", "no such run")


def test_export_of_a_run_without_checkpoint_is_one_line(use_trained_store, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    empty = client.create_run(client.get_experiment_by_name("Default").experiment_id).info.run_id
    client.set_terminated(empty)
    t = use_trained_store
    result = _entry("export", "--run-id", empty, uri=t.uri, cache=t.cache, cwd=tmp_path)
    assert_one_line_error(result, empty, "no checkpoint")
    assert not list(tmp_path.rglob("*.onnx"))


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([], ["exactly one of --run-id and --checkpoint"]),
        (["--run-id", "x", "--checkpoint", "y.pth"], ["exactly one"]),
        (["--checkpoint", "missing.pth"], ["--checkpoint", "not found"]),
        (["--checkpoint", "x.pth", "--opset", "99"], ["--opset"]),
        (["--checkpoint", "x.pth", "--dynamic-batch", "maybe"], ["--dynamic-batch"]),
        (["--checkpoint", "x.pth", "--output", "."], ["--output", "is a folder"]),
        (["--checkpoint", "x.pth", "--trust-checkpoint-config", "perhaps"], ["--trust-"]),
    ],
)
def test_export_parameter_errors_are_one_line(args, fragments, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "antgo_mlflow.entrypoints.export", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(_Result(proc.returncode, proc.stdout, proc.stderr), *fragments)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--epochs", "0"], ["--epochs", ">= 1"]),
        (["--lr", "fast"], ["--lr"]),
        (["--config", "nope.py"], ["--config", "not found"]),
        (["--cfg-options", "optimizer.lr"], ["--cfg-options", "key=value"]),
    ],
)
def test_train_parameter_errors_are_one_line(args, fragments, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "antgo_mlflow.entrypoints.train", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(_Result(proc.returncode, proc.stdout, proc.stderr), *fragments)


@pytest.mark.slow
def test_mlflow_run_train_on_the_repository_project(tmp_path, monkeypatch):
    """`mlflow run <repo> -e train --env-manager local` with the default recipe (1 tiny epoch)."""
    import mlflow

    cache = tmp_path / "cache"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(REPO),
            "-e",
            "train",
            "--env-manager",
            "local",
            "-P",
            "epochs=1",
            "-P",
            f"cfg_options={tiny_options(cache)}",
            "-P",
            f"work_dir={tmp_path / 'work'}",
        ],
        cwd=tmp_path,
        env=entry_env(uri, cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "train"
    assert "test/top_1" in run.data.metrics
    assert (tmp_path / "work" / "best.pth").is_file()
    # params: what was given (no '' for parameters left out) and the resolved config
    assert run.data.params["epochs"] == run.data.params["max_epochs"] == "1"
    assert "''" not in run.data.params.values() and "lr" not in run.data.params
    # the hint pastes as the run was started: local stays local (no environment to build)
    hint = next(ln for ln in proc.stderr.splitlines() if "export: " in ln).split("export: ")[1]
    assert hint.startswith("mlflow run ") and "--env-manager local" in hint
    assert f"-P run_id={run.info.run_id}" in hint
