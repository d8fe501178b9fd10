"""Review fixtures: one isolated FiftyOne database per test session, small real images, cleanup.

FIFTYONE_DATABASE_DIR is set when this conftest is imported (before FiftyOne is imported), so the
whole session shares one ``mongod`` in a temporary folder; at the end every process that still
uses that folder (mongod, App servers started by CLI subprocesses) is killed by PID.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_DB_DIR = tempfile.mkdtemp(prefix="antgo-fo-db-")
# also removed at exit where no review test runs (the pytest-xdist controller imports this too)
atexit.register(shutil.rmtree, _DB_DIR, True)
os.environ["FIFTYONE_DATABASE_DIR"] = _DB_DIR
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"


def processes_using(marker: str) -> list:
    """Live processes whose command line mentions ``marker`` (a tmp folder or a port)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.Error, TypeError):
            continue
        if marker in cmd and proc.pid != os.getpid():
            found.append(proc)
    return found


def kill_all(procs) -> None:
    import psutil

    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _fiftyone_database():
    yield _DB_DIR
    kill_all(processes_using(_DB_DIR))
    shutil.rmtree(_DB_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fiftyone_env(monkeypatch):
    # tests/conftest.py isolates per test; keep the session database for FiftyOne.
    monkeypatch.setenv("FIFTYONE_DATABASE_DIR", _DB_DIR)


def write_image(path: Path, w: int, h: int, color=(200, 30, 30)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), color).save(path)
    return path


@pytest.fixture
def gt_dir(tmp_path):
    """A GT folder with 3 real images, annotation.json using every field, and meta.json."""
    from antgo_mlflow.gt import save_gt, write_meta

    root = tmp_path / "ds"
    write_image(root / "images/a.png", 64, 48)
    write_image(root / "images/b.png", 32, 32, (10, 200, 10))
    write_image(root / "images/c.jpg", 40, 20, (10, 10, 200))
    samples = [
        {
            "image_file": "images/a.png",
            "image_url": "",
            "height": 48,
            "width": 64,
            "tag": "batch1",
            "image_label": 1,
            "image_label_name": "",
            "bboxes": [[1, 2, 30.5, 40], [10.25, 0, 64, 48]],
            "labels": [0, 2],
            "box_visibility": [1, 0],
            "joints2d": [[[3, 4], [5.5, 6.5]], [[12, 13], [14, 15]]],
            "joints_vis": [[1, 0], [2, 2]],
            "segments": [[[1, 2], [30, 2], [30, 40]], {"size": [48, 64], "counts": "abc"}],
            "predictions": {
                "bboxes": [[0, 0, 10, 10]],
                "labels": [1],
                "scores": [0.875],
                "image_label": 2,
                "image_score": 0.5,
                "model": "wrn",
            },
            "clip_tag": "unknown-field-kept",
            "tags": ["valid"],
        },
        {
            "image_file": "images/b.png",
            "height": 32,
            "width": 32,
            "image_label": -1,
            "image_label_name": "dog",
            "segments": [[[1, 1, 10, 1, 10, 10], [20, 20, 25, 20, 25, 25]]],
            "joints2d": [[[1, 2, 0.5], [3, 4, 0.25]]],
        },
        {"image_file": "images/c.jpg", "height": 0, "width": 0, "bboxes": [], "labels": []},
    ]
    save_gt(root / "annotation.json", samples)
    meta = {
        "info": "",
        "author": "",
        "license": "",
        "extent": {"total": 3},
        "meta": {"category": ["car", "train", "bus"], "skeleton": [[0, 1]]},
    }
    write_meta(root, meta)
    return root
