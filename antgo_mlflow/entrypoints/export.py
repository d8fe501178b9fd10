"""The ``export`` entry point: a trained run (or checkpoint) -> ONNX, checked with ONNX Runtime, logged.

The checkpoint comes from ``--checkpoint`` or from the run ``--run-id``: its ``checkpoints/``
artifacts (``best.pth`` first, then ``latest.pth``, then the newest ``epoch_N.pth``), else the
run's local work_dir. The model is rebuilt from the config recorded in the checkpoint (or
``--config``). The ONNX model is logged with ``mlflow.onnx.log_model`` (signature + input
example) to a child run of the training run (under ``mlflow run`` the project's run becomes
that child).

Example:
    python -m antgo_mlflow.entrypoints.export --run-id 0a1b2c... --opset 18
    python -m antgo_mlflow.entrypoints.export --checkpoint output/digits/best.pth --dynamic-batch false
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from antgo_mlflow.entrypoints._common import (
    ArgumentParser,
    optional,
    parse_bool,
    parse_int,
    run_main,
)
from antgo_mlflow.errors import TrackingError, UsageError

PROG = "antgo-export"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Export a trained model to ONNX, check it with ONNX Runtime, log it to MLflow.",
        epilog="example: python -m antgo_mlflow.entrypoints.export --run-id $RUN_ID",
    )
    parser.add_argument("--run-id", default="", help="the training run to export")
    parser.add_argument("--checkpoint", default="", help="a local .pth checkpoint instead of a run")
    parser.add_argument(
        "--config", default="", help="config .py (default: the one in the checkpoint)"
    )
    parser.add_argument("--opset", default="18", help="ONNX opset version (default 18)")
    parser.add_argument("--dynamic-batch", default="true", help="symbolic batch axis (true/false)")
    parser.add_argument("--output", default="", help="the .onnx file to write")
    parser.add_argument("--register", default="", help="also register the model under this name")
    return parser


def _pick_checkpoint(names: list[str]) -> str | None:
    for wanted in ("best.pth", "latest.pth"):
        for name in names:
            if name.rsplit("/", 1)[-1] == wanted:
                return name
    from antgo_mlflow.engine.checkpoint import epoch_number

    epochs = sorted((e, n) for n in names if (e := epoch_number(n)) is not None)
    return epochs[-1][1] if epochs else None


def checkpoint_of_run(run_id: str, dst: Path) -> tuple[Path, Any]:
    """Download (or find locally) the checkpoint of ``run_id``; TrackingError if there is none."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(
            f"--run-id {run_id}: no such run in the tracking store "
            f"({exc.message.splitlines()[0][:160]})"
        ) from None
    try:
        names = [f.path for f in client.list_artifacts(run_id, "checkpoints")]
    except (MlflowException, OSError):
        names = []
    chosen = _pick_checkpoint(names)
    if chosen:
        local = client.download_artifacts(run_id, chosen, str(dst))
        return Path(local), run
    work_dir = run.data.tags.get("antgo.work_dir")
    if work_dir and Path(work_dir).is_dir():
        local_names = [p.name for p in Path(work_dir).glob("*.pth")]
        chosen = _pick_checkpoint(local_names)
        if chosen:
            return Path(work_dir) / chosen, run
    raise TrackingError(
        f"--run-id {run_id}: the run has no checkpoint (no checkpoints/*.pth artifact"
        f"{', nothing in ' + work_dir if work_dir else ''}); "
        "train with checkpoint_config.log_artifacts='best' or pass --checkpoint"
    )


def load_model(checkpoint: Path, config: str | None):
    """Rebuild the model from ``config`` (or the checkpoint's recorded config) and load the weights."""
    from antgo_mlflow.config import Config
    from antgo_mlflow.engine.checkpoint import load_checkpoint, load_weights
    from antgo_mlflow.registry import MODELS

    ckpt = load_checkpoint(checkpoint, "--checkpoint")
    meta = ckpt.get("meta") or {}
    if config:
        if not Path(config).is_file():
            raise UsageError(f"--config: {config} not found")
        cfg = Config.fromfile(config)
    else:
        text = meta.get("config")
        if not text:
            raise UsageError(f"--checkpoint: {checkpoint} records no config; pass --config")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.py"
            path.write_text(text, encoding="utf-8")
            cfg = Config.fromfile(path)
    model = MODELS.build(cfg.model, path="model")
    load_weights(model, checkpoint, "--checkpoint")
    return model.eval(), cfg, meta


def preprocess_of(cfg) -> dict[str, Any]:
    """Input size, mean and std read from the config (test pipeline's Normalize, export shape)."""
    shape = ((cfg.get("export") or {}).get("input_shape_list") or [[1, 3, 32, 32]])[0]
    info: dict[str, Any] = {"size": [int(shape[2]), int(shape[3])]}
    data = cfg.get("data") or {}
    for split in ("test", "val", "train"):
        for step in (data.get(split) or {}).get("pipeline") or []:
            if isinstance(step, dict) and step.get("type") == "Normalize":
                info["mean"] = [float(v) for v in step.get("mean", ())]
                info["std"] = [float(v) for v in step.get("std", ())]
                return info
    return info


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


def export_model(
    run_id: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: str | None = None,
    opset: int = 18,
    dynamic_batch: bool = True,
    output: str | os.PathLike | None = None,
    register: str | None = None,
    log: bool = True,
):
    """Export a run's or a checkpoint's model to ONNX, check it with ONNX Runtime, log it.

    Returns:
        the ExportResult (path, exporter, opset, max_abs_diff).
    """
    from antgo_mlflow.export.onnx import ATOL, export_onnx

    if bool(run_id) == bool(checkpoint):
        raise UsageError("give exactly one of --run-id and --checkpoint")
    if not 7 <= int(opset) <= 23:
        raise UsageError(f"--opset must be between 7 and 23, got {opset}")
    with tempfile.TemporaryDirectory() as tmp:
        source_run = None
        if run_id:
            ckpt_path, source_run = checkpoint_of_run(run_id, Path(tmp))
        else:
            ckpt_path = Path(checkpoint).expanduser()
            if not ckpt_path.is_file():
                raise UsageError(f"--checkpoint: {checkpoint} not found")
        model, cfg, meta = load_model(ckpt_path, config)
        meta = dict(meta, _preprocess=preprocess_of(cfg))
        exp = meta.get("exp") or "model"
        default_dir = ckpt_path.parent if checkpoint else Path("output") / "export"
        output = Path(output or default_dir / f"{exp}-{ckpt_path.stem}-model.onnx")
        shape = ((cfg.get("export") or {}).get("input_shape_list") or [[1, 3, 32, 32]])[0]
        result = export_onnx(
            model, output, input_shape=tuple(shape), opset=int(opset), dynamic_batch=dynamic_batch
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


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    opset = parse_int("--opset", args.opset, minimum=7)
    export_model(
        run_id=optional(args.run_id),
        checkpoint=optional(args.checkpoint),
        config=optional(args.config),
        opset=18 if opset is None else opset,
        dynamic_batch=parse_bool("--dynamic-batch", args.dynamic_batch),
        output=optional(args.output),
        register=optional(args.register),
    )
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
