"""`antgo active rank` end to end on a model trained through the engine (see conftest.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.active.conftest import CLASSES, PROJECT, entry_env, make_colour_set, pack
from tests.helpers import assert_one_line_error

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pool(tmp_path) -> Path:
    return make_colour_set(tmp_path / "pool", 40, seed=5, labelled=False)


def _read(path: Path):
    return json.loads(path.read_text())


def _runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, max_results=1000)


def test_rank_writes_the_files_and_logs_the_run(cli, use_trained, pool, tmp_path):
    from mlflow import MlflowClient

    tgt = tmp_path / "round1"
    result = cli(
        "active", "rank", f"--src={pool}", f"--models=runs:/{use_trained.run_id}",
        "--budget=8", f"--tgt={tgt}",
    )  # fmt: skip
    assert result.code == 0, result
    selected, rest = _read(tgt / "selected.json"), _read(tgt / "rest.json")
    assert len(selected) == 8 and len(rest) == 32
    assert [s["al_rank"] for s in selected + rest] == list(range(1, 41))
    assert {s["image_file"] for s in selected + rest} == {
        f"../pool/images/{i}.png" for i in range(40)
    }
    for s in selected + rest:
        assert (tgt / s["image_file"]).is_file()
        p = s["predictions"]
        assert len(p["probabilities"]) == 3 and abs(sum(p["probabilities"]) - 1) < 1e-4
        assert p["image_label"] == int(np.argmax(p["probabilities"]))
        assert p["models"] == [f"runs:/{use_trained.run_id}"]
    # hybrid: every pick comes from the 3 x budget most uncertain (by margin)
    rows = list(csv.DictReader((tgt / "scores.csv").open()))
    assert len(rows) == 40 and rows[0]["strategy"] == "hybrid"
    assert [int(r["rank"]) for r in rows] == list(range(1, 41))
    picked = [r for r in rows if r["selected"] == "1"]
    assert len(picked) == 8 and all(r["candidate"] == "1" for r in picked)
    by_margin = sorted(rows, key=lambda r: -float(r["margin"]))
    assert {r["id"] for r in picked} <= {r["id"] for r in by_margin[:24]}
    assert _read(tgt / "meta.json")["meta"]["category"] == CLASSES

    run_id = result.stdout.split("MLflow run ")[1].split()[0]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["active.strategy"] == "hybrid"
    assert run.data.params["active.budget"] == "8"
    assert run.data.metrics["active/pool_size"] == 40 and run.data.metrics["active/selected"] == 8
    names = {a.path for a in client.list_artifacts(run_id, "active")}
    assert names == {
        f"active/{n}"
        for n in ("selected.json", "rest.json", "scores.csv", "meta.json", "score_histogram.png")
    }


def test_margin_ranking_matches_the_models_own_probabilities(cli, use_trained, pool, tmp_path):
    from antgo_mlflow.inference import load_model
    from antgo_mlflow.inference.inputs import read_input

    tgt = tmp_path / "margin"
    ckpt = str(use_trained.checkpoint)
    result = cli(
        "active", "rank", f"--src={pool}", f"--models={ckpt}", "--budget=5",
        "--strategy=margin", f"--tgt={tgt}",
    )  # fmt: skip
    assert result.code == 0, result
    probs = load_model(ckpt).predict_proba(read_input(pool).iter_images())
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = 1 - (top2[:, 1] - top2[:, 0])
    want = np.argsort(-margin, kind="stable")
    rows = list(csv.DictReader((tgt / "scores.csv").open()))
    assert [int(r["id"]) for r in rows] == want.tolist()
    selected = _read(tgt / "selected.json")
    assert [s["al_score"] for s in selected] == pytest.approx(margin[want[:5]], abs=1e-5)


def test_shard_input_writes_its_images(cli, use_trained, tmp_path):
    gt = make_colour_set(tmp_path / "pool", 12, seed=6, labelled=False)
    pack(gt, tmp_path / "shards", "pool")
    tgt = tmp_path / "out"
    result = cli(
        "active", "rank", f"--src={tmp_path / 'shards' / 'pool-manifest.json'}",
        f"--models={use_trained.checkpoint}", "--budget=3", "--strategy=entropy", f"--tgt={tgt}",
    )  # fmt: skip
    assert result.code == 0, result
    samples = _read(tgt / "selected.json") + _read(tgt / "rest.json")
    assert len(samples) == 12 and all((tgt / s["image_file"]).is_file() for s in samples)


def test_project_settings_choose_models_strategy_and_budget(cli, use_trained, pool, tmp_path):
    from mlflow import MlflowClient

    from antgo_mlflow.project.roles import add_role
    from antgo_mlflow.project.settings import update_setting

    add_role(PROJECT, "expert", "colours", use_trained.run_id)
    cfg = tmp_path / "ac_config.py"
    cfg.write_text("strategy = 'least_confidence'\nbudget = 6\n")
    update_setting(PROJECT, "activelearning", config=str(cfg))
    tgt = tmp_path / "proj"
    result = cli("active", "rank", f"--src={pool}", f"--project={PROJECT}", f"--tgt={tgt}")
    assert result.code == 0, result
    assert len(_read(tgt / "selected.json")) == 6
    run = MlflowClient().get_run(result.stdout.split("MLflow run ")[1].split()[0])
    assert run.data.params["active.strategy"] == "least_confidence"
    assert run.data.params["active.models"] == f"models:/{PROJECT}@champion"
    assert MlflowClient().get_experiment(run.info.experiment_id).name == PROJECT


@pytest.mark.slow
def test_active_learning_entry_point_runs_under_mlflow_run(use_trained, pool, tmp_path):
    from mlflow import MlflowClient

    tgt = tmp_path / "mlproject"
    proc = subprocess.run(
        [
            sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "active-learning",
            "--env-manager", "local", "-P", f"src={pool}", "-P", f"models={use_trained.checkpoint}",
            "-P", "budget=4", "-P", "strategy=margin", "-P", f"tgt={tgt}",
        ],
        cwd=tmp_path, env=entry_env(use_trained.uri), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_read(tgt / "selected.json")) == 4
    run_id = proc.stderr.split("MLflow run ")[1].split()[0].rstrip(";")
    run = MlflowClient().get_run(run_id)
    assert run.data.tags["mlflow.project.entryPoint"] == "active-learning"
    assert run.data.params["active.strategy"] == "margin"
    assert any(
        a.path == "active/scores.csv" for a in MlflowClient().list_artifacts(run_id, "active")
    )


@pytest.fixture
def other_models(use_trained, tmp_path):
    """A 10-class ONNX model, and a copy of the trained checkpoint with NaN weights."""
    import torch
    from torch import nn

    from antgo_mlflow.export.onnx import export_onnx

    class TenWay(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 10)

        def forward(self, image):
            return self.fc(image.mean((2, 3)))

        def predict(self, image):
            return self.forward(image).softmax(1)

    ten = export_onnx(TenWay().eval(), tmp_path / "ten.onnx", opset=17).path
    ckpt = torch.load(use_trained.checkpoint, map_location="cpu", weights_only=True)
    ckpt["state_dict"]["backbone.fc.weight"].fill_(float("nan"))
    torch.save(ckpt, tmp_path / "broken.pth")
    return {"ten": str(ten), "broken": str(tmp_path / "broken.pth")}


def _bad_cases(tmp_path, trained, others):
    pool = make_colour_set(tmp_path / "pool", 10, seed=7, labelled=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "annotation.json").write_text("[]")
    missing = make_colour_set(tmp_path / "missing", 6, seed=8, labelled=False)
    (tmp_path / "missing" / "images" / "4.png").unlink()
    boxes = json.loads(pool.read_text())
    boxes[0]["bboxes"], boxes[0]["labels"] = [[1, 1, 9, 9]], [0]
    (tmp_path / "pool" / "boxes.json").write_text(json.dumps(boxes))
    ckpt = str(trained.checkpoint)
    return {
        "empty pool": (["--src", str(tmp_path / "empty"), "--models", ckpt, "--budget=2"], "empty pool"),
        "budget 0": (["--src", str(pool), "--models", ckpt, "--budget=0"], "--budget must be a positive"),
        "budget negative": (["--src", str(pool), "--models", ckpt, "--budget=-3"], "--budget must be a positive"),
        "budget > pool": (["--src", str(pool), "--models", ckpt, "--budget=11"], "larger than the pool (10 samples)"),
        "unknown run": (["--src", str(pool), "--models", "runs:/0123456789abcdef0123456789abcdef", "--budget=2"], "0123456789abcdef"),
        "unknown alias": (["--src", str(pool), "--models", "models:/nope@champion", "--budget=2"], "models:/nope@champion"),
        "class counts": (["--src", str(pool), "--models", f"{ckpt},{others['ten']}", "--budget=2", "--strategy=margin"], "number of classes"),
        "missing images": (["--src", str(missing), "--models", ckpt, "--budget=2"], "1 of 6 images are missing"),
        "NaN model": (["--src", str(pool), "--models", others["broken"], "--budget=2", "--strategy=margin"], "NaN"),
        "detection GT": (["--src", str(tmp_path / "pool" / "boxes.json"), "--models", ckpt, "--budget=2"], "needs a detection model"),
        "unknown strategy": (["--src", str(pool), "--models", ckpt, "--budget=2", "--strategy=marg"], "did you mean 'margin'"),
        "one-model ensemble": (["--src", str(pool), "--models", ckpt, "--budget=2", "--strategy=disagreement"], "needs 2 or more models"),
        "no embeddings": (["--src", str(pool), "--models", others["ten"], "--budget=2", "--strategy=kcenter"], "not embeddings"),
    }  # fmt: skip


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(cli, use_trained, other_models, tmp_path):
    cases = _bad_cases(tmp_path, use_trained, other_models)
    runs_before = len(_runs(use_trained.uri))
    for name, (args, fragment) in cases.items():
        tgt = tmp_path / f"out-{name.replace(' ', '-')}"
        result = cli("active", "rank", *args, f"--tgt={tgt}")
        assert_one_line_error(result, fragment)
        assert not tgt.exists(), name
    assert len(_runs(use_trained.uri)) == runs_before


def test_an_existing_selection_is_not_overwritten(cli, use_trained, pool, tmp_path):
    tgt = tmp_path / "again"
    args = ["active", "rank", f"--src={pool}", f"--models={use_trained.checkpoint}", "--budget=2"]
    assert cli(*args, "--strategy=margin", f"--tgt={tgt}").code == 0
    before = (tgt / "selected.json").read_text()
    assert_one_line_error(cli(*args, f"--tgt={tgt}"), "already holds selected.json")
    assert (tgt / "selected.json").read_text() == before
