"""Step *train*: the product's experiment trained on all registered labelled data plus the
project's semi-supervised / distillation setting (``build_training_config``, teacher =
``champion``), through the project's submitter (local when none is set).

A server killed (even ``kill -9``) during training: the restarted step - the same step run - looks
for the training run it started (exp ``exp``, started after the step run): a FINISHED one is taken
as it is, one still RUNNING with a live owner (the orphaned trainer) is waited for, and only a
FAILED/KILLED one (or one whose owner is gone: ``engine.run_owner`` reaps it) is trained again - so
no duplicate training runs.

Inputs: ``exp``, ``stage`` (auto/supervised/semi/distillation), ``data`` (the registrations'
digests, so new data makes a new key), ``params``. Output: ``run_id`` of the training run.
"""

from __future__ import annotations

UNCLAIMED_S = 120.0  # a training run with no trainer (owner) after this long never started


def run(ctx, inputs: dict) -> dict:
    """Train once; a failed training raises (the loop retries, then fails the iteration)."""
    from antgo_mlflow.project import experiments
    from antgo_mlflow.project.settings import get_setting

    def resolve(project, stage, client):
        from antgo_mlflow.project.training_config import resolve_stage

        settings = {k: get_setting(project, k, client) for k in ("semi", "distillation")}
        return resolve_stage(stage, settings)

    exp, stage, params = (
        inputs["exp"],
        inputs.get("stage") or "auto",
        dict(inputs.get("params") or {}),
    )
    if resolve(ctx.project, stage, ctx.client) == "supervised":
        # antgo train leaves a supervised config alone: add the registered labelled data here
        params["config"] = _supervised_config(ctx, exp, params)
        stage = "supervised"
    submitter = (get_setting(ctx.project, "submitter", ctx.client) or {}).get("method")
    cloud = experiments.CLOUD_METHODS.get(submitter or "")
    ctx.echo(
        f"train: exp {exp}, stage {stage}, " + (f"submitter {submitter}" if cloud else "local")
    )
    if cloud and stage in ("auto", "supervised"):
        result = experiments.submit_train(ctx.project, exp, kind=cloud, params=params)
    else:
        result = experiments.train(ctx.project, exp, params=params, stage=stage)
    ctx.tag("antgo.pipeline.train_run", result["run_id"])
    return {"run_id": result["run_id"], "stage": result.get("stage", stage)}


def _earlier_run(ctx, exp: str) -> dict | None:
    """The outcome of a training run an earlier attempt of this step started, if it counts."""
    import time

    from antgo_mlflow.engine.run_owner import owner_of, reap
    from antgo_mlflow.server.state import KIND, StepWaiting

    client = ctx.client
    since = client.get_run(ctx.step_run_id).info.start_time
    runs = client.search_runs(
        [ctx.experiment_id],
        f"tags.`antgo.exp` = '{exp}' and attributes.start_time >= {since}",
        order_by=["attributes.start_time DESC"],
    )
    runs = [r for r in runs if KIND not in r.data.tags]
    for run in runs:
        status = run.info.status
        if status == "RUNNING" and _trainer_alive(run.info.run_id):
            # kill -9 of the server orphans its `mlflow run` group, which trains on: wait for it
            raise StepWaiting(
                f"training run {run.info.run_id} (started before a restart) still runs"
            )
        if status == "RUNNING" and reap(client, [run]):
            continue  # its trainer is gone: ended FAILED, train again
        if status == "RUNNING" and not owner_of(run.data.tags):
            if time.time() * 1000 - run.info.start_time > UNCLAIMED_S * 1000:
                client.set_terminated(run.info.run_id, "FAILED")  # its trainer never started
                continue
        if status == "RUNNING":
            raise StepWaiting(
                f"training run {run.info.run_id} (started before a restart) still runs"
            )
        if status == "FINISHED":
            ctx.echo(f"train: run {run.info.run_id} finished while the server was down")
            ctx.tag("antgo.pipeline.train_run", run.info.run_id)
            return {"run_id": run.info.run_id, "stage": "recovered"}
    return None


def _supervised_config(ctx, exp: str, params: dict) -> str:
    """The exp's base config plus every registered ``train/label`` set, dumped into the workdir."""
    from pathlib import Path

    from mlflow.projects.utils import load_project

    from antgo_mlflow.errors import UsageError
    from antgo_mlflow.project.experiments import exp_folder
    from antgo_mlflow.project.projects import get_project
    from antgo_mlflow.project.training_config import build_training_config

    folder = exp_folder(ctx.project, exp, get_project(ctx.project, ctx.client))
    entry = load_project(str(folder))._entry_points.get("train")
    declared = entry.parameters if entry is not None else {}
    base = params.get("config") or (declared["config"].default if "config" in declared else None)
    if not base:
        raise UsageError(f"{folder / 'MLproject'}: the train entry point needs a config parameter")
    base_path = Path(base) if Path(base).is_absolute() else folder / base
    cfg = build_training_config(base_path, ctx.project, "supervised", client=ctx.client)
    out = Path(ctx.workdir) / "train" / f"{exp}-supervised.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(out)
    return str(out)


def _trainer_alive(run_id: str) -> bool:
    """True when a process on this host still trains run ``run_id`` (its MLFLOW_RUN_ID)."""
    import os

    needle = f"MLFLOW_RUN_ID={run_id}".encode()
    if not os.path.isdir("/proc"):
        return False
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    return True
        except OSError:
            continue
    return False
