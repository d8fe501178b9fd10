"""The tutorial's data flow into training: folder labels train; unlabelled samples stop at once.

Real tools and a real training run: ``extract/images`` on a two-class folder tree (the bundled
sample photos, ``china/`` and ``flower/``), ``package/tfrecord``, then the ``train`` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from antgo_mlflow.engine.label_check import check_training_labels
from antgo_mlflow.errors import DataError
from tests.helpers import assert_one_line_error
from tests.tools._extract_data import run_inprocess

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "recipes" / "samples" / "images"

CONFIG = """
_mean, _std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
_pipeline = [
    dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
    dict(type="Resize", size=(32, 32), keys=["image"]),
    dict(type="ToTensor", keys=["image"]),
    dict(type="Normalize", mean=_mean, std=_std, keys=["image"]),
]
_data = dict(type="TFDataset", data_path_list=[{shards!r}], pipeline=_pipeline,
             description={{"image": "numpy", "label": "int"}},
             inputs_def={{"fields": ["image", "label"]}})
seed = 0
max_epochs = 1
model = dict(type="ImageClassifier",
             backbone=dict(type="WideResNet", num_classes=2, depth=10, widen_factor=1),
             head=dict(type="ClsHead", loss=dict(type="CrossEntropyLoss")))
data = dict(train=_data, val=_data, test=_data,
            train_dataloader=dict(samples_per_gpu=4, drop_last=False),
            val_dataloader=dict(samples_per_gpu=6), test_dataloader=dict(samples_per_gpu=6))
optimizer = dict(type="SGD", lr=0.01)
log_config = dict(interval=1, hooks=[dict(type="TextLoggerHook"),
                                     dict(type="MlflowLoggerHook", log_model=False)])
checkpoint_config = dict(interval=1)
evaluation = dict(interval=1, metric=dict(type="AccuracyEval", topk=(1,)), save_best="top_1")
"""


def _shards(tmp_path: Path, capsys, *extract_flags: str) -> Path:
    gt, shards = tmp_path / "gt", tmp_path / "shards"
    res = run_inprocess(
        capsys, "tool", "extract/images", f"--src={SAMPLES}", f"--tgt={gt}", *extract_flags
    )
    assert res.code == 0, res
    res = run_inprocess(
        capsys,
        "tool",
        "package/tfrecord",
        f"--src={gt / 'annotation.json'}",
        f"--tgt={shards}",
        "--prefix=pets",
    )
    assert res.code == 0, res
    return shards / "pets-manifest.json"


def _train(tmp_path: Path, manifest: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "pets" / "config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.format(shards=str(manifest)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "antgo_mlflow.entrypoints.train", f"--config={config}"]
    cmd += [f"--work-dir={tmp_path / 'work'}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_folder_labels_from_extract_images_train_a_classifier(tmp_path, capsys):
    from mlflow import MlflowClient

    manifest = _shards(tmp_path, capsys, "--label-from=folder")
    assert json.loads(manifest.read_text())["class_names"] == ["china", "flower"]
    proc = _train(tmp_path, manifest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "antgo-train: test (best.pth): top_1=" in proc.stderr
    (run,) = MlflowClient().search_runs(
        [e.experiment_id for e in MlflowClient().search_experiments()]
    )
    assert run.info.status == "FINISHED"
    (train,) = [i.dataset for i in run.inputs.dataset_inputs if i.tags[0].value == "train"]
    profile = json.loads(train.profile)
    assert profile["class_counts"] == "china (0): 3, flower (1): 3"
    assert json.loads(train.source)["uri"] == str(manifest.resolve())


def test_training_on_unlabelled_samples_stops_before_the_first_step(tmp_path, capsys):
    manifest = _shards(tmp_path, capsys)  # extract/images without --label-from: image_label -1
    proc = _train(tmp_path, manifest)
    result = type("R", (), {"code": proc.returncode, "stderr": proc.stderr})()
    assert_one_line_error(
        result, "data.train: 6 of 6 samples", str(manifest.resolve()), "--label-from=folder"
    )
    assert "Epoch" not in proc.stdout  # not one training step
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs == []  # refused before a run was opened


class _Sets:
    """A dataset offering its own profile (``profile_sets``), as any dataset may."""

    def __init__(self, unlabelled: int, samples: int = 10):
        from antgo_mlflow.data.profile import SetProfile

        counts = {-1: unlabelled, 0: samples - unlabelled}
        self.sets = [SetProfile("/data/x-manifest.json", "x", "d", samples, label_counts=counts)]

    def profile_sets(self):
        return self.sets


def test_an_unlabeled_source_of_a_semi_supervised_config_needs_no_labels():
    from antgo_mlflow.models.base import BaseModel

    model = BaseModel()
    check_training_labels(model, {"labeled": _Sets(0), "unlabeled": _Sets(10)})
    with pytest.raises(DataError, match=r"data.train.labeled: 2 of 10 samples of /data/x"):
        check_training_labels(model, {"labeled": _Sets(2), "unlabeled": _Sets(10)})
    with pytest.raises(DataError, match=r"^data.train: 3 of 10"):
        check_training_labels(model, {"train": _Sets(3)})


def test_a_model_that_trains_without_class_labels_is_not_checked():
    from torch import nn

    class Detector(nn.Module):
        task = "detection"

    check_training_labels(Detector(), {"train": _Sets(10)})
    check_training_labels(nn.Linear(2, 2), {"train": _Sets(0)})  # a plain module: supervised
    with pytest.raises(DataError):
        check_training_labels(nn.Linear(2, 2), {"train": _Sets(1)})
