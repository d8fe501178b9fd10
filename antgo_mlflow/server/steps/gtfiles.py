"""Small GT helpers the steps share: read a GT file with absolute image paths, write one."""

from __future__ import annotations

import os
from pathlib import Path


def read_abs(path: str | os.PathLike) -> list[dict]:
    """The samples of GT file ``path`` with ``image_file`` made absolute."""
    from antgo_mlflow.gt import load_gt

    path = Path(path)
    folder = path.parent if path.is_file() else path
    samples = load_gt(path)
    for s in samples:
        if s.get("image_file"):
            s["image_file"] = str((folder / s["image_file"]).resolve())
    return samples


def write_rel(folder: str | os.PathLike, samples: list[dict], classes: list[str] | None) -> str:
    """Write ``samples`` (absolute image paths) as ``folder/annotation.json`` (+ meta); its path."""
    from antgo_mlflow.gt import default_meta, save_gt, write_meta

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in samples:
        s = {k: v for k, v in s.items() if not k.startswith("_")}
        if s.get("image_file"):
            s["image_file"] = os.path.relpath(s["image_file"], folder)
        out.append(s)
    if classes:
        meta = default_meta()
        meta["extent"] = {"total": len(out)}
        meta.setdefault("meta", {})["category"] = list(classes)
        write_meta(folder, meta)
    target = folder / "annotation.json"
    save_gt(target, out)
    return str(target)


def key_of(sample: dict) -> str:
    """What identifies a sample across the steps' files: its image path."""
    return str(sample.get("image_file") or sample.get("image_url") or "")
