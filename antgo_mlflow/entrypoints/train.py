"""The ``train`` entry point: train a config, then evaluate its best checkpoint on the test split.

``mlflow run . -e train`` runs this with the MLproject parameters; with no parameters it trains
the default recipe (``recipes/digits/config.py``, the embedded digits) on the CPU.

Example:
    python -m antgo_mlflow.entrypoints.train --config recipes/digits/config.py --epochs 3 \\
        --cfg-options "optimizer.lr=0.05 data.train_dataloader.samples_per_gpu=32"
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from antgo_mlflow.entrypoints._common import (
    ArgumentParser,
    optional,
    parse_bool,
    parse_float,
    parse_int,
    rerun_command,
    run_main,
    split_options,
)
from antgo_mlflow.errors import UsageError

PROG = "antgo-train"


def default_config() -> Path:
    """The default recipe: ``recipes/digits/config.py`` (from a checkout or the installed package)."""
    from importlib.resources import files

    return Path(str(files("antgo_mlflow.recipes") / "digits" / "config.py"))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Train a config and test its best checkpoint; everything is logged to MLflow.",
        epilog="example: python -m antgo_mlflow.entrypoints.train --epochs 3 --lr 0.05",
    )
    parser.add_argument("--config", default="", help="config .py (default: the digits recipe)")
    parser.add_argument("--epochs", default="", help="max_epochs override ('' = the config's)")
    parser.add_argument("--lr", default="", help="optimizer.lr override ('' = the config's)")
    parser.add_argument(
        "--batch-size", default="", help="data.train_dataloader.samples_per_gpu override"
    )
    parser.add_argument(
        "--cfg-options",
        nargs="*",
        default=[],
        help="dotted overrides, e.g. 'optimizer.momentum=0.8 model.backbone.depth=16'",
    )
    parser.add_argument(
        "--work-dir", default="", help="checkpoints folder (default ./output/<exp>/<time>)"
    )
    parser.add_argument("--gpu-id", default="", help="-1 = CPU, 0 = first GPU, 0,1 = DDP")
    parser.add_argument("--resume-from", default="", help="checkpoint to continue (or 'auto')")
    parser.add_argument("--test", default="true", help="evaluate the best checkpoint on data.test")
    return parser


def overrides_from(args) -> list[str]:
    """The config overrides the parameters ask for (validated)."""
    options = split_options("--cfg-options", args.cfg_options)
    epochs = parse_int("--epochs", args.epochs, minimum=1)
    lr = parse_float("--lr", args.lr, positive=True)
    batch = parse_int("--batch-size", args.batch_size, minimum=1)
    if epochs is not None:
        options.append(f"max_epochs={epochs}")
    if lr is not None:
        options.append(f"optimizer.lr={lr!r}")
    if batch is not None:
        options.append(f"data.train_dataloader.samples_per_gpu={batch}")
    return options


def resolve_config(value: str | None) -> Path:
    if value is None:
        return default_config()
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(f"--config: {value} not found")
    if path.suffix != ".py":
        raise UsageError(f"--config: {value} is not a .py config")
    return path


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    config = resolve_config(optional(args.config))
    options = overrides_from(args)
    do_test = parse_bool("--test", args.test)
    gpu_id = optional(args.gpu_id)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work_dir = optional(args.work_dir) or str(Path("output") / config.parent.name / stamp)

    started = time.perf_counter()
    from antgo_mlflow.engine.launch import run_from_config  # torch, mlflow: the slow imports

    t0 = time.perf_counter()
    imports = t0 - started
    run_id = run_from_config(
        config,
        cfg_options=options,
        process="train",
        work_dir=work_dir,
        gpu_id=gpu_id,
        resume_from=optional(args.resume_from),
    )
    trained = time.perf_counter() - t0
    print(f"{PROG}: trained in {trained:.1f} s; MLflow run {run_id}", file=sys.stderr, flush=True)
    if not do_test:
        return 0
    best = Path(work_dir) / "best.pth"
    checkpoint = best if best.is_file() else Path(work_dir) / "latest.pth"
    if not checkpoint.is_file():
        print(f"{PROG}: no checkpoint in {work_dir}; skipping the test", file=sys.stderr)
        return 0
    metrics = run_from_config(
        config,
        cfg_options=options,
        process="test",
        work_dir=work_dir,
        gpu_id=gpu_id,
        checkpoint=str(checkpoint),
    )
    tested = time.perf_counter() - t0 - trained
    shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    print(f"{PROG}: test ({checkpoint.name}): {shown}", file=sys.stderr, flush=True)
    print(
        f"{PROG}: time: imports {imports:.1f} s, config + data + training + logging {trained:.1f} s, "
        f"test {tested:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    export = rerun_command(
        run_id,
        "export",
        [("run_id", run_id)],
        [*sys.orig_argv[:1], "-m", "antgo_mlflow.entrypoints.export", "--run-id", run_id],
    )
    print(f"{PROG}: export: {export}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_main(PROG, main)
