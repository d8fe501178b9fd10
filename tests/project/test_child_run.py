"""`antgo train` passes SIGTERM/Ctrl-C on to the entry point's process group and ends the run KILLED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from mlflow import MlflowClient

from antgo_mlflow.owner import process_start
from antgo_mlflow.project.projects import create_project

# The entry point: reports its pid, then waits for SIGTERM and ends its run KILLED (as the Runner does).
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    got = []
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    Path("child.pid").write_text(str(os.getpid()))
    while not got:
        time.sleep(0.05)
    from mlflow import MlflowClient
    MlflowClient().set_terminated(os.environ["MLFLOW_RUN_ID"], "KILLED")
    Path("child.stopped").write_text(signal.Signals(got[0]).name)
    sys.exit(1)
    """
)


def test_sigterm_to_antgo_train_stops_child(tmp_path):
    create_project(name="sig")
    exp = tmp_path / "e1"
    exp.mkdir()
    (exp / "child.py").write_text(CHILD)
    (exp / "MLproject").write_text(
        'name: e1\nentry_points:\n  train:\n    command: "python child.py"\n'
    )
    antgo = subprocess.Popen(
        [sys.executable, "-m", "antgo_mlflow", "train", "--exp=e1", "--project=sig"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 180
    while not (exp / "child.pid").is_file():
        assert antgo.poll() is None, antgo.communicate()
        assert time.time() < deadline, "the entry point did not start"
        time.sleep(0.1)
    child = int((exp / "child.pid").read_text())
    antgo.send_signal(signal.SIGTERM)  # antgo only, as `kill <pid>` or a scheduler would
    out, err = antgo.communicate(timeout=120)
    assert antgo.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "antgo: terminated"
    assert (exp / "child.stopped").read_text() == "SIGTERM"  # the child got it and cleaned up
    assert process_start(child) is None  # and is gone, not orphaned
    run = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("sig").experiment_id])[
        0
    ]
    assert run.info.status == "KILLED"
    assert os.getpgid(os.getpid()) != 0  # (this test's own group was left alone)
