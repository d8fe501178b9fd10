"""Test data for the extract tools: small real images, videos, COCO and GT files made on the spot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


class CliResult:
    """Exit code and captured output of one in-process `antgo` call."""

    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, stdout={self.stdout[-400:]!r}, stderr={self.stderr[-800:]!r})"


def make_image(path: Path, width: int, height: int, seed: int = 0, **save_kwargs) -> Path:
    """A smooth colour image (compresses like a photo) saved in the format of ``path``'s suffix."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx * 255 // max(1, width - 1) + yy * 255 // max(1, height - 1)) // 2
    arr = np.stack([base, 255 - base, np.full_like(base, rng.integers(0, 255))], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path, **save_kwargs)
    return path


def make_corrupt_jpeg(path: Path) -> Path:
    """A JPEG cut in half: the header reads, decoding fails."""
    make_image(path.with_suffix(".tmp.jpg"), 64, 48)
    data = path.with_suffix(".tmp.jpg").read_bytes()
    path.with_suffix(".tmp.jpg").unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_video(path: Path, n_frames: int, fps: float, width: int, height: int) -> Path:
    """An MJPG .avi whose frame i is a flat grey of value ``(i * 10) % 250``."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for i in range(n_frames):
        writer.write(np.full((height, width, 3), (i * 10) % 250, np.uint8))
    writer.release()
    return path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative, sorted); [] if it does not exist."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def run_inprocess(capsys, *args: str) -> CliResult:
    """Run `antgo ARGS` through the real main() in this process (fast; for most CLI checks)."""
    from antgo_mlflow.cli.main import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return CliResult(code, out.out, out.err)
