"""One dict describing a project (for ``antgo show project``): roles, exps, data, settings, best runs."""

from __future__ import annotations

from antgo_mlflow.project.projects import (
    TAG_AUTO,
    TAG_GIT,
    TAG_IMAGE,
    get_client,
    get_project,
    list_projects,
    project_metric,
)


def describe_project(project: str) -> dict:
    """Everything ``show project --project=p`` prints, as plain JSON-able data."""
    from antgo_mlflow.project.data_registry import list_data
    from antgo_mlflow.project.experiments import best_runs, list_exps
    from antgo_mlflow.project.roles import current_roles
    from antgo_mlflow.project.settings import all_settings

    client = get_client()
    experiment = get_project(project, client)
    metric = project_metric(experiment)
    return {
        "project": project,
        "experiment_id": experiment.experiment_id,
        "git": experiment.tags.get(TAG_GIT),
        "image": experiment.tags.get(TAG_IMAGE),
        "auto": experiment.tags.get(TAG_AUTO) == "true",
        "metric": {"name": metric.name, "mode": metric.mode} if metric.name else None,
        "roles": current_roles(project, client),
        "exps": list_exps(project, client),
        "best": best_runs(project, client),
        "data": list_data(project, client),
        "settings": all_settings(project, client),
    }


def projects_overview() -> list[dict]:
    """One row per project: name, experiment id, git, metric."""
    rows = []
    for exp in list_projects(get_client()):
        metric = project_metric(exp)
        rows.append(
            {
                "project": exp.name,
                "experiment_id": exp.experiment_id,
                "git": exp.tags.get(TAG_GIT),
                "metric": metric.name,
            }
        )
    return rows
