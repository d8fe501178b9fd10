"""Step *train*: the product's experiment trained on all registered labelled data plus the
project's semi-supervised / distillation setting (``build_training_config``, teacher =
``champion``), through the project's submitter (local when none is set).

The step owns its training run: the run is created tagged ``antgo.pipeline.step_run`` = the step
run, and its id is recorded on the step run (``antgo.pipeline.train_run``) before the job starts.
A server killed (even ``kill -9``) during training leaves the job running (its ``mlflow run``
process group survives); the restarted step - the same step run - *adopts* that training run
(:func:`adopt`) instead of starting another:

* FINISHED: its result is taken as it is;
* RUNNING with a live trainer (a process of this host holding its ``MLFLOW_RUN_ID``, or an owner
  record of ``engine.run_owner`` not gone): waited for (``StepWaiting``; the loop polls again);
* RUNNING with its trainer gone (reaped KILLED), or KILLED: trained again *into the same run*
  (``resume_from=auto`` where the entry point declares it);
* FAILED: the training failed; the step's retry trains a new run.

So a restart never makes a second finished training run. Inputs: ``exp``, ``stage``
(auto/supervised/semi/distillation), ``data`` (the registrations' digests, so new data makes a
new key), ``params``. Output: ``run_id`` of the training run.
"""

from __future__ import annotations

UNCLAIMED_S = 120.0  # a remote training run with no trainer (owner) after this long never started
STEP_RUN_TAG = "antgo.pipeline.step_run"  # on a training run: the step run that started it
TRAIN_RUN_TAG = "antgo.pipeline.train_run"  # on a step run: its training run
RESUME_PARAMS = ("resume_from", "resume-from")


def run(ctx, inputs: dict) -> dict:
    """Train once (or adopt the training an earlier attempt started); a failed training raises
    (the loop retries, then fails the iteration)."""
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
    submitter = (get_setting(ctx.project, "submitter", ctx.client) or {}).get("method")
    cloud = experiments.CLOUD_METHODS.get(submitter or "")
    adopted = adopt(ctx, exp, local=not cloud)
    if adopted is not None and adopted.get("status") == "FINISHED":
        return {"run_id": adopted["run_id"], "stage": adopted["stage"]}
    resume_id = adopted["run_id"] if adopted is not None else None
    if resolve(ctx.project, stage, ctx.client) == "supervised":
        # antgo train leaves a supervised config alone: add the registered labelled data here
        params["config"] = _supervised_config(ctx, exp, params)
        stage = "supervised"
    if resume_id is not None:
        params.update(_resume_params(ctx, exp))
        ctx.client.update_run(resume_id, status="RUNNING")
    ctx.echo(
        f"train: exp {exp}, stage {stage}, "
        + (f"submitter {submitter}" if cloud else "local")
        + (f", resuming run {resume_id}" if resume_id else "")
    )
    claim = dict(
        run_id=resume_id,
        tags={STEP_RUN_TAG: ctx.step_run_id, "antgo.pipeline.stage": stage},
        on_run=lambda run_id: ctx.tag(TRAIN_RUN_TAG, run_id),
    )
    if cloud and stage in ("auto", "supervised"):
        result = experiments.submit_train(ctx.project, exp, kind=cloud, params=params, **claim)
    else:
        result = experiments.train(ctx.project, exp, params=params, stage=stage, **claim)
    return {"run_id": result["run_id"], "stage": result.get("stage", stage)}


def adopt(ctx, exp: str, local: bool = True) -> dict | None:
    """The training run an earlier attempt of this step started, if it is to be adopted.

    Returns None (none, or it FAILED: train anew), ``{run_id, status: FINISHED, stage}`` (take
    it) or ``{run_id, status: KILLED}`` (its trainer is gone: resume it). Raises ``StepWaiting``
    while its trainer still runs. ``local``: the job ran on this host (no submitter).
    """
    import time

    from antgo_mlflow.engine.run_owner import REASON_TAG, owner_of, reap
    from antgo_mlflow.server.state import StepWaiting

    client = ctx.client
    runs = client.search_runs(
        [ctx.experiment_id],
        f"tags.`{STEP_RUN_TAG}` = '{ctx.step_run_id}'",
        order_by=["attributes.start_time DESC"],
    )
    if not runs:
        return None
    run = runs[0]  # the newest: older ones of this step failed and were retried
    run_id, status = run.info.run_id, run.info.status
    if status == "RUNNING":
        waiting = StepWaiting(f"training run {run_id} (started before a restart) still runs")
        if _trainer_alive(run_id):  # the orphaned `mlflow run` group of a killed server
            raise waiting
        if not reap(client, [run]):  # reaped: its owner is provably gone (KILLED, reason kept)
            if owner_of(run.data.tags):  # an owner not provably gone (a remote heartbeat)
                raise waiting
            unclaimed = time.time() * 1000 - run.info.start_time > UNCLAIMED_S * 1000
            if not local and not unclaimed:  # a remote job may still be starting
                raise waiting
            # no owner and no process holding it (local), or never claimed (remote)
            client.set_tag(run_id, REASON_TAG, "its trainer never started or died unclaimed")
            client.set_terminated(run_id, "KILLED")
        status = "KILLED"
    ctx.tag(TRAIN_RUN_TAG, run_id)
    if status == "FINISHED":
        ctx.echo(f"train: run {run_id} finished while the server was down")
        stage = run.data.tags.get("antgo.pipeline.stage", "recovered")
        return {"run_id": run_id, "status": "FINISHED", "stage": stage}
    if status == "KILLED":
        ctx.echo(f"train: run {run_id} lost its trainer; resuming it")
        return {"run_id": run_id, "status": "KILLED"}
    return None  # FAILED: a real failure, retried as a new run


def _resume_params(ctx, exp: str) -> dict:
    """``resume_from=auto`` under the name the exp's train entry point declares (if any)."""
    from mlflow.projects.utils import load_project

    from antgo_mlflow.project.experiments import exp_folder
    from antgo_mlflow.project.projects import get_project

    folder = exp_folder(ctx.project, exp, get_project(ctx.project, ctx.client))
    entry = load_project(str(folder))._entry_points.get("train")
    declared = entry.parameters if entry is not None else {}
    return {name: "auto" for name in RESUME_PARAMS if name in declared}


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
