"""The mlflow.run_context_provider plugin: runs started in a marked folder get antgo tags."""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

import mlflow
import pytest

from antgo_mlflow.project.context_provider import AntgoContextProvider
from antgo_mlflow.project.experiments import find_marker, write_marker


@pytest.fixture
def marked(tmp_path, monkeypatch):
    """A project folder whose MLproject carries the antgo marker, and a subfolder as cwd."""
    monkeypatch.delenv("ANTGO_PROJECT", raising=False)
    monkeypatch.delenv("ANTGO_EXP", raising=False)
    root = tmp_path / "repo"
    (root / "mycls1" / "configs").mkdir(parents=True)
    mlproject = root / "MLproject"
    mlproject.write_text("name: mycls\n\nentry_points:\n  train:\n    command: python main.py\n")
    write_marker(mlproject, "mycls", "mycls1")
    monkeypatch.chdir(root / "mycls1" / "configs")
    return mlproject


def _run_tags() -> dict:
    with mlflow.start_run() as run:
        pass
    return mlflow.MlflowClient().get_run(run.info.run_id).data.tags


def test_plugin_is_declared_and_registered_with_mlflow():
    from mlflow.tracking.context.registry import _run_context_provider_registry

    names = {ep.value for ep in entry_points(group="mlflow.run_context_provider")}
    assert "antgo_mlflow.project.context_provider:AntgoContextProvider" in names
    assert any(isinstance(p, AntgoContextProvider) for p in _run_context_provider_registry)


def test_runs_started_inside_a_marked_folder_get_project_and_exp_tags(store, marked):
    assert marked.read_text().startswith("name: mycls\n")  # the rest of the file is kept
    tags = _run_tags()
    assert tags["antgo.project"] == "mycls" and tags["antgo.exp"] == "mycls1"
    write_marker(marked, "mycls", None)  # replacing the section, now without exp
    assert find_marker() == {"project": "mycls"}
    assert marked.read_text().count("antgo:") == 1


def test_env_vars_override_the_folder_and_unmarked_folders_get_nothing(
    store, marked, monkeypatch, tmp_path
):
    monkeypatch.setenv("ANTGO_PROJECT", "other")
    monkeypatch.setenv("ANTGO_EXP", "x2")
    tags = _run_tags()
    assert (tags["antgo.project"], tags["antgo.exp"]) == ("other", "x2")
    monkeypatch.delenv("ANTGO_PROJECT")
    monkeypatch.delenv("ANTGO_EXP")
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    assert "antgo.project" not in _run_tags()


def test_a_broken_marker_warns_and_the_run_still_starts(store, marked):
    marked.write_text("name: [unclosed\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tags = _run_tags()
    assert "antgo.project" not in tags
    assert any("antgo run-context plugin disabled" in str(w.message) for w in caught)
