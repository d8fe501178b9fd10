"""`optuna-dashboard <storage>` reads the storages `antgo hpo` writes (the optional extra)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from antgo_mlflow.hpo.storage import open_storage
from tests.conftest import free_port


def _study(url: str) -> None:
    study = optuna.create_study(storage=open_storage(url, heartbeat=5), study_name="dash")
    study.optimize(lambda t: t.suggest_float("optimizer.lr", 1e-3, 1e-1, log=True), n_trials=2)


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_the_dashboard_lists_the_study(kind, tmp_path, request):
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("optuna-dashboard is not installed (pip install 'antgo-mlflow[hpo-dashboard]')")
    if kind == "sqlite":
        url = shown = f"sqlite:///{tmp_path / 'optuna.db'}"
    elif kind == "journal":
        url = shown = str(tmp_path / "optuna-journal.log")
    else:
        url = request.getfixturevalue("pg_url")
        shown = url.replace("postgresql://", "postgresql+psycopg2://")
    _study(url)
    port = free_port()
    proc = subprocess.Popen(
        [exe, shown, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        base = f"http://127.0.0.1:{port}/api/studies"
        while True:
            try:
                with urllib.request.urlopen(base, timeout=2) as resp:
                    (summary,) = json.loads(resp.read())["study_summaries"]
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read()) from None
                assert time.time() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.3)
        assert summary["study_name"] == "dash"
        with urllib.request.urlopen(f"{base}/{summary['study_id']}", timeout=10) as resp:
            trials = json.loads(resp.read())["trials"]
        assert [t["params"][0]["name"] for t in trials] == ["optimizer.lr"] * 2
    finally:
        proc.terminate()
        proc.wait(timeout=20)
