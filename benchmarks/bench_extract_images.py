"""Benchmark extract/images: images/s with 1 worker and all cores vs a plain PIL resize loop.

Makes N small images (200-400 px, half PNG half JPEG) in a temp folder, then times on the same
files: (a) a plain loop `Image.open -> resize -> save` (the baseline), (b) `extract_images(...,
max_size=128, workers=1)`, (c) the same with all usable cores. Prints a table and the ratios.

Run: .venv/bin/python benchmarks/bench_extract_images.py [--num 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from antgo_mlflow.tools._extract_common import default_workers, fit_size
from antgo_mlflow.tools.extract_images import JPEG_QUALITY, extract_images

MAX_SIZE = 128


def make_images(root: Path, n: int, seed: int = 0) -> list[Path]:
    """n images with smooth content (compresses like photos), sizes 200-400 px, PNG and JPEG."""
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:400, 0:400].astype(np.float32)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(200, 401, size=2))
        fx, fy, phase = rng.uniform(0.01, 0.05, size=3)
        base = 127 + 60 * np.sin(xx[:h, :w] * fx + phase) * np.cos(yy[:h, :w] * fy)
        noise = rng.normal(0, 12, size=(h, w, 3))
        arr = np.clip(base[..., None] + noise + rng.integers(-40, 40, size=3), 0, 255)
        sub = root / f"part{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"img_{i:05d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], src: Path, out: Path) -> None:
    """The baseline: what a user would write by hand (same filter and JPEG quality)."""
    for p in paths:
        dst = out / p.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(p) as im:
            size = fit_size(im.width, im.height, MAX_SIZE)
            small = im.resize(size, Image.Resampling.BICUBIC)
            kwargs = {"quality": JPEG_QUALITY} if im.format == "JPEG" else {}
            small.save(dst, **kwargs)


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    os.environ.setdefault("ANTGO_PROGRESS", "0")
    cores = default_workers(None)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        paths = make_images(src, args.num)

        def fresh(name: str) -> Path:
            out = tmp / name
            shutil.rmtree(out, ignore_errors=True)
            return out

        def run_extract(workers: int):
            def go():
                summary = extract_images(
                    src, fresh(f"out{workers}"), max_size=MAX_SIZE, workers=workers
                )
                assert summary.written == args.num, summary.describe()

            return go

        rows = [
            (
                "plain PIL open+resize+save loop",
                1,
                timed(lambda: plain_loop(paths, src, fresh("plain")), args.repeat),
            )
        ]
        rows.append(("extract_images, workers=1", 1, timed(run_extract(1), args.repeat)))
        if cores > 1:
            rows.append(
                (f"extract_images, workers={cores}", cores, timed(run_extract(cores), args.repeat))
            )

        # correctness check on the last output: long side <= MAX_SIZE everywhere
        import json

        samples = json.loads(
            (tmp / f"out{cores if cores > 1 else 1}" / "annotation.json").read_text()
        )
        assert all(max(s["height"], s["width"]) == MAX_SIZE for s in samples)

    base = rows[0][2]
    print(
        f"extract/images benchmark: {args.num} images (200-400 px, half PNG half JPEG), "
        f"--max-size={MAX_SIZE}, best of {args.repeat}, {cores} usable cores"
    )
    print(f"{'method':<36} {'procs':>5} {'seconds':>8} {'images/s':>9} {'vs plain':>9}")
    for name, procs, secs in rows:
        print(f"{name:<36} {procs:>5} {secs:>8.2f} {args.num / secs:>9.0f} {base / secs:>8.2f}x")


if __name__ == "__main__":
    main()
