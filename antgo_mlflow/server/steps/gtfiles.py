"""Small GT helpers the steps share: read a GT file with absolute image paths; write a
self-contained GT folder (its images linked in, so the data stays inside its dataset)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def read_abs(path: str | os.PathLike) -> list[dict]:
    """The samples of GT file ``path`` with ``image_file`` made absolute (the loop's own files)."""
    from antgo_mlflow.gt import load_gt

    path = Path(path)
    folder = path.parent if path.is_file() else path
    samples = load_gt(path, inside=False)
    for s in samples:
        if s.get("image_file"):
            s["image_file"] = str(Path(os.path.realpath(folder / s["image_file"])))
    return samples


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy
        shutil.copyfile(src, dst)


def write_rel(folder: str | os.PathLike, samples: list[dict], classes: list[str] | None) -> str:
    """Write ``samples`` (absolute image paths) as ``folder/annotation.json`` (+ meta.json) with
    their images linked into ``folder/images/``; returns the JSON's path."""
    from antgo_mlflow.gt import default_meta, save_gt, write_meta

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for i, s in enumerate(samples):
        s = {k: v for k, v in s.items() if not k.startswith("_")}
        if s.get("image_file"):
            src = Path(s["image_file"])
            name = f"images/{i:05d}-{src.name}"
            if not (folder / name).exists():
                _link(src, folder / name)
            s["image_file"] = name
            s.setdefault("source_image", str(src))  # unknown fields are kept: the pool's file
        out.append(s)
    meta = default_meta(len(out), list(classes) if classes else None)
    write_meta(folder, meta)
    target = folder / "annotation.json"
    save_gt(target, out)
    return str(target)


def key_of(sample: dict) -> str:
    """What identifies a sample across the steps' files: the pool image it came from."""
    return str(
        sample.get("source_image") or sample.get("image_file") or sample.get("image_url") or ""
    )
