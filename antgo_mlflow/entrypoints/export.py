"""The ``export`` entry point: a trained run (or checkpoint) -> ONNX, checked with ONNX Runtime, logged.

A thin CLI over :func:`antgo_mlflow.export.workflow.export_model` (see there for what it does).
The model is rebuilt from the config *data* the checkpoint records, or from ``--config``; an old
checkpoint that records its config as Python text needs ``--config`` or
``--trust-checkpoint-config`` (that text is code).

Example:
    python -m antgo_mlflow.entrypoints.export --run-id 0a1b2c... --opset 18
    python -m antgo_mlflow.entrypoints.export --checkpoint output/digits/best.pth --dynamic-batch false
"""

from __future__ import annotations

from collections.abc import Sequence

from antgo_mlflow.entrypoints._common import (
    ArgumentParser,
    add_trust_flag,
    check_output,
    optional,
    parse_bool,
    parse_int,
    run_main,
    trust_flag,
)
from antgo_mlflow.export.workflow import PROG, export_model

__all__ = ["PROG", "build_parser", "export_model", "main"]


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
    add_trust_flag(parser)
    parser.add_argument("--opset", default="18", help="ONNX opset version (default 18)")
    parser.add_argument("--dynamic-batch", default="true", help="symbolic batch axis (true/false)")
    parser.add_argument("--output", default="", help="the .onnx file to write")
    parser.add_argument("--register", default="", help="also register the model under this name")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    opset = parse_int("--opset", args.opset, minimum=7)
    export_model(
        run_id=optional(args.run_id),
        checkpoint=optional(args.checkpoint),
        config=optional(args.config),
        opset=18 if opset is None else opset,
        dynamic_batch=parse_bool("--dynamic-batch", args.dynamic_batch),
        output=check_output("--output", optional(args.output)),  # before the export, not after
        register=optional(args.register),
        trust_checkpoint_config=trust_flag(args.trust_checkpoint_config),
    )
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
