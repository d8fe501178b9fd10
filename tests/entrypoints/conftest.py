"""A training run made once per module through the real `train` entry point (tiny: 2 iterations)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Trained:
    uri: str  # the tracking store holding the run
    run_id: str
    work_dir: Path
    cache: Path
    stderr: str


def tiny_options(cache: Path) -> str:
    """Train on the 179-sample val split for one epoch: 2 iterations."""
    from antgo_mlflow.data.sources.digits import prepare_digits

    val = prepare_digits(cache).shard_paths("val")
    return f"data.train.data_path_list={val!r}"


def entry_env(uri: str, cache: Path) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, ANTGO_CACHE_DIR=str(cache), ANTGO_PROGRESS="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cache = root / "cache"
    work_dir = root / "work"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "antgo_mlflow.entrypoints.train",
            "--epochs",
            "1",
            "--cfg-options",
            tiny_options(cache),
            "--work-dir",
            str(work_dir),
        ],
        cwd=root,
        env=entry_env(uri, cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = proc.stderr.split("MLflow run ")[1].split()[0]
    return Trained(uri, run_id, work_dir, cache, proc.stderr)


@pytest.fixture
def use_trained_store(trained, monkeypatch):
    """Point this test's MLflow at the module's store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    monkeypatch.setenv("ANTGO_CACHE_DIR", str(trained.cache))
    return trained
