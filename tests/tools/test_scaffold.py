"""`antgo create mvp`: the seed's layout, refusal to overwrite, and a scaffold that trains two ways.

The training tests run the real framework on the embedded digits, with the training set cut to
the 179-sample validation split (2 iterations) so each stays within seconds of start-up time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from antgo_mlflow.errors import UsageError
from antgo_mlflow.tools.scaffold import create_mvp
from tests.helpers import assert_one_line_error

SEED_LAYOUT = [
    "MLproject",
    "README.md",
    "install.sh",
    "launch.sh",
    "python_env.yaml",
    "requirements.txt",
    "system.py",
    "{n}/__init__.py",
    "{n}/configs/config.py",
    "{n}/dataset.py",
    "{n}/hooks.py",
    "{n}/main.py",
    "{n}/metrics.py",
    "{n}/models/__init__.py",
    "{n}/models/wideres.py",
]


def _tiny_training_options(epochs: bool = True) -> str:
    """Overrides that train on the 179-sample val split for one epoch (2 iterations)."""
    from antgo_mlflow.data.sources.digits import prepare_digits

    val = prepare_digits().shard_paths("val")
    # the final model logging (mlflow.pytorch, ~3 s) is covered by tests/entrypoints
    hooks = [{"type": "TextLoggerHook"}, {"type": "MlflowLoggerHook", "log_model": False}]
    epochs_option = " max_epochs=1" if epochs else ""
    return f"data.train.data_path_list={val!r}{epochs_option} log_config.hooks={hooks!r}"


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    # `mlflow run --env-manager local` runs `python` from PATH: the interpreter running the tests
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_create_mvp_writes_the_seed_layout(tmp_path):
    folder = create_mvp("mycls", tgt=tmp_path)
    assert folder == tmp_path / "mycls"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f.format(n="mycls") for f in SEED_LAYOUT)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert "{{name}}" not in path.read_text(), path
    assert "@MODELS.register_module(force=True)" in (folder / "models" / "wideres.py").read_text()
    assert "name: mycls" in (tmp_path / "MLproject").read_text()
    assert os.access(tmp_path / "launch.sh", os.X_OK)
    assert "torchrun" in (tmp_path / "launch.sh").read_text()


def test_create_mvp_refuses_to_overwrite_unless_forced(tmp_path, run_antgo):
    first = run_antgo("create", "mvp", "--name=cifar10", f"--tgt={tmp_path}")
    assert first.code == 0, first
    main_py = tmp_path / "cifar10" / "main.py"
    main_py.write_text("# my edits\n")
    again = run_antgo("create", "mvp", "--name", "cifar10", "--tgt", str(tmp_path))
    assert_one_line_error(again, "already exists", "--force")
    assert main_py.read_text() == "# my edits\n"
    forced = run_antgo("create", "mvp", "--name=cifar10", f"--tgt={tmp_path}", "--force")
    assert forced.code == 0, forced
    assert "--process" in main_py.read_text()


def test_create_mvp_rejects_a_name_that_is_not_a_package_name(tmp_path, run_antgo):
    result = run_antgo("create", "mvp", "--name=my-cls", f"--tgt={tmp_path}")
    assert_one_line_error(result, "--name", "identifier")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError):
        create_mvp("class", tgt=tmp_path)


@pytest.mark.slow
def test_scaffold_trains_tests_and_exports_with_main_py(tmp_path):
    create_mvp("mycls", tgt=tmp_path)
    env = _env(tmp_path)
    main = [sys.executable, "mycls/main.py", "--exp=mycls", "--gpu-id=-1"]
    train = subprocess.run(
        [*main, "--process=train", "--cfg-options", _tiny_training_options()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt_dir = tmp_path / "output" / "mycls" / "output" / "checkpoint"
    assert (ckpt_dir / "best.pth").is_file() and (ckpt_dir / "epoch_1.pth").is_file()
    assert "test (best.pth): top_1=" in train.stdout  # the tutorial says to look at it
    hint = next(ln for ln in train.stdout.splitlines() if ln.startswith("export: "))
    assert "mycls/main.py --exp=mycls --process=export --run-id=" in hint  # started directly

    test = subprocess.run(
        [*main, "--process=test", f"--json={tmp_path / 'eval.json'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert test.returncode == 0, test.stderr[-3000:]
    assert "top_1=" in test.stdout and (tmp_path / "eval.json").is_file()

    export = subprocess.run(
        [*main, "--process=export", f"--checkpoint={ckpt_dir / 'best.pth'}", "--opset=17"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    assert "max abs diff" in export.stdout
    assert (ckpt_dir / "mycls-best-model.onnx").is_file()

    missing = subprocess.run(
        [*main, "--process=test", "--checkpoint=nope.pth"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr


@pytest.mark.slow
def test_scaffold_trains_with_mlflow_run(tmp_path):
    import mlflow

    create_mvp("cifar10", tgt=tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(tmp_path),
            "-e",
            "train",
            "--env-manager",
            "local",
            "-P",
            "epochs=1",
            "-P",
            "gpu_id=-1",
            "-P",
            f"cfg_options={_tiny_training_options()}",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert "val/top_1" in run.data.metrics or "top_1" in " ".join(run.data.metrics)
    assert run.data.tags.get("antgo.exp") == "cifar10"
    assert run.data.tags.get("mlflow.project.entryPoint") == "train"


def _all_runs():
    from mlflow import MlflowClient

    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, order_by=["attributes.start_time ASC"])


@pytest.mark.slow
def test_main_py_the_tutorials_way_gpu_0_on_cpu_names_runs_and_logs_resolved_params(tmp_path):
    """The tutorial's first command on a machine without CUDA, twice (this machine has none)."""
    create_mvp("cifar10", tgt=tmp_path)
    main = [sys.executable, "./cifar10/main.py", "--exp=cifar10", "--gpu-id=0", "--process=train"]
    main += ["--max-epochs=1", "--test=false", "--cfg-options", _tiny_training_options(False)]
    for _ in range(2):
        proc = subprocess.run(
            main, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln.lower()]
        assert warnings == [
            "antgo: warning: --gpu-id=0: CUDA is not available on this machine; training on the CPU"
        ], proc.stderr[-3000:]
    first, second = _all_runs()
    assert first.info.status == second.info.status == "FINISHED"
    assert first.info.run_name != second.info.run_name
    for run in (first, second):
        assert re.fullmatch(r"cifar10-\d{8}-\d{6}", run.info.run_name), run.info.run_name
        assert run.data.params["max_epochs"] == "1"  # what trained, not the config's default
        assert run.data.tags["antgo.device"] == "cpu"
        assert "CUDA is not available" in run.data.tags["antgo.device_note"]
        assert "''" not in run.data.params.values()


@pytest.mark.slow
def test_two_experiments_side_by_side_both_train_with_mlflow_run(tmp_path, run_antgo):
    """The tutorial's layout: mycls1/ and mycls2/ under one root with shared files."""
    assert run_antgo("create", "mvp", "--name=mycls1", f"--tgt={tmp_path}").code == 0
    (tmp_path / "README.md").write_text("our project\n")
    second = run_antgo("create", "mvp", "--name=mycls2", f"--tgt={tmp_path}")
    assert second.code == 0, second
    assert (tmp_path / "README.md").read_text() == "our project\n"  # shared files kept
    for shared in ("install.sh", "launch.sh", "system.py", "requirements.txt", "MLproject"):
        assert (tmp_path / shared).is_file(), shared
    assert sorted(p.parent.name for p in tmp_path.glob("*/main.py")) == ["mycls1", "mycls2"]
    again = run_antgo("create", "mvp", "--name=mycls2", f"--tgt={tmp_path}")
    assert_one_line_error(again, "mycls2", "already exists")
    for exp in ("mycls1", "mycls2"):
        cmd = [sys.executable, "-m", "mlflow", "run", str(tmp_path), "-e", "train"]
        cmd += ["--env-manager", "local", "-P", f"exp={exp}", "-P", "epochs=1", "-P", "test=false"]
        cmd += ["-P", f"cfg_options={_tiny_training_options(False)}"]
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        hint = next(ln for ln in proc.stdout.splitlines() if ln.startswith("export: "))
        assert "--env-manager local" in hint and f"-P exp={exp}" in hint, hint
    runs = _all_runs()
    assert [r.data.tags.get("antgo.exp") for r in runs] == ["mycls1", "mycls2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert [r.data.params["max_epochs"] for r in runs] == ["1", "1"]
    for exp in ("mycls1", "mycls2"):
        assert (tmp_path / "output" / exp / "output" / "checkpoint" / "best.pth").is_file()


@pytest.fixture
def restore_registries():
    """The scaffold force-registers its classes: put the library's back afterwards."""
    from antgo_mlflow.registry import ROOT_REGISTRIES

    for reg in ROOT_REGISTRIES.values():
        reg.import_locations()  # save the complete library tables, not a half-imported one
    saved = {name: dict(reg._modules) for name, reg in ROOT_REGISTRIES.items()}
    modules = set(sys.modules)
    yield
    for name, reg in ROOT_REGISTRIES.items():
        reg._modules.clear()
        reg._modules.update(saved[name])
    for name in set(sys.modules) - modules:
        if name == "mycls" or name.startswith("mycls.") or name == "system":
            del sys.modules[name]


def test_scaffold_plugins_register_and_work(tmp_path, monkeypatch, restore_registries):
    import importlib

    import numpy as np

    from antgo_mlflow.data.sources.digits import prepare_digits
    from antgo_mlflow.registry import DATASETS, HOOKS, METRICS, MODELS

    create_mvp("mycls", tgt=tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("mycls")
    assert MODELS.get("WideResNet").__module__ == "mycls.models.wideres"
    assert MODELS.get("ImageClassifier") is not None  # the library's models are still there
    model = MODELS.build(dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1))
    assert model(__import__("torch").zeros(2, 3, 32, 32)).shape == (2, 10)
    gt = prepare_digits().splits["test"].gt
    ds = DATASETS.build(
        dict(
            type="GTJsonDataset",
            gt_file=str(gt),
            pipeline=[dict(type="ToTensor", keys=["image"])],
            inputs_def={"fields": ["image", "label"]},
        )
    )
    sample = ds[0]
    assert tuple(sample["image"].shape) == (3, 32, 32) and 0 <= sample["label"] < 10
    metric = METRICS.build(dict(type="MeanClassAccuracy"))
    assert metric(np.eye(3), np.arange(3)) == {"mean_class_acc": 1.0}
    assert HOOKS.get("StopAtAccuracyHook") is not None


def test_scaffold_switches_to_cifar10_with_one_config_change(tmp_path, monkeypatch):
    """`data_source = "cifar10"` reads local CIFAR batches (here tiny ones) and builds WRN-28-2."""
    from antgo_mlflow.config import Config
    from antgo_mlflow.registry import DATASETS
    from tests.data.test_sources import _write_batch

    create_mvp("cifar10", tgt=tmp_path)
    batches = tmp_path / "dataset" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    _write_batch(batches / "data_batch_1", n=8, seed=1)
    _write_batch(batches / "test_batch", n=4, seed=2)
    config = tmp_path / "cifar10" / "configs" / "config.py"
    text = config.read_text()
    assert text.count('data_source = "digits"') == 1
    config.write_text(text.replace('data_source = "digits"', 'data_source = "cifar10"'))
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(config)
    assert (cfg.model.backbone.depth, cfg.model.backbone.widen_factor) == (28, 2)
    assert len(DATASETS.build(cfg.data.train)) == 8
    assert len(DATASETS.build(cfg.data.val)) == 4
    assert (
        Config.fromfile(config).data.train.data_path_list == cfg.data.train.data_path_list
    )  # converted once
