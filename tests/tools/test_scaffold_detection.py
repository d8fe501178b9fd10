"""`antgo create mvp --task=detection`: the seed's layout with the shapes detector's config,
trainable with main.py and with `mlflow run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from antgo_mlflow.errors import UsageError
from antgo_mlflow.tools.scaffold import create_mvp
from tests.helpers import assert_one_line_error
from tests.tools.test_scaffold import SEED_LAYOUT

REPO = Path(__file__).resolve().parents[2]


def test_create_mvp_detection_writes_the_shapes_detector(tmp_path, run_antgo):
    result = run_antgo("create", "mvp", "--name=mydet", "--task=detection", f"--tgt={tmp_path}")
    assert result.code == 0, result
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f.format(n="mydet") for f in SEED_LAYOUT)
    config = (tmp_path / "mydet" / "configs" / "config.py").read_text()
    assert config == (REPO / "recipes" / "shapes" / "config.py").read_text()
    readme = (tmp_path / "README.md").read_text()
    assert "--task=detection" in readme and "{{name}}" not in readme and "mydet/main.py" in readme
    assert "name: mydet" in (tmp_path / "MLproject").read_text()
    with pytest.raises(UsageError, match="--task=segmentation: expected one of"):
        create_mvp("other", tgt=tmp_path / "x", task="segmentation")
    bad = run_antgo("create", "mvp", "--name=seg", "--task=segmentation", f"--tgt={tmp_path / 'y'}")
    assert_one_line_error(bad, "--task=segmentation")


def _tiny() -> str:
    # 3 iterations, validation on the 150 val images, no model logging (covered elsewhere)
    hooks = [{"type": "TextLoggerHook"}, {"type": "MlflowLoggerHook", "log_model": False}]
    return f"data.train_dataloader.iters_per_epoch=3 log_config.hooks={hooks!r}"


@pytest.mark.slow
def test_detection_scaffold_trains_with_mlflow_run_and_tests_with_main_py(tmp_path):
    import mlflow

    create_mvp("mydet", tgt=tmp_path, task="detection")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    train = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(tmp_path), "-e", "train", "--env-manager", "local",
         "-P", "epochs=1", "-P", "gpu_id=-1", "-P", f"cfg_options={_tiny()}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    assert {"val/mAP", "val/mAP50", "val/AP_triangle"} <= set(run.data.metrics)
    assert run.data.tags.get("antgo.exp") == "mydet"
    test = subprocess.run(
        [sys.executable, "mydet/main.py", "--exp=mydet", "--process=test", f"--json={tmp_path / 'eval.json'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "mAP50=" in test.stdout and (tmp_path / "eval.json").is_file()
