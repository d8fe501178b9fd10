"""The ``active-learning`` entry point: rank an unlabelled pool and select the next samples to label.

The same job as ``antgo active rank`` (``antgo_mlflow.active.rank``), with MLproject's string
parameters; under ``mlflow run`` it logs into the project run.

Example:
    mlflow run . -e active-learning --env-manager local -P src=pool/annotation.json \\
        -P models=runs:/<run id> -P budget=100 -P strategy=hybrid -P tgt=round1
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from antgo_mlflow.entrypoints._common import (
    ArgumentParser,
    add_trust_flag,
    optional,
    parse_float,
    parse_int,
    run_main,
    split_values,
    trust_flag,
)
from antgo_mlflow.errors import UsageError

PROG = "antgo-active-learning"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Rank an unlabelled pool with one or more models; write selected.json, "
        "rest.json and scores.csv.",
        epilog=(
            "example: python -m antgo_mlflow.entrypoints.active_learning --src pool/annotation.json "
            "--models runs:/<run id> --budget 100 --strategy hybrid --tgt round1"
        ),
    )
    parser.add_argument("--src", default="", help="unlabelled GT JSON (or folder), or shards")
    parser.add_argument(
        "--models",
        action="append",
        default=[],
        help="model URIs or files, comma-separated or repeated (default: the project's)",
    )
    parser.add_argument("--budget", default="", help="how many samples to select")
    parser.add_argument("--strategy", default="", help="acquisition strategy (default hybrid)")
    parser.add_argument(
        "--tgt", default="", help="output folder (default output/active-rank/<time>)"
    )
    parser.add_argument("--labeled", default="", help="labelled GT (ActiveLab / k-center term)")
    parser.add_argument("--project", default="", help="project: default settings and experiment")
    parser.add_argument("--pool-factor", default="", help="hybrid: candidates = factor x budget")
    parser.add_argument("--seed", default="", help="seed (default 0)")
    parser.add_argument("--batch-size", default="", help="images per inference batch (64)")
    parser.add_argument("--config", default="", help="config for .pth checkpoints without one")
    add_trust_flag(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    src = optional(args.src)
    if src is None:
        raise UsageError("--src: give the unlabelled pool (GT JSON, its folder, or shards)")
    budget = parse_int("--budget", args.budget)
    pool_factor = parse_float("--pool-factor", args.pool_factor)

    import time
    from pathlib import Path

    from antgo_mlflow.active.rank import rank

    tgt = optional(args.tgt) or str(Path("output") / "active-rank" / time.strftime("%Y%m%d-%H%M%S"))
    result = rank(
        src,
        tgt,
        models=split_values(args.models),
        budget=budget,
        strategy=optional(args.strategy),
        labeled=optional(args.labeled),
        project=optional(args.project),
        pool_factor=pool_factor,
        seed=parse_int("--seed", args.seed),
        batch_size=parse_int("--batch-size", args.batch_size, minimum=1),
        config=optional(args.config),
        trust_checkpoint_config=trust_flag(args.trust_checkpoint_config),
    )
    print(
        f"{PROG}: {result.options.strategy['type']}: selected {result.budget} of "
        f"{result.pool_size} samples; wrote {result.files['selected.json']}, rest.json, "
        f"scores.csv; MLflow run {result.run_id}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
