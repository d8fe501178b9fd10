"""HPO test fixtures: toy configs with an ``hpo`` section, a real PostgreSQL server, worker envs.

Trials train the engine tests' tiny model (tests/engine/toys.py) on 64 toy samples, so a trial
takes about a second; the PostgreSQL server is real (``tests/pg_server.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.engine import toys
from tests.engine.conftest import _fast_store, _migrated_store  # noqa: F401  (fixtures)
from tests.pg_server import PgServer

REPO = Path(__file__).resolve().parents[2]

SPACE = (
    "{'optimizer.lr': dict(type='float', low=0.01, high=0.5, log=True), "
    "'model.width': dict(type='int', low=2, high=6)}"
)


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL 15 server for the session (skipped, with the reason, if it cannot start)."""
    server = PgServer()
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL server here: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database on the session's server."""
    return pg_server.create_database()


@pytest.fixture
def hpo_config(tmp_path):
    """``hpo_config(space=..., metric=..., epochs=2, delay=0.0, **keys)`` writes a toy config
    with an hpo section and returns its path."""
    npz = toys.make_npz(tmp_path / "data" / "toy.npz", n=64)

    def make(
        space: str = SPACE,
        metric: str = "val/top_1",
        direction: str = "maximize",
        epochs: int = 2,
        delay: float = 0.0,
        log_model: bool = False,
        folder: str = "exp1/configs",
        extra_hpo: str = "",
        **keys: str,
    ) -> Path:
        data = (
            f"dict(train=dict(type='EngineNpzData', path={str(npz)!r}, delay={delay}), "
            f"val=dict(type='EngineNpzData', path={str(npz)!r}, limit=32), "
            "train_dataloader=dict(samples_per_gpu=8, workers_per_gpu=0, shuffle=True), "
            "val_dataloader=dict(samples_per_gpu=16))"
        )
        overrides = {
            "model": "dict(type='EngineTinyNet', width=4)",
            "data": data,
            "max_epochs": str(epochs),
            "log_config": (
                "dict(interval=2, hooks=[dict(type='TextLoggerHook', progress=False), "
                f"dict(type='MlflowLoggerHook', log_model={log_model})])"
            ),
            "hpo": (f"dict(metric={metric!r}, direction={direction!r}, space={space}{extra_hpo})"),
            "experiment_name": "'hpo-tests'",
        }
        overrides.update(keys)
        return toys.write_config(tmp_path / folder, npz, **overrides)

    return make


@pytest.fixture
def hpo_env(tmp_path) -> dict:
    """Environment for `antgo hpo` subprocesses: the repository importable (custom_imports)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
