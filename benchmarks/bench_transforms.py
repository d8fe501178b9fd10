"""Per-sample cost of our sample-dict transforms next to calling torchvision directly.

Run: ``.venv/bin/python benchmarks/bench_transforms.py [--n 3000]``

Rows:
  * seed classification pipeline (Meta, INumpyToPIL, RandomHorizontalFlip, RandomCrop(pad 4),
    ToTensor, Normalize) on 32x32 images, against the same ops as a torchvision v1 and a v2
    Compose on a PIL image (the baseline antgo users had);
  * a detection pipeline (flip, crop, resize on a 256x256 numpy image with 8 boxes and 8x17 joints),
    against torchvision v2 on pre-built tv_tensors (no dict bookkeeping, no box filtering).
Times are CPU microseconds per sample, one thread. The ratio column is ours / baseline (lower is
better; 1.0 = same cost).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import PIL.Image
import torch
import torchvision.transforms as T
from torchvision import tv_tensors as tvt
from torchvision.transforms import v2

from antgo_mlflow.data.transforms import build_pipeline

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def per_call_us(fn, n: int, repeats: int = 5) -> float:
    """CPU microseconds per call: best of ``repeats`` rounds of ``n // repeats`` calls.

    Process CPU time, not wall time: this machine is shared, and wall time swings 2-4x with the
    load of other processes while CPU time of a single-threaded loop stays put.
    """
    for _ in range(min(50, n)):
        fn()
    per_round = max(n // repeats, 1)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(per_round):
            fn()
        best = min(best, (time.process_time() - start) / per_round * 1e6)
    return best


def seed_rows(n: int):
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ours = build_pipeline(
        [
            dict(type="Meta", keys=["image_file", "tag"]),
            dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
            dict(type="RandomHorizontalFlip", keys=["image"]),
            dict(type="RandomCrop", size=(32, 32), padding=4, fill=128, keys=["image"]),
            dict(type="ToTensor", keys=["image"]),
            dict(type="Normalize", mean=MEAN, std=STD, keys=["image"]),
        ]
    )
    v1 = T.Compose(
        [
            T.RandomHorizontalFlip(),
            T.RandomCrop((32, 32), padding=4, fill=128),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    v2c = v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomCrop((32, 32), padding=4, fill=128),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )
    t_ours = per_call_us(lambda: ours({"image": img, "image_file": "a.png", "tag": "t"}), n)
    t_v1 = per_call_us(lambda: v1(PIL.Image.fromarray(img)), n)
    t_v2 = per_call_us(lambda: v2c(PIL.Image.fromarray(img)), n)
    return [
        ("seed pipeline 32x32, ours", t_ours, t_ours / t_v1),
        ("  torchvision v1 Compose (baseline)", t_v1, 1.0),
        ("  torchvision v2 Compose", t_v2, t_v2 / t_v1),
    ]


def detection_rows(n: int):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    xy = rng.uniform(0, 200, (8, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(10, 56, (8, 2)).astype(np.float32)], axis=1)
    joints = rng.uniform(0, 256, (8, 17, 2)).astype(np.float32)
    ours = build_pipeline(
        [
            dict(type="RandomHorizontalFlip"),
            dict(type="RandomCrop", size=224, padding=16),
            dict(type="Resize", size=(160, 160)),
        ]
    )

    def run_ours():
        return ours(
            {
                "image": img,
                "bboxes": boxes,
                "labels": np.arange(8),
                "joints2d": joints,
                "joints_vis": np.ones((8, 17)),
            }
        )

    base = v2.Compose(
        [v2.RandomHorizontalFlip(), v2.RandomCrop(224, padding=16), v2.Resize((160, 160))]
    )
    timg = tvt.Image(torch.from_numpy(img).permute(2, 0, 1))
    tboxes = tvt.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(256, 256))
    tpts = tvt.KeyPoints(torch.from_numpy(joints.reshape(-1, 2)), canvas_size=(256, 256))
    t_ours = per_call_us(run_ours, n)
    t_base = per_call_us(lambda: base({"image": timg, "boxes": tboxes, "points": tpts}), n)
    return [
        ("flip+crop+resize 256px, 8 boxes+joints, ours", t_ours, t_ours / t_base),
        ("  torchvision v2 on tv_tensors (baseline)", t_base, 1.0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="calls per row")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker's view
    rows = seed_rows(args.n) + detection_rows(max(args.n // 10, 50))
    print(f"{'case':48s} {'us/sample':>10s} {'ratio':>7s}")
    for name, us, ratio in rows:
        print(f"{name:48s} {us:10.1f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
