"""The iteration driver: one iteration per new ``train/unlabel`` registration (or on demand),
each step run once through ``state.run_step`` (so a restart continues where it stopped).

Example:
    >>> opts = LoopOptions(root="/srv/antgo", label_studio="http://127.0.0.1:8080")
    >>> serve_once(["digits"], opts)          # one pass over the projects: what cron runs
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antgo_mlflow import env
from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.server import state
from antgo_mlflow.server.steps import step_function

LOOP_TAG = "rest-"  # train/unlabel tags the loop registers itself: not new data


@dataclass
class LoopOptions:
    """The server's knobs (``antgo server`` flags)."""

    root: str = "."  # where iterations' files go: <root>/<project>/iteration-<n>/
    threshold: float = 0.95  # pseudo-label confidence
    budget: int | None = None  # labels per iteration (default: project/activelearning budget)
    margin: float = 0.0  # candidate must beat the product by this much
    retries: int = 2
    label_studio: str | None = None  # Label Studio URL (token in $LABEL_STUDIO_API_KEY)
    label_timeout: float | None = None
    label_policy: str = "partial"
    stage: str = "auto"
    train_params: dict = field(default_factory=dict)
    echo: Callable[[str], Any] = print


def project_models(client, project: str) -> list[str]:
    """The experts' URIs (champion first), else the product's; UsageError when there are none."""
    from antgo_mlflow.project.roles import alias_version, expert_versions

    champion = alias_version(client, project, "champion")
    versions = ([champion] if champion else []) + [
        v for v in expert_versions(client, project) if v != champion
    ]
    if versions:
        return [f"models:/{project}/{v}" for v in versions]
    product = alias_version(client, project, "production")
    if product:
        return [f"models:/{project}/{product}"]
    raise UsageError(
        f"project {project}: no product and no experts to predict with; register one first "
        f"('antgo add expert --project={project} --run-id=...' or "
        f"'antgo promote --project={project} --run-id=... --role=product')"
    )


def product_exp(client, project: str) -> str:
    """The exp whose config the candidate trains: the product's (else the champion's)."""
    from antgo_mlflow.project.roles import alias_version

    for alias in ("production", "champion"):
        version = alias_version(client, project, alias)
        if version:
            mv = client.get_model_version(project, version)
            exp = (mv.tags or {}).get("antgo.exp") or client.get_run(mv.run_id).data.tags.get(
                "antgo.exp"
            )
            if exp:
                return exp
    raise UsageError(f"project {project}: the product model has no exp (tag antgo.exp) to train")


def source_of(record: dict) -> str:
    """The pipeline source string of a registration."""
    return f"{record['split']}:{record['tag']}:{record['digest']}"


def pending_sources(client, project: str) -> list[dict]:
    """``train/unlabel`` registrations not made by the loop whose iteration has not ended."""
    from antgo_mlflow.project.data_registry import list_data
    from antgo_mlflow.project.projects import get_project

    experiment = get_project(project, client)
    out = []
    for record in list_data(project, client)["train/unlabel"]:
        if record["tag"].startswith(LOOP_TAG):
            continue
        run = state.find_pipeline(client, experiment.experiment_id, source_of(record))
        if run is None or run.info.status == "RUNNING":
            out.append(record)
    return out


def _check_data(record: dict, what: str) -> str:
    address = record["address"]
    if not Path(address).exists() and not Path(address + "-manifest.json").exists():
        raise DataError(
            f"{what} registration {record['tag']!r}: its data {address} is gone "
            f"(register it again or 'antgo del {what} --tags={record['tag']}')"
        )
    return address


def _budget(project: str, opts: LoopOptions, client) -> int:
    from antgo_mlflow.project.settings import get_setting

    if opts.budget:
        return opts.budget
    setting = get_setting(project, "activelearning", client) or {}
    budget = (setting.get("config") or {}).get("budget")
    if not budget:
        raise UsageError(
            f"project {project}: no labelling budget; give --budget or set budget in "
            "'antgo update project/activelearning --config=...'"
        )
    return int(budget)


def _step(ctx, name: str, inputs: dict) -> dict:
    """Run step ``name``, retrying failures up to ``ctx.retries`` times."""
    while True:
        try:
            return state.run_step(ctx, name, inputs, step_function(name))
        except (state.StepWaiting, state.StepFailed):
            raise
        except Exception as exc:  # counted as an attempt by run_step: try again
            ctx.echo(f"{ctx.project} iteration {ctx.iteration}: {name} failed ({exc}); retrying")


def run_iteration(project: str, record: dict | None, opts: LoopOptions, client=None) -> dict:
    """Drive the iteration of ``record`` (a train/unlabel registration) to its end or to a wait.

    Returns ``{iteration, state}`` (``finished``, ``waiting`` or ``failed``) plus the last
    evaluation. ``record=None`` iterates on demand over the latest train/unlabel registration.
    """
    from antgo_mlflow.project.data_registry import list_data
    from antgo_mlflow.project.projects import get_client, get_project
    from antgo_mlflow.project.settings import get_setting

    client = client or get_client()
    experiment = get_project(project, client)
    data = list_data(project, client)
    if record is None:
        if not data["train/unlabel"]:
            raise UsageError(f"project {project}: no train/unlabel data to iterate on")
        record = max(data["train/unlabel"], key=lambda r: r.get("added_at", ""))
        source = f"{source_of(record)}:on-demand:{len(state.pipeline_runs(client, experiment.experiment_id))}"
    else:
        source = source_of(record)
    pool = _check_data(record, "train/unlabel")
    if not data["test"]:
        raise UsageError(
            f"project {project}: register fixed test data first ('antgo add test ...')"
        )
    test = _check_data(data["test"][0], "test")
    label = get_setting(project, "label", client) or {}
    label_cfg = label.get("config") or {}
    models = project_models(client, project)
    exp = product_exp(client, project)
    budget = _budget(project, opts, client)
    pipe = state.pipeline_run(client, experiment.experiment_id, source, project)
    iteration = int(pipe.data.tags[state.ITERATION])
    workdir = Path(opts.root).expanduser().absolute() / project / f"iteration-{iteration}"
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = state.Context(
        project, client, experiment.experiment_id, iteration, pipe.info.run_id, workdir,
        echo=opts.echo, retries=opts.retries,
    )  # fmt: skip
    result: dict = {"iteration": iteration}
    try:
        pred = _step(ctx, "predict", {"pool": pool, "pool_digest": record["digest"],
                                      "models": models, "threshold": opts.threshold})  # fmt: skip
        sel = _step(ctx, "select", {"pool": pool, "models": models, "budget": budget,
                                    "predicted": pred["all"], "strategy": None})  # fmt: skip
        classes = label_cfg.get("category") or sel.get("classes") or []
        lab = _step(ctx, "label", {"selected": sel["selected"], "classes": classes,
                                   "label_type": label_cfg.get("type") or "CLASS",
                                   "url": opts.label_studio or env.text(env.ANTGO_LABEL_STUDIO_URL),
                                   "timeout": opts.label_timeout,
                                   "document_root": str(Path(opts.root).expanduser().absolute()), "policy": opts.label_policy})  # fmt: skip
        reg = _step(ctx, "pack_register", {"human": lab["human"], "pseudo": sel["pseudo"],
                                           "unlabel": sel["unlabel"]})  # fmt: skip
        digests = sorted(r["digest"] for r in list_data(project, client)["train/label"])
        tr = _step(ctx, "train", {"exp": exp, "stage": opts.stage, "data": digests,
                                  "registered": reg["registered"], "params": opts.train_params})  # fmt: skip
        ev = _step(ctx, "evaluate_promote", {"candidate": tr["run_id"], "test": test,
                                             "margin": opts.margin})  # fmt: skip
    except state.StepWaiting as exc:
        opts.echo(f"{project} iteration {iteration}: waiting: {exc}")
        return {**result, "state": "waiting", "note": str(exc)}
    except state.StepFailed as exc:
        state.finish_pipeline(client, pipe.info.run_id, failed=True, note=str(exc))
        opts.echo(f"{project} iteration {iteration}: failed: {exc}")
        return {**result, "state": "failed", "note": str(exc)}
    metrics = {"labels_added": lab.get("n_human", 0), "pseudo_accepted": sel["n_pseudo"],
               "candidate_top1": ev["candidate_top1"], "promoted": float(ev["promoted"])}  # fmt: skip
    if ev.get("product_top1") is not None:
        metrics["product_top1"] = ev["product_top1"]
    from mlflow.entities import Metric

    client.log_batch(
        pipe.info.run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()]
    )
    state.finish_pipeline(client, pipe.info.run_id, note=ev["why"])
    opts.echo(f"{project} iteration {iteration}: finished ({ev['why']})")
    return {
        **result,
        "state": "finished",
        **{k: ev[k] for k in ("candidate_top1", "product_top1", "promoted", "why")},
    }


def serve_once(
    projects: list[str], opts: LoopOptions, iterate: bool = False, client=None
) -> list[dict]:
    """One pass: every pending iteration of every project (each project's errors stay its own)."""
    from antgo_mlflow.errors import AntgoError
    from antgo_mlflow.project.projects import get_client

    client = client or get_client()
    results = []
    for project in projects:
        try:
            records = pending_sources(client, project)
            if iterate and not records:
                records = [None]
            for record in records:
                out = run_iteration(project, record, opts, client)
                results.append({"project": project, **out})
                if out["state"] == "waiting":
                    break  # the next registration waits for this iteration
        except AntgoError as exc:
            opts.echo(f"{project}: {exc}")
            results.append({"project": project, "state": "error", "note": str(exc)})
    return results


def auto_projects(client) -> list[str]:
    """Projects created with ``--auto`` (tag ``antgo.auto=true``)."""
    from antgo_mlflow.project.projects import TAG_AUTO, list_projects

    return [
        e.name for e in list_projects(client) if str(e.tags.get(TAG_AUTO, "")).lower() == "true"
    ]


def reap_dead_runs(client, projects: list[str]) -> dict:
    """End the runs a killed server left RUNNING (training runs with a dead owner)."""
    from antgo_mlflow.engine.run_owner import reap_experiments
    from antgo_mlflow.project.projects import get_project

    ids = [get_project(p, client).experiment_id for p in projects]
    return reap_experiments(client, ids)


def loop_state_json(state_dict: dict) -> str:
    """``state_dict`` as one JSON line (for logs)."""
    return json.dumps(state_dict, sort_keys=True, default=str)
