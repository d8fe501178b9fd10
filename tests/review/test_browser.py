"""browser/images: persistent dataset, real FiftyOne App over HTTP, tag feedback, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.conftest import free_port
from tests.helpers import assert_one_line_error


@pytest.fixture(scope="module")
def fo():
    from antgo_mlflow.review.fiftyone_io import fo as _fo

    fo_ = _fo()
    fo_.list_datasets()  # starts the session's mongod; CLI subprocesses reuse it via the env
    return fo_


class Cli:
    """`antgo ...` running in the background, its output collected line by line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "antgo_mlflow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if self.proc.poll() is not None and not any(text in x for x in self.lines):
                time.sleep(0.5)
                if not any(text in x for x in self.lines):
                    raise AssertionError(f"exited {self.proc.returncode}: {self.lines[-20:]}")
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in {self.lines[-20:]}")

    def descendants(self):
        import psutil

        return psutil.Process(self.proc.pid).children(recursive=True)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


def _http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def _gone(procs) -> bool:
    import psutil

    deadline = time.time() + 15
    while time.time() < deadline:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.3)
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_rerun_updates_the_persistent_dataset_without_duplicates(fo, gt_dir, run_antgo):
    from antgo_mlflow.review.browser import open_dataset

    open_dataset(gt_dir / "annotation.json", "br-reload")  # a first run (in-process, same code)
    res = run_antgo(
        "tool",
        "browser/images",
        f"--src={gt_dir / 'annotation.json'}",
        "--no-launch",
        "--dataset-name=br-reload",
    )
    assert res.code == 0, res
    assert "3 samples" in res.stdout
    ds = fo.load_dataset("br-reload")
    assert ds.persistent and len(ds) == 3
    ds.delete()


def test_app_feedback_then_sigterm_writes_partial_tags_and_leaves_no_process(fo, gt_dir):
    """The App is fetched over HTTP; tags given in the App (written to the same database) are
    polled; SIGTERM ends the wait, the tags so far are written and no child process survives.
    (The wait-until-complete path runs in test_interact.py on the same code.)"""
    port = free_port()
    cli = Cli(
        "tool",
        "browser/images",
        f"--src={gt_dir / 'annotation.json'}",
        "--tags=valid,invalid",
        "--feedback",
        f"--port={port}",
        "--dataset-name=br-feedback",
    )
    try:
        url_line = cli.wait_for("FiftyOne App: ")
        assert url_line.endswith(f"http://127.0.0.1:{port}/")
        assert f"ssh -N -L {port}:127.0.0.1:{port}" in cli.wait_for("remote: ")
        status, body = _http_get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<html" in body.lower()
        children = cli.descendants()
        assert children, "the App server runs as a child process"
        ds = fo.load_dataset("br-feedback")
        tags = {"images/a.png": ["valid"], "images/b.png": ["maybe"], "images/c.jpg": ["invalid"]}
        for s in ds:
            s.tags = tags[s.image_file]
            s.save()
        cli.wait_for("tag not in the allowed set")
        cli.wait_for("tagged 2/3")
        assert cli.proc.poll() is None  # b.png has no allowed tag yet
        cli.proc.send_signal(signal.SIGTERM)
        assert cli.proc.wait(timeout=60) == 0, cli.lines
    finally:
        cli.kill()
    record = json.loads((gt_dir / "annotation_browser.json").read_text())
    assert record["complete"] is False
    assert [(r["image_file"], r["tags"]) for r in record["samples"]] == [
        ("images/a.png", ["valid"]),
        ("images/b.png", ["maybe"]),
        ("images/c.jpg", ["invalid"]),
    ]
    assert _gone(children), [p.cmdline() for p in children if p.is_running()]
    assert _port_free(port)

    # filter/tags reads the same tags straight from the FiftyOne dataset
    from antgo_mlflow.review.fiftyone_io import filter_by_dataset_tags

    r = filter_by_dataset_tags("br-feedback", gt_dir / "annotation.json", tags="valid")
    assert r["kept"] == 1
    ds.delete()


def test_port_in_use_is_one_line(gt_dir, run_antgo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = run_antgo(
            "tool", "browser/images", f"--src={gt_dir / 'annotation.json'}", f"--port={port}"
        )
    assert_one_line_error(res, f"port {port} is in use")


def test_database_unavailable_is_one_line_and_starts_nothing(gt_dir, run_antgo):
    import psutil

    def services():
        return {
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if "--51-service" in " ".join(p.info["cmdline"] or [])
        }

    before = services()
    env = dict(os.environ)
    env.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    env["FIFTYONE_DATABASE_URI"] = (
        f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=1500"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "antgo_mlflow",
            "tool",
            "browser/images",
            f"--src={gt_dir / 'annotation.json'}",
            "--no-launch",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )

    class R:
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr

    assert_one_line_error(R, "FiftyOne database unavailable")
    assert services() <= before


def test_feedback_without_tags_is_a_usage_error(gt_dir, run_antgo):
    res = run_antgo("tool", "browser/images", f"--src={gt_dir / 'annotation.json'}", "--feedback")
    assert_one_line_error(res, "--feedback needs --tags")


def test_user_input_import_operator_adds_gt(fo, gt_dir):
    import fiftyone.operators as foo

    from antgo_mlflow.review.browser import PLUGIN_DIR, _empty_dataset

    fo.config.plugins_dir = str(PLUGIN_DIR)
    ds, name = _empty_dataset("br-user-input")
    result = foo.execute_operator(
        "@antgo/review/import_gt",
        ctx={"dataset": name, "params": {"path": str(gt_dir / "annotation.json")}},
    )
    assert result.result == {"added": 3}
    ds.reload()
    assert len(ds) == 3 and ds.default_classes == ["car", "train", "bus"]
    ds.delete()
