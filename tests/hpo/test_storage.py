"""Storage choice and opening: defaults next to the MLflow store, masked passwords, heartbeats."""

from __future__ import annotations

import time

import optuna
import pytest

from antgo_mlflow.errors import UsageError
from antgo_mlflow.hpo import storage as storages


def test_defaults_live_next_to_the_mlflow_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'team' / 'mlflow.db'}"
    assert storages.default_storage(1, uri) == f"sqlite:///{tmp_path / 'team' / 'optuna.db'}"
    assert storages.default_storage(3, uri) == str(tmp_path / "team" / "optuna-journal.log")
    assert storages.store_folder("http://127.0.0.1:5000") == storages.Path.cwd()
    assert storages.store_folder(str(tmp_path / "mlruns")) == tmp_path


def test_kinds_and_masking():
    assert storages.kind("sqlite:///x.db") == "sqlite"
    assert storages.kind("postgresql+psycopg2://u:p@h/db") == "postgresql"
    assert storages.kind("postgres://u@h/db") == "postgresql"
    assert storages.kind("runs/optuna-journal.log") == "journal"
    assert storages.normalise("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert storages.normalise("postgresql+pg8000://u@h/db") == "postgresql+pg8000://u@h/db"
    assert storages.mask("postgresql://me:s3cret@db:5432/optuna") == (
        "postgresql://me:***@db:5432/optuna"
    )
    with pytest.raises(UsageError, match="unknown storage"):
        storages.kind("redis://h:6379")


def test_an_unreachable_server_is_one_line_with_the_password_masked():
    t0 = time.perf_counter()
    with pytest.raises(UsageError) as err:
        storages.open_storage("postgresql://me:s3cret@127.0.0.1:1/optuna")
    message = str(err.value)
    assert message.startswith(
        "--storage=postgresql+psycopg2://me:***@127.0.0.1:1/optuna: cannot connect"
    )
    assert "s3cret" not in message and "\n" not in message
    assert time.perf_counter() - t0 < 15


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        storages.open_storage(f"sqlite:///{tmp_path / 'no' / 'optuna.db'}")
    with pytest.raises(UsageError, match="no such file"):
        storages.open_storage(str(tmp_path / "journal.log"), create=False)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_trial_without_heartbeats_is_failed_and_handed_to_the_callback(tmp_path, kind):
    """The journal storage has no heartbeats in Optuna; ours records them like RDBStorage."""
    seen = []
    url = str(tmp_path / "j.log") if kind == "journal" else f"sqlite:///{tmp_path / 'o.db'}"
    store = storages.open_storage(url, heartbeat=1, stale_callback=lambda s, t: seen.append(t))
    study = optuna.create_study(storage=store, study_name="s")
    trial = study.ask()  # RUNNING; nobody beats for it (its worker "died")
    store.record_heartbeat(trial._trial_id)
    assert store._get_stale_trial_ids(study._study_id) == []
    time.sleep(4.5)  # grace = 3 x heartbeat (SQLite compares whole seconds)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert [t.number for t in seen] == [0]
