"""{{name}}: train, test and export (antgo's mvp flags), everything recorded in MLflow.

    python3 ./{{name}}/main.py --exp={{name}} --gpu-id=-1 --process=train
    python3 ./{{name}}/main.py --exp={{name}} --process=test --checkpoint=./output/{{name}}/output/checkpoint/best.pth
    python3 ./{{name}}/main.py --exp={{name}} --process=export --checkpoint=./output/{{name}}/output/checkpoint/best.pth

Checkpoints go to ./output/<exp>/output/checkpoint/ (antgo's place; --root changes ./output/<exp>).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `import {{name}}` from any working directory

from antgo_mlflow.entrypoints import (  # noqa: E402
    ArgumentParser,
    optional,
    parse_bool,
    parse_float,
    parse_int,
    rerun_command,
    run_main,
    split_options,
)


def build_parser():
    p = ArgumentParser(prog=f"{HERE.name}/main.py", description=__doc__.splitlines()[0])
    p.add_argument("--exp", default=HERE.name, help="experiment name (the code folder)")
    p.add_argument("--process", default="train", choices=["train", "test", "export"])
    p.add_argument("--config", default="", help="config .py (default: configs/config.py)")
    p.add_argument("--gpu-id", default="", help="-1 = CPU, 0 = GPU 0, 0,1 = DDP (torchrun)")
    p.add_argument("--checkpoint", default="", help="weights for test/export")
    p.add_argument(
        "--resume-from", default="", help="continue training from a checkpoint ('auto': latest)"
    )
    p.add_argument("--max-epochs", "--epochs", default="", help="override max_epochs")
    p.add_argument("--no-validate", action="store_true", help="skip validation while training")
    p.add_argument(
        "--cfg-options", nargs="*", default=[], help="dotted overrides: optimizer.lr=0.01"
    )
    p.add_argument("--lr", default="", help="override optimizer.lr")
    p.add_argument(
        "--batch-size", default="", help="override data.train_dataloader.samples_per_gpu"
    )
    p.add_argument("--root", default="", help="output root (default ./output/<exp>)")
    p.add_argument("--json", default="", help="--process=test: write the metrics here")
    p.add_argument(
        "--test", default="true", help="--process=train: then test best.pth on data.test"
    )
    p.add_argument("--distributed", action="store_true", help="set by launch.sh (torchrun)")
    p.add_argument("--run-id", default="", help="--process=export: export this MLflow run instead")
    p.add_argument("--opset", default="18", help="--process=export: ONNX opset")
    p.add_argument("--dynamic-batch", default="true", help="--process=export: symbolic batch axis")
    return p


def main(argv):
    import importlib

    importlib.import_module(
        HERE.name
    )  # registers this experiment's models, datasets, hooks, metrics
    from antgo_mlflow.errors import UsageError

    args = build_parser().parse_args(argv)
    config = Path(optional(args.config) or HERE / "configs" / "config.py")
    if not config.is_file() and (HERE / "configs" / config).is_file():
        config = HERE / "configs" / config  # antgo's --config=config.py
    if not config.is_file():
        raise UsageError(f"--config: {config} not found")
    options = split_options("--cfg-options", args.cfg_options)
    lr = parse_float("--lr", args.lr, positive=True)
    batch = parse_int("--batch-size", args.batch_size, minimum=1)
    if lr is not None:
        options.append(f"optimizer.lr={lr!r}")
    if batch is not None:
        options.append(f"data.train_dataloader.samples_per_gpu={batch}")
    options.append(f"exp={args.exp!r}")
    work_dir = Path(optional(args.root) or Path("output") / args.exp) / "output" / "checkpoint"
    checkpoint = optional(args.checkpoint)

    if args.process == "export":
        from antgo_mlflow.entrypoints.export import export_model

        opset = parse_int("--opset", args.opset, minimum=7)
        export_model(
            run_id=optional(args.run_id),
            checkpoint=checkpoint,
            config=None if not optional(args.config) else str(config),
            opset=18 if opset is None else opset,
            dynamic_batch=parse_bool("--dynamic-batch", args.dynamic_batch),
        )
        return 0

    from antgo_mlflow.engine.launch import run_from_config

    if args.process == "test" and not checkpoint:
        best = work_dir / "best.pth"
        if not best.is_file():
            raise UsageError(f"--checkpoint: needed for --process=test (no {best})")
        checkpoint = str(best)
    result = run_from_config(
        config,
        cfg_options=options,
        process=args.process,
        work_dir=work_dir,
        gpu_id=optional(args.gpu_id),
        resume_from=optional(args.resume_from),
        checkpoint=checkpoint,
        max_epochs=parse_int("--max-epochs", args.max_epochs, minimum=1),
        no_validate=args.no_validate,
        json_out=optional(args.json),
        distributed=True if args.distributed else None,
    )
    if args.process == "test":
        print(" ".join(f"{k}={v:.4f}" for k, v in sorted(result.items())))
        return 0
    print(f"MLflow run {result}; checkpoints in {work_dir}")
    best = work_dir / "best.pth"
    if parse_bool("--test", args.test) and best.is_file():
        metrics = run_from_config(
            config,
            cfg_options=options,
            process="test",
            work_dir=work_dir,
            gpu_id=optional(args.gpu_id),
            checkpoint=str(best),
        )
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        print(f"test ({best.name}): {shown}")
    me = [sys.orig_argv[0], sys.argv[0], f"--exp={args.exp}", "--process=export"]
    export = rerun_command(
        result, "export", [("exp", args.exp), ("run_id", result)], [*me, f"--run-id={result}"]
    )
    print(f"export: {export}")
    return 0


if __name__ == "__main__":
    run_main(f"{HERE.name}/main.py", main)
