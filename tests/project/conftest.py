"""Fixtures for project/roles tests: a fresh store per test (SQLite copied from a migrated
template, or the shared real mlflow server), a unique project, and runs that log a tiny model."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    # Creating and migrating a SQLite store takes 2-6 s; do it once and copy the file per test.
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "store.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tracking_uri, _sqlite_template, tmp_path, monkeypatch):
    """The parametrized tracking URI (sqlite / server), ready to use; cwd is the test's tmp dir
    so a SQLite store's default ./mlruns artifacts stay there."""
    monkeypatch.chdir(tmp_path)
    if tracking_uri.startswith("sqlite:///"):
        shutil.copy(_sqlite_template, tracking_uri[len("sqlite:///") :])
    return tracking_uri


@pytest.fixture
def project(store) -> str:
    """A new project with a unique name (the server store is shared by the session)."""
    from antgo_mlflow.project.projects import create_project

    name = f"p{uuid.uuid4().hex[:8]}"
    create_project(name=name, metric="top_1")
    return name


@pytest.fixture(scope="session")
def _saved_model(tmp_path_factory) -> Path:
    # Serialising the torch model (torch.export) is the slow part of log_model: do it once.
    import mlflow.pytorch
    import torch

    path = tmp_path_factory.mktemp("model") / "model"
    torch.manual_seed(0)
    mlflow.pytorch.save_model(
        torch.nn.Linear(2, 1),
        path,
        input_example=torch.zeros(1, 2).numpy(),
        pip_requirements=["torch"],
    )
    return path


def _log_run(project, exp, metrics, model, status, saved: Path, real: bool) -> str:
    import mlflow
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    from antgo_mlflow.project.projects import get_client

    client = get_client()
    experiment_id = client.get_experiment_by_name(project).experiment_id
    tags = {"antgo.exp": exp} if exp else {}
    if real:
        import torch

        with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
            for key, value in (metrics or {}).items():
                mlflow.log_metric(key, value)
            mlflow.pytorch.log_model(
                torch.nn.Linear(2, 1),
                name="model",
                input_example=torch.zeros(1, 2).numpy(),
                pip_requirements=["torch"],
            )
        return run.info.run_id
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    client.log_param(run_id, "lr", 0.1)
    if model:
        # What mlflow.pytorch.log_model does after serialising: a LoggedModel of this run,
        # its files uploaded, marked READY, and linked as the run's output.
        logged = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
        client.log_model_artifacts(logged.model_id, str(saved))
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture
def make_run(_saved_model):
    """``make_run(project, exp="e1", metrics=None, model=True, status="FINISHED", real=False)``:
    a run in the project's experiment that logged a torch nn.Linear as LoggedModel ``model``.
    ``real=True`` calls ``mlflow.pytorch.log_model`` itself (~0.5-3 s); otherwise the model saved
    once per session is uploaded as a new LoggedModel of the run (~0.1 s)."""

    def make(project, exp="e1", metrics=None, model=True, status="FINISHED", real=False):
        return _log_run(project, exp, metrics, model, status, _saved_model, real)

    return make


@pytest.fixture
def cli(capsys):
    """Run ``antgo ARGS`` in-process through ``cli.main.main`` (the console entry point's
    function); returns ``.code/.stdout/.stderr`` like ``run_antgo`` but without a new interpreter."""
    from antgo_mlflow.cli.main import main
    from tests.conftest import CliResult

    def run(*args: str):
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def registry_state(project: str) -> dict:
    """Everything a role change could touch: versions with tags/stage/aliases, and project tags."""
    from mlflow.exceptions import MlflowException

    from antgo_mlflow.project.projects import get_client

    client = get_client()
    state = {"tags": dict(client.get_experiment_by_name(project).tags)}
    try:
        model = client.get_registered_model(project)
        state["aliases"] = dict(model.aliases)
    except MlflowException:
        state["aliases"] = None
    state["versions"] = {
        str(mv.version): (mv.current_stage, dict(mv.tags))
        for mv in client.search_model_versions(f"name='{project}'")
    }
    state["models"] = sorted(m.name for m in client.search_registered_models())
    return state
