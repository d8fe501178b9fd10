"""`antgo active issues`: cleanlab finds planted label flips from out-of-sample probabilities."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from antgo_mlflow.active.label_issues import cleanlab_issues
from tests.active.conftest import CLASSES, make_colour_set
from tests.helpers import assert_one_line_error

FLIPS = {4: 2, 13: 0, 20: 0, 31: 2, 38: 1, 47: 0}  # index -> the wrong label written


def test_cleanlab_finds_flips_in_hand_made_probabilities():
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), labels] = 0.9
    probs += rng.uniform(0, 0.02, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    given = labels.copy()
    for i, wrong in FLIPS.items():
        given[i] = wrong
    issues, quality = cleanlab_issues(given, probs)
    assert set(issues.tolist()) == set(FLIPS)
    assert quality[list(FLIPS)].max() < np.delete(quality, list(FLIPS)).min()


def test_cleanlab_runs_in_this_process_without_forking_a_pool(monkeypatch):
    """cleanlab forks a multiprocessing.Pool by default; forked from a threaded process (MLflow,
    torch, xdist) a child can hang on an inherited lock, which once stalled CI for good."""
    import multiprocessing

    def no_pool(*args, **kwargs):
        raise AssertionError("cleanlab started a multiprocessing pool")

    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: 8)  # as on a bigger machine
    rng = np.random.default_rng(1)
    labels = np.arange(3000) % 10
    probs = rng.dirichlet(np.ones(10), size=3000)
    issues, quality = cleanlab_issues(labels, probs)
    assert len(quality) == 3000 and len(issues) > 0


def test_issues_with_out_of_sample_models_finds_the_planted_flips(cli, use_trained, tmp_path):
    from mlflow import MlflowClient

    gt = make_colour_set(tmp_path / "labelled", 54, seed=11, flips=FLIPS)
    tgt = tmp_path / "qa"
    result = cli(
        "active", "issues", f"--src={gt}", f"--models={use_trained.checkpoint}", f"--tgt={tgt}"
    )
    assert result.code == 0, result
    issues = json.loads((tgt / "issues.json").read_text())
    found = {int(s["image_file"].rsplit("/", 1)[1].split(".")[0]) for s in issues}
    assert len(found & set(FLIPS)) >= 5 and len(found - set(FLIPS)) <= 2
    for s in issues:
        i = int(s["image_file"].rsplit("/", 1)[1].split(".")[0])
        if i in FLIPS:
            assert s["suggested_label"] == i % 3 and s["suggested_label_name"] == CLASSES[i % 3]
            assert s["image_label"] == FLIPS[i]  # the given label is kept as it was
        assert (tgt / s["image_file"]).is_file()
    assert [s["issue_rank"] for s in issues] == list(range(1, len(issues) + 1))
    rows = list(csv.DictReader((tgt / "label_quality.csv").open()))
    assert len(rows) == 54 and sum(r["issue"] == "1" for r in rows) == len(issues)
    assert float(rows[0]["label_quality"]) <= float(rows[-1]["label_quality"])
    run = MlflowClient().get_run(result.stdout.split("MLflow run ")[1].split()[0])
    assert run.info.status == "FINISHED" and run.data.metrics["issues/found"] == len(issues)
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "issues")}
    assert "issues/issues.json" in artifacts and "issues/label_quality.csv" in artifacts


@pytest.mark.slow
def test_cross_validation_trains_fold_models_and_finds_the_flips(cli, use_trained, tmp_path):
    from mlflow import MlflowClient

    gt = make_colour_set(tmp_path / "labelled", 54, seed=12, flips=FLIPS)
    tgt = tmp_path / "cv"
    result = cli(
        "active", "issues", f"--src={gt}", "--cv-folds=3", f"--config={use_trained.config}",
        "--epochs=3", f"--tgt={tgt}",
    )  # fmt: skip
    assert result.code == 0, result
    issues = json.loads((tgt / "issues.json").read_text())
    found = {int(s["image_file"].rsplit("/", 1)[1].split(".")[0]) for s in issues}
    assert len(found & set(FLIPS)) >= 5 and len(found - set(FLIPS)) <= 2
    parent = result.stdout.split("MLflow run ")[1].split()[0]
    client = MlflowClient()
    exp = client.get_run(parent).info.experiment_id
    folds = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(r.data.tags["antgo.cv.fold"] for r in folds) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in folds)
    assert all("cv/held_out_accuracy" in r.data.metrics for r in folds)


def test_bad_inputs_are_one_line_and_write_nothing(cli, use_trained, tmp_path):
    labelled = make_colour_set(tmp_path / "labelled", 9, seed=13)
    unlabelled = make_colour_set(tmp_path / "unlabelled", 6, seed=14, labelled=False)
    samples = json.loads(labelled.read_text())
    samples[2]["image_label"] = 7
    (tmp_path / "labelled" / "seven.json").write_text(json.dumps(samples))
    samples[2]["image_label"], samples[0]["bboxes"], samples[0]["labels"] = 1, [[0, 0, 4, 4]], [0]
    (tmp_path / "labelled" / "boxes.json").write_text(json.dumps(samples))
    ckpt = str(use_trained.checkpoint)
    cases = [
        ([f"--src={unlabelled}", f"--models={ckpt}"], "6 samples have no image_label"),
        ([f"--src={tmp_path / 'labelled' / 'seven.json'}", f"--models={ckpt}"], "image_label 7"),
        ([f"--src={tmp_path / 'labelled' / 'boxes.json'}", f"--models={ckpt}"], "needs a detection model"),
        ([f"--src={labelled}", "--cv-folds=3"], "needs --config"),
        ([f"--src={labelled}", "--cv-folds=1", f"--config={use_trained.config}"], "--cv-folds must be an integer >= 2"),
        ([f"--src={labelled}", "--cv-folds=10", f"--config={use_trained.config}"], "more than the 9 samples"),
        ([f"--src={labelled}", "--cv-folds=3", f"--models={ckpt}", f"--config={use_trained.config}"], "not both"),
        ([f"--src={labelled}", "--models=runs:/ffffffffffffffffffffffffffffffff"], "no such run"),
    ]  # fmt: skip
    for k, (args, fragment) in enumerate(cases):
        tgt = tmp_path / f"out{k}"
        assert_one_line_error(cli("active", "issues", *args, f"--tgt={tgt}"), fragment)
        assert not tgt.exists()
