"""`antgo create mvp|project|exp`."""

from __future__ import annotations

import click

from antgo_mlflow.cli.lazy import LazyGroup

CREATE: dict[str, tuple[str, str]] = {
    "mvp": ("antgo_mlflow.cli.mvp:mvp_cmd", "Scaffold a runnable experiment (cifar10 layout)."),
    "project": ("antgo_mlflow.cli.projects:create_project_cmd", "Create a project (experiment)."),
    "exp": ("antgo_mlflow.cli.projects:create_exp_cmd", "Scaffold and record an experiment."),
}


@click.group(cls=LazyGroup, lazy=CREATE)
def create() -> None:
    """Scaffold an mvp, a project (an MLflow experiment) or an experiment folder.

    \b
    Example:
      antgo create mvp --name=mycls
      antgo create project --name=hands
      antgo create exp --project=hands --name=mycls1
    """
