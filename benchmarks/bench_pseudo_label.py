"""pseudo-label inference throughput on CPU: ONNX Runtime vs PyTorch, same model, same images.

Measures (1) the model alone on preprocessed batches and (2) the whole `pseudo_label()` job (read
GT + images, preprocess, infer, average, write), each for the PyTorch checkpoint and its ONNX
export. The model is the default recipe's WideResNet-10-1 (random weights: speed does not depend
on them); the data are the embedded digits. Prints a table and the ONNX/PyTorch ratio.

    python benchmarks/bench_pseudo_label.py [--repeat 3] [--batch 64 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _model():
    import torch

    from antgo_mlflow.registry import MODELS

    torch.manual_seed(0)
    cfg = dict(
        type="ImageClassifier",
        backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1, bn_momentum=0.1),
        head=dict(type="ClsHead"),
    )
    return MODELS.build(cfg).eval(), cfg


def _rounds(fn_a, fn_b, repeat: int) -> tuple[float, float, float]:
    """Alternate a and b ``repeat`` times (both see the same machine load); return the best time
    of each and the median of the per-round b-over-a speed ratios."""
    ta, tb, ratios = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        fn_a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        fn_b()
        tb.append(time.perf_counter() - t)
        ratios.append(ta[-1] / tb[-1])
    return min(ta), min(tb), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    os.environ.setdefault("ANTGO_PROGRESS", "0")

    import onnxruntime as ort
    import torch

    from antgo_mlflow.data.sources.digits import digits_arrays, prepare_digits
    from antgo_mlflow.export.onnx import export_onnx
    from antgo_mlflow.inference import Preprocess
    from antgo_mlflow.inference.pseudo_label import pseudo_label

    model, cfg = _model()
    images, _ = digits_arrays()
    batch_all = Preprocess()(list(images))
    n = len(batch_all)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_path = export_onnx(model, tmp / "m.onnx").path
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        for bs in args.batch:

            def run_torch(bs=bs):
                with torch.inference_mode():
                    for i in range(0, n, bs):
                        model.predict(torch.from_numpy(batch_all[i : i + bs]))

            def run_ort(bs=bs):
                for i in range(0, n, bs):
                    session.run(None, {"image": batch_all[i : i + bs]})

            run_torch(), run_ort()  # warm-up
            t_torch, t_ort, ratio = _rounds(run_torch, run_ort, args.repeat)
            rows.append((f"model only, batch {bs}", n / t_torch, n / t_ort, ratio))

        # the whole job on the test split's GT (reads PNGs, preprocesses, writes JSON)
        ckpt = tmp / "m.pth"  # the config recorded as plain data, as the Runner writes it
        torch.save(
            {"meta": {"config_dict": {"model": cfg}}, "state_dict": model.state_dict()}, ckpt
        )
        gt = prepare_digits(tmp / "cache").splits["test"].gt
        count = len(__import__("json").loads(gt.read_text()))
        runs = iter(range(10**6))

        def job(uri: str, label: str):
            return lambda: pseudo_label(
                [uri], gt, tmp / f"out-{label}-{next(runs)}", threshold=0.9, batch_size=64
            )

        t_torch, t_ort, ratio = _rounds(
            job(str(ckpt), "torch"), job(str(onnx_path), "onnx"), args.repeat
        )
        rows.append((f"pseudo_label() job, {count} images", count / t_torch, count / t_ort, ratio))

    print(
        f"pseudo-label throughput on CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}), images/s, best of {args.repeat}"
    )
    print("(best time of each; ratio = median of per-round ratios, the two alternate each round)")
    print(f"{'measurement':<34}{'PyTorch':>10}{'ONNX RT':>10}{'ONNX/PyTorch':>14}")
    for name, a, b, ratio in rows:
        print(f"{name:<34}{a:>10.0f}{b:>10.0f}{ratio:>13.2f}x")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
