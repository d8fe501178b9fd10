"""One server per project: a second refuses while the first lives; a kill -9-ed one does not block."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from antgo_mlflow.server import lock

HOLDER = """
import sys, time
from antgo_mlflow.project.projects import get_client
from antgo_mlflow.server.lock import server_lock
with server_lock(get_client(), [sys.argv[1]]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_second_server_refuses_and_a_dead_holder_is_broken(project, tmp_path, run_antgo):
    from antgo_mlflow.project.projects import get_client

    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, project], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(lock.ServerLocked, match=f"pid {proc.pid}"):
            lock.acquire(get_client(), project)
        res = run_antgo("server", f"--project={project}", "--once", cwd=tmp_path)
        assert res.code == 2 and "another antgo server" in res.stderr, res
        assert "Traceback" not in res.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    client = get_client()
    with lock.server_lock(client, [project]):  # the killed holder's lock is broken
        assert client.get_registered_model(lock.lock_name(project)).tags["antgo.lock.pid"] == str(
            os.getpid()
        )
    time.sleep(0)
    assert not client.search_registered_models(f"name='{lock.lock_name(project)}'")
