"""Benchmark the Runner: img/s of a hand-written PyTorch loop vs the Runner with MLflow logging.

The same small CNN and the same in-memory data are trained by (a) a ~20-line loop (the baseline),
(b) the Runner with the MLflow hook logging every 10 iterations into a SQLite store in a temp
folder, and (c) the Runner without MLflow (to isolate the logging cost). Rounds interleave the
three (in rotating order) and the medians over rounds are reported (first epoch of each run
excluded: lazy init). End-to-end wall time (setup, checkpoints, run bookkeeping) is shown separately.

Both wall-clock img/s and images per process-CPU-second are reported (CPU time includes
MLflow's background writer thread and is far less sensitive to other load on a shared machine;
use --threads 1 for the steadiest CPU figures).

Run: .venv/bin/python benchmarks/bench_train.py [--epochs 4] [--samples 2048] [--batch 64]
     [--rounds 3] [--device cpu|cuda] [--amp] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from antgo_mlflow.config import Config
from antgo_mlflow.registry import DATASETS, MODELS


@MODELS.register_module(name="BenchCNN", force=True)
class BenchCNN(nn.Module):
    """conv16-pool-conv32-pool-fc: a small CNN for 32x32 RGB, 10 classes."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.fc = nn.Linear(32 * 8 * 8, num_classes)

    def forward(self, image, label=None, **kwargs):
        logits = self.fc(self.features(image).flatten(1))
        if label is None:
            return logits
        return {"loss_cls": nn.functional.cross_entropy(logits, label)}

    def predict(self, image):
        return torch.softmax(self.forward(image), 1)


@DATASETS.register_module(name="BenchData", force=True)
class BenchData(Dataset):
    """Deterministic random 3x32x32 images and labels, as sample dicts."""

    def __init__(self, samples: int = 2048, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(samples, 3, 32, 32, generator=g)
        self.labels = torch.randint(0, 10, (samples,), generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i]}


def hand_loop(args) -> list[tuple[float, float]]:
    """The baseline: a plain loop; returns (img/s, img per process-CPU-second) per epoch."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = BenchCNN().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(BenchData(args.samples), batch_size=args.batch, shuffle=True)
    scaler = torch.amp.GradScaler("cuda") if args.amp else None
    rates = []
    for _epoch in range(args.epochs):
        start, cpu, seen = time.perf_counter(), time.process_time(), 0
        for batch in loader:
            image, label = batch["image"].to(device), batch["label"].to(device)
            with torch.autocast("cuda") if args.amp else contextlib.nullcontext():
                loss = model(image, label=label)["loss_cls"]
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward(), scaler.step(opt), scaler.update()
            else:
                loss.backward(), opt.step()
            seen += image.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(
            (seen / (time.perf_counter() - start), seen / (time.process_time() - cpu + 1e-9))
        )
    return rates


def runner_loop(args, mlflow_on: bool, tmp: Path, tag: str):
    """The Runner; returns (img/s, img per process-CPU-second) per epoch, end-to-end seconds and
    the MLflow hook's seconds during the epochs (step metrics, epoch-end flushes; no setup)."""
    from antgo_mlflow.engine.hooks.base import Hook
    from antgo_mlflow.engine.hooks.mlflow_logger import MlflowLoggerHook
    from antgo_mlflow.engine.runner import Runner

    hooks = [dict(type="MlflowLoggerHook", log_model=False)] if mlflow_on else []
    cfg = Config(
        dict(
            model=dict(type="BenchCNN"),
            data=dict(
                train=dict(type="BenchData", samples=args.samples),
                train_dataloader=dict(samples_per_gpu=args.batch, workers_per_gpu=0, shuffle=True),
            ),
            optimizer=dict(type="SGD", lr=0.01, momentum=0.9),
            optimizer_config=dict(grad_clip=None, amp=bool(args.amp)),
            lr_config=dict(policy="Fixed"),
            log_config=dict(interval=10, hooks=hooks, mlflow=mlflow_on),
            checkpoint_config=dict(interval=0, save_latest=False),
            max_epochs=args.epochs,
            seed=0,
            experiment_name="bench-train",
        )
    )
    start = time.perf_counter()
    runner = Runner(cfg, work_dir=tmp / tag, gpu_id=0 if args.device == "cuda" else -1)
    rates = []

    class RateHook(Hook):  # the Runner's own throughput, and CPU time incl. MLflow's threads
        priority = "LOWEST"

        def before_train_epoch(self, r):
            self.cpu = time.process_time()

        def after_train_epoch(self, r):
            seen = r.iters_per_epoch * args.batch
            cpu = time.process_time() - self.cpu + 1e-9
            rates.append((r.epoch_log["throughput_img_s"], seen / cpu))

    runner.register_hook(RateHook())
    runner.train()
    total = time.perf_counter() - start
    hook = runner.get_hook(MlflowLoggerHook)
    return rates, total, (hook.timing["epochs"] if hook else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="autocast + GradScaler (CUDA only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    os.environ["ANTGO_PROGRESS"] = "0"
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        from mlflow import MlflowClient

        MlflowClient().search_experiments()  # create the store's tables outside the timings
        names = ("hand", "runner+mlflow", "runner")
        wall: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        e2e: dict[str, list[float]] = {"runner+mlflow": [], "runner": []}
        hook_seconds = []
        # Warm-up (imports, allocator, lazy modules) outside the measured rounds.
        hand_loop(argparse.Namespace(**{**vars(args), "epochs": 1}))
        for r in range(args.rounds):
            for name in names[r % 3 :] + names[: r % 3]:  # rotate the order: no position bias
                if name == "hand":
                    rates = hand_loop(args)
                else:
                    rates, total, secs = runner_loop(
                        args, name == "runner+mlflow", tmp, f"{name}{r}"
                    )
                    e2e[name].append(total)
                    if name == "runner+mlflow":
                        hook_seconds.append(secs)
                wall[name].append(statistics.median(x[0] for x in rates[1:]))
                cpu[name].append(statistics.median(x[1] for x in rates[1:]))
    print(
        f"device={args.device} samples={args.samples} batch={args.batch} epochs={args.epochs} "
        f"rounds={args.rounds} amp={args.amp} threads={torch.get_num_threads()} "
        "(first epoch of each run excluded)"
    )

    def ratio(table, a, b):
        return statistics.median(x / y for x, y in zip(table[a], table[b]))

    print(f"{'loop':<15}{'img/s':>9}{'vs hand':>9}{'img/CPU-s':>11}{'vs hand':>9}")
    for name in names:
        print(
            f"{name:<15}{statistics.median(wall[name]):>9.0f}{ratio(wall, name, 'hand'):>9.3f}"
            f"{statistics.median(cpu[name]):>11.0f}{ratio(cpu, name, 'hand'):>9.3f}"
        )
    loop_seconds = args.samples * args.epochs / statistics.median(wall["runner+mlflow"])
    hook = statistics.median(hook_seconds)
    print("medians over rounds; goal: Runner (+MLflow) / hand >= 0.97, MLflow cost <= 1%")
    print(
        f"Runner+MLflow / hand: {ratio(wall, 'runner+mlflow', 'hand'):.3f} wall, "
        f"{ratio(cpu, 'runner+mlflow', 'hand'):.3f} CPU"
    )
    print(
        f"MLflow logging cost: {100 * (1 - ratio(wall, 'runner+mlflow', 'runner')):+.2f}% wall, "
        f"{100 * (1 - ratio(cpu, 'runner+mlflow', 'runner')):+.2f}% CPU (background writer "
        f"included); in the hook during epochs: {hook:.3f}s = {100 * hook / loop_seconds:.2f}% "
        "of the training loop"
    )
    print(
        f"end-to-end wall per run: runner+mlflow {statistics.median(e2e['runner+mlflow']):.2f}s, "
        f"runner {statistics.median(e2e['runner']):.2f}s (setup, run bookkeeping included)"
    )


if __name__ == "__main__":
    main()
