"""The export workflow: a trained run (or checkpoint) -> ONNX, checked with ONNX Runtime, logged.

The checkpoint comes from ``checkpoint`` or from the run ``run_id`` (its ``checkpoints/``
artifacts: ``best.pth`` first, then ``latest.pth``, then the newest ``epoch_N.pth``; else the
run's local work_dir). The model is rebuilt by :func:`antgo_mlflow.inference.build_from_checkpoint`
from the config data recorded in the checkpoint (or ``config``): nothing in the file runs. The
ONNX model is logged with ``mlflow.onnx.log_model`` (signature, input example, and metadata
``antgo.preprocess`` / ``antgo.class_names`` for the loader) to a child run of the training run
(under ``mlflow run`` the project's run becomes that child).

Example:
    >>> result = export_model(run_id="0a1b2c...", opset=18)
    >>> result.path, result.max_abs_diff   # (PosixPath('output/export/digits-best-model.onnx'), 3e-07)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import UsageError

PROG = "antgo-export"
DEFAULT_SHAPE = [1, 3, 32, 32]


def _log(result, source_run, meta: dict, register: str | None, checkpoint: Path) -> str:
    import mlflow

    from antgo_mlflow.export.onnx import log_onnx_model

    source_id = source_run.info.run_id if source_run is not None else meta.get("mlflow_run_id")
    if source_run is None and source_id:
        from mlflow.exceptions import MlflowException

        try:  # the checkpoint's run may live in another tracking store
            source_run = mlflow.tracking.MlflowClient().get_run(source_id)
        except MlflowException:
            source_id = None
    tags = {"antgo.process": "export"}
    if source_id:
        tags["mlflow.parentRunId"] = source_id
        tags["antgo.source_run"] = source_id
    metadata = {"antgo.preprocess": meta.get("_preprocess"), "antgo.checkpoint": checkpoint.name}
    if meta.get("_class_names"):
        metadata["antgo.class_names"] = meta["_class_names"]
    if meta.get("_task"):  # the loader's predictor (a detector: "detection")
        metadata["antgo.task"] = meta["_task"]
    if meta.get("_num_classes"):
        metadata["antgo.num_classes"] = meta["_num_classes"]
    if source_id:
        metadata["antgo.source_run"] = source_id
    kwargs: dict[str, Any] = {}
    if os.environ.get("MLFLOW_RUN_ID") is None and source_run is not None:
        kwargs["experiment_id"] = source_run.info.experiment_id
    if os.environ.get("MLFLOW_RUN_ID") is None:
        kwargs["run_name"] = "export"
    with mlflow.start_run(**kwargs) as run:
        if source_id == run.info.run_id:
            tags.pop("mlflow.parentRunId")
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                "export.opset": result.opset,
                "export.dynamic_batch": result.dynamic_batch,
                "export.exporter": result.exporter,
            }
        )
        mlflow.log_metric("export/max_abs_diff", result.max_abs_diff)
        info = log_onnx_model(
            result, name="onnx_model", metadata=metadata, registered_model_name=register
        )
        print(f"{PROG}: logged {info.model_uri} (run {run.info.run_id})", file=sys.stderr)
        return run.info.run_id


def _task_of(cfg, model) -> str | None:
    task = cfg.get("task") if isinstance(cfg.get("task"), str) else None
    task = task or getattr(model, "task", None)
    return task if isinstance(task, str) else None


def export_model(
    run_id: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: str | None = None,
    opset: int = 18,
    dynamic_batch: bool = True,
    output: str | os.PathLike | None = None,
    register: str | None = None,
    log: bool = True,
    trust_checkpoint_config: bool = False,
):
    """Export a run's or a checkpoint's model to ONNX, check it with ONNX Runtime, log it.

    Args:
        run_id: the training run whose checkpoint to export (or give ``checkpoint``).
        checkpoint: a local ``.pth`` file.
        config: a config file that builds the model instead of the checkpoint's recorded config.
        opset: ONNX opset version (7..23).
        dynamic_batch: a symbolic batch axis.
        output: the ``.onnx`` file (default: next to the checkpoint, or ``output/export/``).
        register: also register the logged model under this name.
        log: log the ONNX model to MLflow.
        trust_checkpoint_config: let an old checkpoint's config *text* run (it is code).

    Returns:
        the ExportResult (path, exporter, opset, max_abs_diff).
    """
    from antgo_mlflow.export.onnx import ATOL, export_onnx
    from antgo_mlflow.inference.loader import (
        build_from_checkpoint,
        checkpoint_of_run,
        class_names_of,
        run_checkpoint_name,
    )
    from antgo_mlflow.inference.preprocess import preprocess_of

    if bool(run_id) == bool(checkpoint):
        raise UsageError("give exactly one of --run-id and --checkpoint")
    if not 7 <= int(opset) <= 23:
        raise UsageError(f"--opset must be between 7 and 23, got {opset}")
    if output is not None and Path(output).expanduser().is_dir():
        raise UsageError(f"--output: {output} is a directory; give the .onnx file to write")
    with tempfile.TemporaryDirectory() as tmp:
        source_run = None
        if run_id:
            ckpt_path, source_run = checkpoint_of_run(run_id, Path(tmp))
            flag, name = "--run-id", run_checkpoint_name(run_id, ckpt_path, Path(tmp))
        else:
            ckpt_path = Path(checkpoint).expanduser()
            if not ckpt_path.is_file():
                raise UsageError(f"--checkpoint: {checkpoint} not found")
            flag, name = "--checkpoint", str(checkpoint)
        built = build_from_checkpoint(ckpt_path, config, trust_checkpoint_config, flag, name)
        cfg = built.cfg
        meta = dict(
            built.meta,
            _preprocess=preprocess_of(cfg),
            _class_names=class_names_of(cfg, built.meta)
            or [str(n) for n in (getattr(built.model, "class_names", None) or [])],
            _task=_task_of(cfg, built.model),
            _num_classes=getattr(built.model, "num_classes", None),
        )
        exp = meta.get("exp") or "model"
        default_dir = ckpt_path.parent if checkpoint else Path("output") / "export"
        output = Path(output or default_dir / f"{exp}-{ckpt_path.stem}-model.onnx")
        shape = ((cfg.get("export") or {}).get("input_shape_list") or [DEFAULT_SHAPE])[0]
        result = export_onnx(
            built.model,
            output,
            input_shape=tuple(shape),
            opset=int(opset),
            dynamic_batch=dynamic_batch,
        )
        print(
            f"{PROG}: wrote {output} ({result.exporter} exporter, opset {result.opset}, "
            f"batch {'dynamic' if dynamic_batch else shape[0]})",
            file=sys.stderr,
        )
        print(
            f"{PROG}: ONNX Runtime vs PyTorch max abs diff {result.max_abs_diff:.3g} (<= {ATOL:g})",
            flush=True,
        )
        if log:
            _log(result, source_run, meta, register, ckpt_path)
    return result
