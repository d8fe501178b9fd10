"""The ``pseudo-label`` entry point: average expert models' probabilities (detectors: fuse their
boxes) over unlabeled data.

Example:
    python -m antgo_mlflow.entrypoints.pseudo_label \\
        --models "models:/digits@champion,runs:/0a1b.../onnx_model" \\
        --input unlabeled/annotation.json --threshold 0.9 --weights 2,1 --output pseudo/
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from antgo_mlflow.entrypoints._common import (
    ArgumentParser,
    add_trust_flag,
    check_output,
    optional,
    parse_float,
    parse_int,
    run_main,
    trust_flag,
)
from antgo_mlflow.errors import UsageError

PROG = "antgo-pseudo-label"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description=(
            "Label data with the averaged class probabilities of one or more models "
            "(detectors: their boxes fused by weighted box fusion)."
        ),
        epilog=(
            "example: python -m antgo_mlflow.entrypoints.pseudo_label "
            "--models models:/digits@champion --input data/annotation.json --threshold 0.9"
        ),
    )
    parser.add_argument(
        "--models",
        action="append",
        default=[],
        help="model URIs or files, comma-separated or repeated (runs:/, models:/, .onnx, .pth)",
    )
    parser.add_argument(
        "--input", default="", help="GT JSON (or folder), or TFRecord shards/manifest"
    )
    parser.add_argument("--threshold", default="0.9", help="confidence to accept a label, 0..1")
    parser.add_argument("--weights", default="", help="one weight per model, comma-separated")
    parser.add_argument(
        "--output", default="", help="output folder (default ./output/pseudo-label/<time>)"
    )
    parser.add_argument("--batch-size", default="64", help="images per inference batch")
    parser.add_argument(
        "--config", default="", help="config .py for .pth checkpoints (default: their own)"
    )
    add_trust_flag(parser)
    return parser


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    models = _split(args.models)
    if not models:
        raise UsageError("--models: give at least one model URI or file")
    input_path = optional(args.input)
    if input_path is None:
        raise UsageError("--input: give a GT JSON, a folder with annotation.json, or shards")
    threshold = parse_float("--threshold", args.threshold)
    if threshold is None or not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold!r}")
    weights = None
    if optional(args.weights):
        weights = [parse_float("--weights", w) for w in _split([args.weights])]
    batch = parse_int("--batch-size", args.batch_size, minimum=1) or 64
    trust = trust_flag(args.trust_checkpoint_config)
    output = check_output("--output", optional(args.output), folder=True) or str(
        Path("output") / "pseudo-label" / time.strftime("%Y%m%d-%H%M%S")
    )

    from antgo_mlflow.inference.pseudo_label import check_arguments, log_to_mlflow, pseudo_label

    check_arguments(models, threshold, weights, batch)
    result = pseudo_label(
        models,
        input_path,
        output,
        threshold=threshold,
        weights=weights,
        batch_size=batch,
        config=optional(args.config),
        trust_checkpoint_config=trust,
    )
    run_id = log_to_mlflow(result, threshold, input_path)
    c = result.counts
    spread = (
        f"mean image score {result.mean_image_score:.4f}"
        if result.task == "detection"
        else f"mean entropy {result.mean_entropy:.4f}"
    )
    print(
        f"{PROG}: {c['total']} samples: {c['confident']} confident (>= {threshold:g}), "
        f"{c['uncertain']} uncertain; {spread}",
        file=sys.stderr,
    )
    print(
        f"{PROG}: wrote {result.files['all']}, {result.files['confident'].name}, "
        f"{result.files['uncertain'].name}; MLflow run {run_id}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
