"""Fixtures of the submitter tests: a private config folder, a loopback sshd, a tiny project."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.submit.services import LoopbackSSHD, sshd_missing_reason


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> Path:
    """Each test registers submitters in its own ~/.config/antgo-mlflow (ANTGO_CONFIG_DIR)."""
    folder = tmp_path / "antgo-config"
    monkeypatch.setenv("ANTGO_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 (throw-away host key and authorized_keys)."""
    reason = sshd_missing_reason()
    if reason:
        pytest.skip(reason)
    with LoopbackSSHD(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def server_uri(mlflow_server, monkeypatch) -> str:
    """The session's real `mlflow server`, as this test's tracking URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return mlflow_server


@pytest.fixture
def experiment_id(server_uri) -> str:
    """A fresh experiment on the server (tests share the server, not their runs)."""
    from mlflow import MlflowClient

    return MlflowClient().create_experiment(f"submit-{uuid.uuid4().hex[:10]}")


TINY_MLPROJECT = """\
name: tiny
entry_points:
  main:
    parameters:
      x: {type: float, default: 0.5}
      rc: {type: string, default: "0"}
    command: "python job.py --x {x} --rc {rc}"
  sleep:
    parameters:
      marker: {type: string, default: "none"}
    command: "python sleeper.py {marker}"
"""

TINY_JOB = """\
import argparse, os, sys
import mlflow
import tinypkg

p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--rc", type=int)
a = p.parse_args()
env_run = os.environ["MLFLOW_RUN_ID"]  # start_run() consumes the variable
with mlflow.start_run() as run:
    mlflow.log_metric("x2", a.x * 2)
    print("run", run.info.run_id, "env-run", env_run)
print("tinypkg from", tinypkg.__file__)
print("cpu", os.environ.get("ANTGO_CPU_NUM"), "project", os.environ.get("ANTGO_PROJECT"))
print("dotenv shipped", os.path.exists(".env"), "key shipped", os.path.exists("deploy_key.pem"))
print("to stderr", file=sys.stderr)
sys.exit(a.rc)
"""

# a parent that starts a child in its process group: cancel must end both
TINY_SLEEPER = """\
import subprocess, sys, time
marker = sys.argv[1]
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
print("sleeping", marker, flush=True)
time.sleep(600)
"""


def make_tiny_project(root: Path, git: bool = True) -> Path:
    """A tiny MLflow project: ``main`` logs a metric and exits with ``rc``; ``sleep`` sleeps."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text(TINY_MLPROJECT)
    (root / "job.py").write_text(TINY_JOB)
    (root / "sleeper.py").write_text(TINY_SLEEPER)
    (root / "tinypkg").mkdir(exist_ok=True)
    (root / "tinypkg" / "__init__.py").write_text("")
    (root / ".env").write_text("MLFLOW_TRACKING_PASSWORD=never-shipped\n")
    (root / "deploy_key.pem").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n")
    if git:
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t")
        env["GIT_COMMITTER_EMAIL"] = "t@t"
        subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
        subprocess.run(["git", "-C", str(root), "add", "MLproject", "job.py"], check=True, env=env)
    return root


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    return make_tiny_project(tmp_path / "tiny")


@pytest.fixture
def ssh_config(sshd, tmp_path) -> dict:
    """``--backend-config`` fields for the loopback sshd; the job runs with this venv's python."""
    return sshd.submitter(
        python=sys.executable,
        remote_dir=str(tmp_path / "remote"),
        env={"ANTGO_PROGRESS": "0"},
    )


def submit_project(backend: str, project, entry_point, config, experiment_id=None, **params):
    """``mlflow.projects.run`` with a plugin backend, not waiting (the job is returned running)."""
    import mlflow.projects

    return mlflow.projects.run(
        str(project),
        entry_point=entry_point,
        parameters={k: str(v) for k, v in params.items()},
        backend=backend,
        backend_config=dict(config),  # mlflow adds its keys to the dict it gets
        experiment_id=experiment_id,
        synchronous=False,
    )


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path
