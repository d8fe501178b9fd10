"""Fixtures for the automation server: a fresh SQLite store per test, a project, tiny digits
GT folders (scikit-learn's digits rendered as 32x32 PNGs) and a registered (untrained) model."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "store.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(_sqlite_template, tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "mlflow.db"
    shutil.copy(_sqlite_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def project(store) -> str:
    from antgo_mlflow.project.projects import create_project

    name = f"p{uuid.uuid4().hex[:8]}"
    create_project(name=name, metric="top_1", auto=True)
    return name


def digits_gt(folder: Path, indices, labelled: bool = True) -> Path:
    """A GT folder of the digits ``indices`` (PNG files + annotation.json + meta.json)."""
    from antgo_mlflow.data.sources.digits import CLASS_NAMES, _load_source, render
    from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta

    _, images, targets = _load_source()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in indices:
        (folder / "images" / f"{i:04d}.png").write_bytes(render(images[i]))
        extra = {}
        if labelled:
            extra = dict(image_label=int(targets[i]), image_label_name=CLASS_NAMES[int(targets[i])])
        samples.append(new_sample(image_file=f"images/{i:04d}.png", height=32, width=32, **extra))
    save_gt(folder / "annotation.json", samples)
    write_meta(folder, default_meta(len(samples), list(CLASS_NAMES)))
    return folder / "annotation.json"


def truth_of(image_file: str) -> int:
    """The hidden label of a digits image written by :func:`digits_gt` (its index is the name)."""
    from antgo_mlflow.data.sources.digits import _load_source

    _, _, targets = _load_source()
    return int(targets[int(Path(image_file).stem)])


@pytest.fixture
def product(project) -> str:
    """An (untrained) WRN-10-1 registered as the project's product and champion."""
    from mlflow import MlflowClient

    from tests.teachers import register_teacher

    register_teacher(project, alias="champion")
    client = MlflowClient()
    client.set_registered_model_alias(project, "production", "1")
    client.set_model_version_tag(project, "1", "antgo.exp", "e1")  # the exp candidates train
    return project


def log_candidate(project: str, seed: int = 1) -> str:
    """A training-like run in the project's experiment with a logged (untrained) WRN-10-1."""
    import numpy as np
    import torch
    from mlflow import MlflowClient

    from antgo_mlflow.engine.hooks.mlflow_logger import log_torch_model
    from antgo_mlflow.project.projects import get_project
    from antgo_mlflow.registry import MODELS
    from tests.teachers import WRN

    torch.manual_seed(seed)
    model = MODELS.build(WRN, path="model").eval()
    client = MlflowClient()
    run = client.create_run(get_project(project, client).experiment_id, tags={"antgo.exp": "e1"})
    import mlflow

    with mlflow.start_run(run_id=run.info.run_id):  # the logged model joins the run's experiment
        log_torch_model(client, run.info.run_id, model, np.zeros((2, 3, 32, 32), np.float32))
    return run.info.run_id
