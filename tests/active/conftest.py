"""Fixtures for the active-learning tests: an easy synthetic colour set, a tiny config, and one
model trained once per session through the real ``train`` entry point (engine + MLflow + checkpoint).

The colour set: 32x32 RGB images, class k = a noisy image dominated by colour k (red, green,
blue). A 1-block WideResNet learns it in a few dozen iterations, so label flips are findable and a
trained model's ranking is meaningful, in seconds on 2 CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.project.conftest import cli  # noqa: F401  (the in-process `antgo` runner)

CLASSES = ["red", "green", "blue"]
PROJECT = "colours"


def make_colour_set(
    folder: Path, n: int, seed: int = 0, labelled: bool = True, flips: dict | None = None
) -> Path:
    """Write ``folder/annotation.json`` (+ images/, meta.json): n samples, classes in turn.

    ``flips`` maps sample index -> the (wrong) label written instead of the true one.
    """
    from PIL import Image

    from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        k = i % len(CLASSES)
        image = rng.integers(0, 90, size=(32, 32, 3))
        image[..., k] += 120 + rng.integers(0, 40)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / "images" / f"{i}.png")
        label = (flips or {}).get(i, k) if labelled else -1
        fields = dict(image_file=f"images/{i}.png", height=32, width=32, image_label=label)
        if labelled:
            fields["image_label_name"] = CLASSES[label]
        samples.append(new_sample(**fields))
    save_gt(folder / "annotation.json", samples)
    write_meta(folder, default_meta(n, CLASSES))
    return folder / "annotation.json"


def pack(gt: Path, folder: Path, prefix: str) -> list[str]:
    from antgo_mlflow.tools.package_tfrecord import package_tfrecord

    return [str(p) for p in package_tfrecord(str(gt), str(folder), prefix).shards]


def write_config(path: Path, train: list[str], val: list[str], epochs: int = 4) -> Path:
    """A tiny classifier config on TFRecord shards (3 classes, 32x32, AdamW + one-cycle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""
seed = 0
max_epochs = {epochs}
_mean = (0.5, 0.5, 0.5)
_std = (0.25, 0.25, 0.25)
model = dict(
    type="ImageClassifier",
    backbone=dict(type="WideResNet", num_classes=3, depth=10, widen_factor=1, bn_momentum=0.1),
    head=dict(type="ClsHead"),
)
_description = {{"image": "numpy", "label": "int", "image_file": "str", "tag": "str"}}
_pipeline = [
    dict(type="Meta", keys=["image_file", "tag"]),
    dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
    dict(type="ToTensor", keys=["image"]),
    dict(type="Normalize", mean=_mean, std=_std, keys=["image"]),
]
_fields = {{"fields": ["image", "label", "image_meta"]}}
data = dict(
    train=dict(type="TFDataset", data_path_list={train!r}, pipeline=_pipeline,
               inputs_def=_fields, description=_description),
    train_dataloader=dict(samples_per_gpu=16, workers_per_gpu=0, drop_last=True, shuffle=True),
    val=dict(type="TFDataset", data_path_list={val!r}, pipeline=_pipeline,
             inputs_def=_fields, description=_description),
    val_dataloader=dict(samples_per_gpu=64, workers_per_gpu=0, drop_last=False, shuffle=False),
    test=dict(type="TFDataset", data_path_list={val!r}, pipeline=_pipeline,
              inputs_def=_fields, description=_description),
    test_dataloader=dict(samples_per_gpu=64, workers_per_gpu=0, drop_last=False, shuffle=False),
)
optimizer = dict(type="AdamW", lr=1e-2, weight_decay=1e-4)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy="OneCycle")
log_config = dict(interval=10, hooks=[dict(type="TextLoggerHook")])
checkpoint_config = dict(interval=max_epochs, log_artifacts="best")
evaluation = dict(interval=max_epochs, metric=dict(type="AccuracyEval"), save_best="top_1")
export = dict(input_shape_list=[[1, 3, 32, 32]], input_name_list=["image"], output_name_list=["pred"])
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Trained:
    uri: str  # tracking store
    run_id: str
    checkpoint: Path
    config: Path
    root: Path


def entry_env(uri: str, **extra) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, ANTGO_PROGRESS="0", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """The project ``colours`` with one run of the tiny config trained on 96 colour images."""
    root = tmp_path_factory.mktemp("active-trained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    train = pack(make_colour_set(root / "train", 96, seed=1), root / "shards", "train")
    val = pack(make_colour_set(root / "val", 30, seed=2), root / "shards", "val")
    config = write_config(root / "colours" / "config.py", train, val)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        from antgo_mlflow.project.projects import create_project

        create_project(name=PROJECT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "antgo_mlflow.entrypoints.train",
            "--config",
            str(config),
            "--work-dir",
            str(root / "work"),
            "--test",
            "false",
        ],
        cwd=root,
        env=entry_env(uri, MLFLOW_EXPERIMENT_NAME=PROJECT),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = proc.stderr.split("MLflow run ")[1].split()[0]
    return Trained(uri, run_id, root / "work" / "best.pth", config, root)


@pytest.fixture
def use_trained(trained, monkeypatch) -> Trained:
    """Point this test's MLflow at the session store that holds the trained run."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    return trained
