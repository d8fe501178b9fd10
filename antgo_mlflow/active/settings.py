"""The options of a rank: explicit flags, else the project's ``project/activelearning`` setting,
else the defaults (``hybrid``, the project's champion + experts as the models).

Example:
    >>> opts = resolve_options(project="digits", budget=100)
    >>> opts.models          # ['models:/digits@champion', 'models:/digits/3']
    >>> opts.strategy        # {'type': 'hybrid', 'pool_factor': 3}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from antgo_mlflow.active.strategies import DEFAULT_STRATEGY
from antgo_mlflow.errors import TrackingError, UsageError

DEFAULT_BATCH = 64


@dataclass
class ActiveOptions:
    """What ``rank`` runs with, and where each value came from (for the run's params)."""

    models: list[str]
    strategy: dict
    budget: int | None
    batch_size: int = DEFAULT_BATCH
    seed: int = 0
    project: str | None = None
    sources: dict[str, str] = field(default_factory=dict)


def project_models(project: str, client=None) -> list[str]:
    """``models:/<project>@champion`` then every other expert version, oldest first."""
    from antgo_mlflow.project.projects import get_client, get_project
    from antgo_mlflow.project.roles import alias_version, expert_versions, model_uri

    client = client or get_client()
    get_project(project, client)
    champion = alias_version(client, project, "champion")
    if champion is None:
        raise TrackingError(
            f"--project={project}: no champion model to rank with "
            f"(antgo add expert --project={project} --exp=<exp> --id=<run id>, or give --models)"
        )
    others = [v for v in expert_versions(client, project) if v != champion]
    return [model_uri(project, "champion"), *(f"models:/{project}/{v}" for v in others)]


def resolve_options(
    project: str | None = None,
    models: Sequence[str] | None = None,
    strategy: str | None = None,
    budget: int | None = None,
    pool_factor: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
) -> ActiveOptions:
    """Merge explicit values (not None) over the project's setting over the defaults."""
    config: dict = {}
    sources: dict[str, str] = {}
    if project:
        from antgo_mlflow.project.settings import get_setting

        setting = get_setting(project, "activelearning") or {}
        config = dict(setting.get("config") or {})
        if setting and "strategy" not in config:
            config["strategy"] = {"type": setting.get("method") or DEFAULT_STRATEGY}

    def pick(key, explicit, default):
        if explicit is not None:
            sources[key] = "flag"
            return explicit
        if key in config:
            sources[key] = f"project {project}"
            return config[key]
        sources[key] = "default"
        return default

    if strategy is not None:
        strategy_cfg = {"type": strategy}
        sources["strategy"] = "flag"
    else:
        strategy_cfg = dict(pick("strategy", None, {"type": DEFAULT_STRATEGY}))
    if pool_factor is not None:
        strategy_cfg["pool_factor"] = pool_factor
    model_list = [m for m in (models or []) if m]
    if model_list:
        sources["models"] = "flag"
    elif config.get("models"):
        model_list, sources["models"] = list(config["models"]), f"project {project}"
    elif project:
        model_list, sources["models"] = project_models(project), f"project {project} roles"
    if not model_list:
        raise UsageError("--models: give at least one model URI or file (or --project=P)")
    return ActiveOptions(
        models=model_list,
        strategy=strategy_cfg,
        budget=pick("budget", budget, None),
        batch_size=int(pick("batch_size", batch_size, DEFAULT_BATCH)),
        seed=int(pick("seed", seed, 0)),
        project=project,
        sources=sources,
    )
