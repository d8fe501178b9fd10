"""label/start and InteractContext.activelearning against a real Label Studio on 127.0.0.1.

Label Studio lives in its own virtualenv (scripts/install_label_studio.sh); without it these tests
are skipped. Annotations are posted through Label Studio's REST API with an annotator's own token,
obtained by logging in through its login form, as an annotator's browser would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from antgo_mlflow.review.labelling import Api, label_studio_venv, login_token
from tests.conftest import free_port
from tests.helpers import assert_one_line_error

needs_ls = pytest.mark.skipif(
    label_studio_venv() is None,
    reason="Label Studio venv not installed: run `bash scripts/install_label_studio.sh` "
    "(or set ANTGO_LABEL_STUDIO_VENV)",
)
PASSWORD = "Ann0tator-pw-77"


def _annotate_all(url: str, email: str, password: str, make_result, timeout: float = 240) -> int:
    """Wait for tasks to appear, then annotate each as the annotator would."""
    deadline = time.time() + timeout
    token = None
    while time.time() < deadline:
        try:
            token = token or login_token(url, email, password)
            api = Api(url, token)
            projects = api.call("GET", "/api/projects")["results"]
            if projects and projects[0].get("task_number"):
                pid = projects[0]["id"]
                tasks = api.call("GET", f"/api/tasks?project={pid}&fields=all")["tasks"]
                for task in tasks:
                    api.call(
                        "POST",
                        f"/api/tasks/{task['id']}/annotations",
                        {"result": make_result(task), "was_cancelled": False},
                    )
                return len(tasks)
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    raise AssertionError("no Label Studio tasks to annotate")


def _rect(label, x, y, w=64, h=48):
    return [
        {
            "id": "r1",
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {
                "x": x,
                "y": y,
                "width": 25,
                "height": 50,
                "rotation": 0,
                "rectanglelabels": [label],
            },
        }
    ]


@needs_ls
def test_label_start_sends_tasks_waits_and_writes_gt(gt_dir, tmp_path):
    port = free_port()
    tgt = tmp_path / "labelled"
    secrets_file = tmp_path / "annotators"
    secrets_file.write_text(f"ann:{PASSWORD}\n")
    secrets_file.chmod(0o600)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "antgo_mlflow",
            "tool",
            "label/start",
            f"--src={gt_dir / 'annotation.json'}",
            f"--tgt={tgt}",
            "--tags=Car:0,Train:1",
            "--type=RECT",
            "--white-users=ann",
            f"--white-users-file={secrets_file}",
            f"--port={port}",
            "--timeout=400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    sizes = {"images/a.png": (64, 48), "images/b.png": (32, 32), "images/c.jpg": (40, 20)}

    def result(task):
        rel = task["data"]["image"].split("d=", 1)[1].replace("%2F", "/")
        w, h = sizes[rel.split("ds/", 1)[-1]]
        return _rect("Train" if "a.png" in rel else "Car", 10, 20, w, h)

    try:
        n = _annotate_all(url, "ann@antgo.local", PASSWORD, result)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert n == 3
    assert proc.returncode == 0, out
    assert PASSWORD not in out
    log = (tgt / ".label-studio" / "label-studio.log").read_text(errors="replace")
    assert PASSWORD not in log
    samples = json.loads((tgt / "annotation_label.json").read_text())
    assert [s["image_file"] for s in samples] == [
        "../ds/images/a.png",
        "../ds/images/b.png",
        "../ds/images/c.jpg",
    ]
    assert samples[0]["bboxes"] == [[6.4, 9.6, 22.4, 33.6]] and samples[0]["labels"] == [1]
    assert samples[0]["tag"] == "batch1"  # original fields kept
    assert json.loads((tgt / "meta.json").read_text())["meta"]["category"] == ["Car", "Train"]
    with __import__("socket").socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # Label Studio stopped


@needs_ls
def test_activelearning_start_record_download_exit(tmp_path):
    import numpy as np

    from antgo_mlflow.review import InteractContext

    ctx = InteractContext(dump_dir=tmp_path / "dump", echo=lambda *_: None)
    ctx.activelearning.start(
        "al_exp",
        config={
            "metas": {
                "category": [
                    {"class_name": "A", "class_index": 0},
                    {"class_name": "B", "class_index": 1},
                ]
            },
            "white_users": {"jian@antgo.local": {"password": PASSWORD}},
            "label_type": "RECT",
        },
    )
    try:
        ctx.activelearning.labeling()
        for i in range(2):
            ctx.recorder.record({"id": i, "image": np.full((48, 64), 100 + i, dtype=np.uint8)})
        url = ctx.activelearning.session.api.url
        server_pid = ctx.activelearning.session.server.proc.pid
        worker = threading.Thread(
            target=_annotate_all,
            args=(url, "jian@antgo.local", PASSWORD, lambda t: _rect("B", 50, 50)),
        )
        worker.start()
        result = ctx.activelearning.download(timeout=300)
        worker.join()
        ctx.activelearning.waiting()
    finally:
        ctx.activelearning.exit()
    import psutil

    assert (
        not psutil.pid_exists(server_pid)
        or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    )
    assert [s["image_file"] for s in result] == ["data/0.png", "data/1.png"]
    assert all(s["bboxes"] == [[32, 24, 48, 48]] and s["labels"] == [1] for s in result)


def test_label_start_without_label_studio_is_one_line(gt_dir, tmp_path, run_antgo):
    res = run_antgo(
        "tool",
        "label/start",
        f"--src={gt_dir / 'annotation.json'}",
        f"--tgt={tmp_path / 'o'}",
        "--tags=Car:0",
        env={"ANTGO_LABEL_STUDIO_VENV": str(tmp_path / "none"), "HOME": str(tmp_path)},
    )
    assert_one_line_error(res, "Label Studio is not installed", "install_label_studio.sh")


def test_label_start_bad_tags_is_one_line(gt_dir, tmp_path, run_antgo):
    res = run_antgo("tool", "label/start", f"--src={gt_dir / 'annotation.json'}", "--tags=Car:x")
    assert_one_line_error(res, "--tags", "name:index")
