"""Shared fixtures: an isolated working folder, a CLI runner that goes through `antgo`'s main()."""

from __future__ import annotations

import os
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
