"""Benchmark extract/images: images/s with 1 worker and all cores vs a plain PIL resize loop.

Makes N small images (200-400 px, half PNG half JPEG) in a temp folder, then times on the same
files: (a) a plain loop `Image.open -> resize -> save` (the baseline), (b) `extract_images(...,
max_size=128, workers=1)`, (c) the same with all usable cores. Prints a table and the ratios.

Run: .venv/bin/python benchmarks/bench_extract_images.py [--num 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
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


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (pool workers): robust to a busy machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_seconds() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many interleaved runs")
    args = parser.parse_args()
    os.environ.setdefault("ANTGO_PROGRESS", "0")
    cores = default_workers(None)
    n = args.num

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        paths = make_images(src, n)

        def fresh(name: str) -> Path:
            out = tmp / name
            shutil.rmtree(out, ignore_errors=True)
            return out

        def run_extract(workers: int):
            def go():
                out = fresh(f"out{workers}")
                summary = extract_images(src, out, max_size=MAX_SIZE, workers=workers)
                assert summary.written == n, summary.describe()

            return go

        methods = [
            ("plain PIL open+resize+save loop", 1, lambda: plain_loop(paths, src, fresh("plain")))
        ]
        methods.append(("extract_images, workers=1", 1, run_extract(1)))
        if cores > 1:
            methods.append((f"extract_images, workers={cores}", cores, run_extract(cores)))
        # interleaved repeats, so every method sees the same machine load; keep the best of each
        best = {name: (float("inf"), float("inf")) for name, _, _ in methods}
        for _ in range(args.repeat):
            for name, _, fn in methods:
                wall, cpu = timed(fn)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        rows = [(name, procs, *best[name]) for name, procs, _ in methods]

        # correctness check on the last output: long side == MAX_SIZE everywhere (all are larger)
        last = json.loads((tmp / f"out{methods[-1][1]}" / "annotation.json").read_text())
        assert len(last) == n and all(max(s["height"], s["width"]) == MAX_SIZE for s in last)

    base_wall, base_cpu = rows[0][2], rows[0][3]
    print(
        f"extract/images benchmark: {n} images (200-400 px, half PNG half JPEG), "
        f"--max-size={MAX_SIZE}, best of {args.repeat} interleaved runs, {cores} usable cores"
    )
    print(
        f"{'method':<34} {'procs':>5} {'wall s':>7} {'images/s':>9} {'vs plain':>9}"
        f" {'CPU ms/img':>11} {'CPU vs plain':>13}"
    )
    for name, procs, wall, cpu in rows:
        print(
            f"{name:<34} {procs:>5} {wall:>7.2f} {n / wall:>9.0f} {base_wall / wall:>8.2f}x"
            f" {1000 * cpu / n:>11.2f} {base_cpu / cpu:>12.2f}x"
        )
    print("vs plain > 1 = faster than the plain loop; the CPU columns discount other load.")


if __name__ == "__main__":
    main()
