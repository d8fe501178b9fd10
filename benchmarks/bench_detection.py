"""Benchmark detection: our wrapper's training speed, the COCO evaluators, ONNX Runtime inference.

1. Training images/s of the shapes recipe's detector (FCOS on TinyFPN, batch 8, 128x128) through
   ``model.train_step`` with the engine's OptimWrapper, vs the same torchvision model driven by a
   hand-written loop (``detector(images, targets)``, backward, clip, step). Both get the same
   pre-collated batches from the shapes train split (data loading excluded); rounds interleave
   the two and the medians are compared: ratio = hand-written / ours (goal <= 1.05).
2. Evaluation time of ``DetectionEval``'s backends (faster-coco-eval, pycocotools, torchmetrics)
   on the same predictions of the trained-for-a-moment model over the shapes test split (100
   detections per image), and their mAP (they must agree).
3. Inference images/s of the exported ONNX graph (NMS inside, dynamic batch) in ONNX Runtime vs
   the PyTorch model's ``forward``, batch 32.

Run: .venv/bin/python benchmarks/bench_detection.py [--quick] [--rounds 5] [--iters 20]
Quote figures only when measured under ``flock /work/wt/cpu.lock`` with ``uptime``'s load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def recipe():
    from antgo_mlflow.config import Config

    return Config.fromfile(str(REPO / "recipes" / "shapes" / "config.py"))


def batches(cfg, split: str, size: int, count: int) -> list[dict]:
    """``count`` collated batches of ``size`` from ``data.<split>`` (the recipe's pipeline)."""
    from antgo_mlflow.data.collate import DefaultCollate
    from antgo_mlflow.registry import DATASETS

    ds = DATASETS.build(cfg.data[split])
    collate = DefaultCollate()
    n = min(len(ds), size * count)
    return [collate([ds[i] for i in range(k, min(k + size, n))]) for k in range(0, n, size)]


def build_model(cfg):
    from antgo_mlflow.registry import MODELS

    torch.manual_seed(0)
    return MODELS.build(cfg.model, path="model")


def bench_training(cfg, data, rounds: int, iters: int) -> dict:
    from antgo_mlflow.engine.optim_wrapper import OptimWrapper

    ours_model, hand_model = build_model(cfg), build_model(cfg)
    ours_model.train()
    hand_model.train()
    ours = OptimWrapper(
        torch.optim.AdamW(ours_model.parameters(), lr=1e-3), clip_grad=dict(max_norm=10.0)
    )
    hand_params = list(hand_model.parameters())
    hand_opt = torch.optim.AdamW(hand_params, lr=1e-3)
    hand_targets = [ours_model.targets_from_batch(b, b["image"]) for b in data]  # prepared once

    def run_ours(k0: int) -> float:
        start = time.perf_counter()
        for k in range(iters):
            ours_model.train_step(data[(k0 + k) % len(data)], ours)
        return iters * data[0]["image"].shape[0] / (time.perf_counter() - start)

    def run_hand(k0: int) -> float:
        det = hand_model.detector
        start = time.perf_counter()
        for k in range(iters):
            i = (k0 + k) % len(data)
            losses = det(data[i]["image"], hand_targets[i])
            loss = sum(losses.values())
            hand_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hand_params, 10.0)
            hand_opt.step()
        return iters * data[0]["image"].shape[0] / (time.perf_counter() - start)

    run_ours(0), run_hand(0)  # warm-up (lazy init, allocator)
    ours_rates, hand_rates = [], []
    for r in range(rounds):
        order = (run_ours, run_hand) if r % 2 == 0 else (run_hand, run_ours)
        for fn in order:
            (ours_rates if fn is run_ours else hand_rates).append(fn(r * iters))
    ours_med, hand_med = statistics.median(ours_rates), statistics.median(hand_rates)
    return {"ours": ours_med, "hand": hand_med, "ratio": hand_med / ours_med, "model": ours_model}


def bench_evaluators(model, data) -> list[tuple[str, float, float]]:
    from antgo_mlflow.engine.detection_metrics import BACKENDS
    from antgo_mlflow.registry import METRICS

    model.eval()
    with torch.inference_mode():
        preds = [model.val_step(b) for b in data]
    rows = []
    for backend in BACKENDS:
        metric = METRICS.build(dict(type="DetectionEval", backend=backend))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            metric.reset()
            for p, b in zip(preds, data):
                metric.process(p, b)
            result = metric.compute()
            times.append(time.perf_counter() - start)
        rows.append((backend, min(times), result["mAP"]))
    return rows


def bench_onnx(model, image: torch.Tensor, rounds: int) -> dict:
    import onnxruntime as ort

    from antgo_mlflow.models.detectors.base import detection_difference

    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detector.onnx"
        start = time.perf_counter()
        export_onnx(model, image[:1], path)
        export_s = time.perf_counter() - start
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {"image": image.numpy()}
        session.run(None, feed)
        with torch.inference_mode():
            reference = model(image)
        got = session.run(None, feed)[0]
        diff = detection_difference(reference, got, float(model.detector.score_thresh))
        ort_times, torch_times = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            session.run(None, feed)
            ort_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            with torch.inference_mode():
                model(image)
            torch_times.append(time.perf_counter() - t)
    n = image.shape[0]
    return {
        "ort": n / statistics.median(ort_times),
        "torch": n / statistics.median(torch_times),
        "export_s": export_s,
        "max_diff": diff,
    }


def export_onnx(model, example: torch.Tensor, path: Path) -> None:
    """The deployment graph with a dynamic batch axis (dynamo exporter)."""
    import contextlib
    import io
    import warnings

    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            input_names=["image"],
            output_names=[model.OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=18,
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and images (a smoke run)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20, help="training iterations per round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.iters = 2, 5
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("ANTGO_PROGRESS", "0")
    cfg = recipe()
    train_data = batches(cfg, "train", 8, 10 if args.quick else 40)
    test_data = batches(cfg, "test", 32, 2 if args.quick else 10)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    t = bench_training(cfg, train_data, args.rounds, args.iters)
    print("\n1. training (FCOS + TinyFPN, batch 8, 128x128), median of rounds")
    print(f"   {'loop':<40} {'img/s':>8}")
    print(f"   {'hand-written torchvision loop':<40} {t['hand']:8.1f}")
    print(f"   {'model.train_step + OptimWrapper (ours)':<40} {t['ours']:8.1f}")
    print(f"   ratio hand / ours = {t['ratio']:.3f} (goal <= 1.05)")

    model = t["model"]
    rows = bench_evaluators(model, test_data)
    fastest = min(r[1] for r in rows)
    images = sum(b["image"].shape[0] for b in test_data)
    print(f"\n2. evaluation of {images} images (100 detections each), best of 3")
    print(f"   {'backend':<20} {'seconds':>8} {'x fastest':>10} {'mAP':>8}")
    for name, seconds, m in rows:
        print(f"   {name:<20} {seconds:8.3f} {seconds / fastest:10.2f} {m:8.4f}")

    image = torch.cat([b["image"] for b in test_data])[:32]
    o = bench_onnx(model, image, args.rounds)
    print(
        f"\n3. inference, batch {image.shape[0]} (export {o['export_s']:.1f} s, max |ORT - torch| {o['max_diff']:.2e})"
    )
    print(f"   {'runtime':<20} {'img/s':>8}")
    print(f"   {'PyTorch forward':<20} {o['torch']:8.1f}")
    print(f"   {'ONNX Runtime':<20} {o['ort']:8.1f}")
    print(f"   ratio ORT / PyTorch = {o['ort'] / o['torch']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
