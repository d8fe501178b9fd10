"""The ``hpo`` entry point: a hyper-parameter study on a config (``mlflow run . -e hpo``).

Under ``mlflow run`` the run MLflow made is the study's run and each trial is a child run of it;
with no parameters it searches the default recipe's ``hpo`` space (8 trials).

Example:
    python -m antgo_mlflow.entrypoints.hpo --trials 8 --workers 2 --sampler tpe --pruner median
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from antgo_mlflow.entrypoints._common import (
    ArgumentParser,
    optional,
    parse_float,
    parse_int,
    run_main,
    split_options,
)
from antgo_mlflow.entrypoints.train import resolve_config

PROG = "antgo-hpo"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Search the config's hpo space with Optuna; the study and its trials are "
        "MLflow runs.",
        epilog="example: python -m antgo_mlflow.entrypoints.hpo --trials 8 --workers 2",
    )
    parser.add_argument("--config", default="", help="config .py (default: the digits recipe)")
    parser.add_argument("--trials", default="8", help="number of trials")
    parser.add_argument("--workers", default="1", help="worker processes sharing the study")
    parser.add_argument("--storage", default="", help="Optuna storage URL or journal file")
    parser.add_argument("--study", default="", help="study name (an existing one continues)")
    parser.add_argument("--timeout", default="", help="start no trial after this many seconds")
    parser.add_argument("--sampler", default="", help="tpe | random | cmaes | grid")
    parser.add_argument("--pruner", default="", help="median | hyperband | none")
    parser.add_argument("--seed", default="", help="sampler seed")
    parser.add_argument("--cfg-options", nargs="*", default=[], help="base config overrides")
    parser.add_argument("--work-dir", default="", help="trial folders (default output/hpo/<study>)")
    parser.add_argument("--gpu-id", default="", help="-1 = CPU, 0 = first GPU")
    return parser


def main(argv: Sequence[str]) -> int:
    from antgo_mlflow.hpo.study import HpoOptions, run_study

    args = build_parser().parse_args(argv)
    trials = parse_int("--trials", args.trials)
    workers = parse_int("--workers", args.workers)
    options = HpoOptions(
        config=str(resolve_config(optional(args.config))),
        trials=8 if trials is None else trials,
        workers=1 if workers is None else workers,
        storage=optional(args.storage),
        study=optional(args.study),
        timeout=parse_float("--timeout", args.timeout),
        sampler=optional(args.sampler),
        pruner=optional(args.pruner),
        seed=parse_int("--seed", args.seed),
        cfg_options=split_options("--cfg-options", args.cfg_options),
        work_dir=optional(args.work_dir),
        gpu_id=optional(args.gpu_id),
    )
    summary = run_study(options)
    best = summary["best"]
    if best:
        print(
            f"{PROG}: best trial {best['number']}: {best['value']:.6g} {best['params']} "
            f"(run {best['mlflow_run_id']}); register it: antgo add expert --project=<project> "
            f"--exp=<exp> --id={best['mlflow_run_id']}",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_main(PROG, main)
