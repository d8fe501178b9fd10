"""Build small standard-GT datasets with real PNG/JPEG files for the shard tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(i: int, size: int = 8, fmt: str = "PNG") -> bytes:
    """A distinct small image per ``i``."""
    rng = np.random.default_rng(i)
    arr = rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def rich_sample(i: int) -> dict:
    """A sample using every kind of field: boxes, joints, ragged segments, dicts, string lists."""
    return {
        "image_file": f"img/{i}.png",
        "image_label": i % 3,
        "image_label_name": ["cat", "dog", "bird"][i % 3],
        "tag": f"tag{i % 2}",
        "bboxes": [[1.0, 2.0, 5.5, 7.0], [0.0, 0.0, 3.0, 4.0]],
        "labels": [i % 3, 1],
        "box_visibility": [1, 0],
        "joints2d": [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[0.5, 0.5], [1.5, 1.5], [2.5, 2.5]]],
        "joints_vis": [[1, 1, 0], [1, 0, 1]],
        "segments": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10]]],
        "predictions": {"score": 0.5, "names": ["a", "b"]},
        "label_names": ["cat", "dog"],
        "has_bboxes3d": False,
        "timestamp": "",
        "view_id": "-1",
    }


def make_dataset(
    folder: Path,
    n: int = 10,
    missing: tuple[int, ...] = (),
    rich: bool = False,
    classes: list[str] | None = None,
    name: str = "annotation.json",
) -> Path:
    """Write ``n`` samples (images under ``folder/img``) and return the GT JSON path.

    Samples whose number is in ``missing`` point at an image that does not exist.
    """
    folder = Path(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        sample = rich_sample(i) if rich else {"image_file": f"img/{i}.png", "image_label": i % 3}
        if i in missing:
            sample["image_file"] = f"img/missing-{i}.png"
        else:
            (folder / "img" / f"{i}.png").write_bytes(image_bytes(i))
        samples.append(sample)
    path = folder / name
    path.write_text(json.dumps(samples))
    if classes is not None:
        (folder / "meta.json").write_text(json.dumps({"meta": {"category": classes}}))
    return path
