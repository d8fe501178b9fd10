"""The synthetic shapes detection set: deterministic, boxes that fit the drawn shapes, race-safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from antgo_mlflow.data.sources import shapes
from antgo_mlflow.data.sources._cache import READY_FILE
from antgo_mlflow.gt import load_gt, read_meta


def test_shapes_builder_is_deterministic(tmp_path):
    a = shapes.prepare_shapes(tmp_path / "a", num_images=30, quiet=True)
    b = shapes.prepare_shapes(tmp_path / "b", num_images=30, quiet=True)
    assert a.digest == b.digest
    for split in shapes.SPLITS:
        assert (a.root / f"{split}.json").read_bytes() == (b.root / f"{split}.json").read_bytes()
        assert a.splits[split].shards[0].read_bytes() == b.splits[split].shards[0].read_bytes()
    first, again = shapes.draw_image(7), shapes.draw_image(7)
    assert np.array_equal(first[0], again[0]) and first[1:] == again[1:]


def test_shapes_splits_classes_and_meta(tmp_path):
    data = shapes.prepare_shapes(tmp_path, num_images=40, quiet=True)
    assert {s: data.splits[s].count for s in shapes.SPLITS} == {"train": 28, "val": 4, "test": 8}
    assert read_meta(data.root)["meta"]["category"] == ["rectangle", "ellipse", "triangle"]
    samples = load_gt(data.splits["train"].gt)
    assert {s["tag"] for s in samples} == {"train"}
    labels = {label for s in samples for label in s["labels"]}
    assert labels == {0, 1, 2}


def test_shapes_boxes_lie_inside_the_image_and_have_shape_sizes():
    found = 0
    for index in range(20):
        image, boxes, labels = shapes.draw_image(index)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert len(boxes) == len(labels) <= shapes.MAX_SHAPES
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            assert 14 <= max(x1 - x0, y1 - y0) <= 2 * shapes.HALF_SIZE[1] * 1.5
            found += 1
    assert found > 20


def test_shapes_has_negative_images():
    empty = [i for i in range(200) if not shapes.draw_image(i)[1]]
    assert 0 < len(empty) < 40


def test_two_processes_racing_build_one_shapes_folder(tmp_path):
    code = (
        "import sys; from antgo_mlflow.data.sources.shapes import prepare_shapes; "
        "print(prepare_shapes(sys.argv[1], num_images=24).root)"
    )
    env = dict(os.environ, ANTGO_PROGRESS="0")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    roots = {o[0].strip() for o in outs}
    assert len(roots) == 1
    root = Path(roots.pop())
    assert (root / READY_FILE).is_file()
    assert [p.name for p in root.parent.iterdir()] == [root.name]
