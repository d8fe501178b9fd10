"""Step *train*: the product's experiment trained on all registered labelled data plus the
project's semi-supervised / distillation setting (``build_training_config``, teacher =
``champion``), through the project's submitter (local when none is set).

A server killed during training leaves the training run RUNNING with a dead owner; the restart
reaps it (``engine.run_owner``: it ends FAILED) and this step - the same step run - trains again.

Inputs: ``exp``, ``stage`` (auto/supervised/semi/distillation), ``data`` (the registrations'
digests, so new data makes a new key), ``params``. Output: ``run_id`` of the training run.
"""

from __future__ import annotations


def run(ctx, inputs: dict) -> dict:
    """Train once; a failed training raises (the loop retries, then fails the iteration)."""
    from antgo_mlflow.project import experiments
    from antgo_mlflow.project.settings import get_setting

    exp, stage, params = (
        inputs["exp"],
        inputs.get("stage") or "auto",
        dict(inputs.get("params") or {}),
    )
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
