"""Engine test fixtures: a toy .npz data set and a config for the toy model (see toys.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine import toys

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def _migrated_store(tmp_path_factory) -> Path:
    """An MLflow SQLite file with its tables already created (creating them takes seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("engine-store") / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def _fast_store(_migrated_store, tmp_path, monkeypatch):
    # Each test still gets its own store (the URI the root conftest set), pre-migrated.
    import shutil

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    target = tmp_path / "mlflow.db"
    if uri == f"sqlite:///{target}" and not target.exists():
        shutil.copyfile(_migrated_store, target)


@pytest.fixture
def toy_npz(tmp_path) -> Path:
    return toys.make_npz(tmp_path / "data" / "toy.npz", n=64)


@pytest.fixture
def make_config(tmp_path, toy_npz):
    """``make_config(**overrides)`` writes ``<tmp>/exp1/configs/config.py`` for the toy model."""

    def make(folder: str = "exp1/configs", **overrides) -> Path:
        return toys.write_config(tmp_path / folder, toy_npz, **overrides)

    return make


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for training subprocesses: the repository importable (custom_imports)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


TRAIN_SCRIPT = (
    "import sys\n"
    "from antgo_mlflow.engine.launch import run_from_config\n"
    "print('RUN', run_from_config(sys.argv[1], work_dir=sys.argv[2]), flush=True)\n"
)


@pytest.fixture
def sigterm_training(subprocess_env, python):
    """``sigterm_training(config, work_dir, marker)``: train ``config`` in a subprocess, send it
    SIGTERM once ``marker`` is in ``work_dir/train.log``; returns ``(returncode, stderr)``."""

    def run(config: Path, work: Path, marker: str) -> tuple[int, str]:
        proc = subprocess.Popen(
            [python, "-c", TRAIN_SCRIPT, str(config), str(work)],
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = work / "train.log"
        deadline = time.time() + 120
        while not (log.is_file() and marker in log.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "training did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err

    return run
