"""Shared fixtures: an isolated working folder, a CLI runner that goes through `antgo`'s main()."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, tmp_path):
    # Progress bars off and no MLflow store in the repository: each test gets its own.
    monkeypatch.setenv("ANTGO_PROGRESS", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ANTGO_CACHE_DIR", str(tmp_path / "antgo-cache"))
    monkeypatch.setenv("FIFTYONE_DO_NOT_TRACK", "true")
    _reset_mlflow_globals()


def _reset_mlflow_globals() -> None:
    """Forget a tracking/registry URI or active run left by an earlier test in this process.

    `mlflow.set_tracking_uri` stores the URI in a module global that outranks the
    MLFLOW_TRACKING_URI variable each test sets, so without this a test would talk to the store
    of whichever test ran before it on the same worker.
    """
    if "mlflow" not in sys.modules:
        return
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    while mlflow.active_run() is not None:
        mlflow.end_run()
    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, stdout={self.stdout[-400:]!r}, stderr={self.stderr[-800:]!r})"


@pytest.fixture
def run_antgo():
    """Run `antgo ARGS...` in a subprocess (the real console entry point) and capture output."""

    def run(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 300, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "antgo_mlflow", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    from antgo_mlflow.review.browser import free_port as pick

    return pick()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, local artifacts); yields its URL."""
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn and job-runner children are stopped with it
    )

    def stop(sig) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop(signal.SIGKILL)
            raise RuntimeError(
                f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}"
            )
        time.sleep(0.5)
    yield url
    stop(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    stop(signal.SIGKILL)  # whatever of the group is left
    log.close()


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.server)])
def tracking_uri(request, tmp_path, monkeypatch):
    """Parametrized store: a SQLite file in a temp dir, and a real mlflow server over HTTP."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        uri = request.getfixturevalue("mlflow_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
