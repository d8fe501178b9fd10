"""A teacher in a real MLflow registry: a small classifier logged (pt2) and given an alias."""

from __future__ import annotations

WRN = dict(
    type="ImageClassifier",
    backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1),
    head=dict(type="ClsHead"),
)


def register_teacher(name: str, num_classes: int = 10, alias: str = "champion") -> str:
    """Log a WRN-10-1 with ``num_classes`` classes into the current tracking store and point
    ``models:/<name>@<alias>`` at it; returns that URI."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    from antgo_mlflow.engine.hooks.mlflow_logger import log_torch_model
    from antgo_mlflow.registry import MODELS

    cfg = dict(WRN, backbone=dict(WRN["backbone"], num_classes=num_classes))
    model = MODELS.build(cfg, path="model").eval()
    client = MlflowClient()
    experiment = client.get_experiment_by_name("teachers")
    exp_id = experiment.experiment_id if experiment else client.create_experiment("teachers")
    run = client.create_run(exp_id)
    uri = log_torch_model(client, run.info.run_id, model, np.zeros((2, 3, 32, 32), np.float32))
    client.set_terminated(run.info.run_id, "FINISHED")
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    info = mlflow.models.get_model_info(uri)
    version = client.create_model_version(
        name, source=uri, run_id=run.info.run_id, model_id=info.model_id
    )
    client.set_registered_model_alias(name, alias, version.version)
    return f"models:/{name}@{alias}"
