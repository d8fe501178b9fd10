"""The trial budget across workers: what counts, and the lock that makes the count exact."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import optuna
import pytest

from antgo_mlflow.hpo.claim import FileClaimLock, PostgresClaimLock, claim_lock
from antgo_mlflow.hpo.storage import normalise
from antgo_mlflow.hpo.worker import Budget

State = optuna.trial.TrialState


def _study_with(states: list[State]):
    study = optuna.create_study()
    for state in states:
        study.add_trial(
            optuna.create_trial(
                state=state,
                value=0.5 if state == State.COMPLETE else None,
                params={"x": 1.0},
                distributions={"x": optuna.distributions.FloatDistribution(0, 2)},
            )
        )
    return study


def test_the_budget_counts_this_runs_trials_and_waits_for_running_ones():
    study = _study_with([State.COMPLETE, State.PRUNED])
    assert Budget(0, 3).decide(study) == "run"
    assert Budget(0, 2).decide(study) == "stop"
    assert Budget(1, 2).decide(study) == "run"  # trial 0 belongs to an earlier run of the study
    study.ask()  # another worker's trial, still running
    assert Budget(0, 3).decide(study) == "wait"  # it may die and need a retry
    assert Budget(0, 9, deadline=time.time() - 1).decide(study) == "stop"


def test_a_trial_lost_with_its_worker_does_not_count_but_its_retry_does():
    study = _study_with([State.COMPLETE, State.FAIL])
    assert Budget(0, 2).decide(study) == "stop"  # a failed trial (an exception) counts
    lost = study.trials[1]
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, lost)  # queued again: WAITING
    assert Budget(0, 2).decide(study) == "run"  # the queued retry runs first
    retry = study.ask()  # pops it
    assert retry.number == 2
    assert Budget(0, 2).decide(study) == "wait"
    study.tell(retry, 0.7)
    assert Budget(0, 2).decide(study) == "stop"


def test_the_file_lock_is_released_when_its_holder_is_killed(tmp_path):
    path = tmp_path / "optuna-journal.log"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from antgo_mlflow.hpo.claim import FileClaimLock; "
            f"FileClaimLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    lock = FileClaimLock(path)
    got = threading.Event()
    thread = threading.Thread(target=lambda: (lock.acquire(), got.set()), daemon=True)
    thread.start()
    assert not got.wait(0.5)  # blocked by the holder
    holder.kill()
    holder.wait()
    assert got.wait(10)
    lock.close()
    assert isinstance(claim_lock(str(path), "s"), FileClaimLock)


def test_the_postgresql_lock_excludes_another_session(pg_url):
    first = claim_lock(pg_url, "study-a")
    assert isinstance(first, PostgresClaimLock)
    second = PostgresClaimLock(normalise(pg_url), "study-a")
    other_study = PostgresClaimLock(normalise(pg_url), "study-b")
    first.acquire()
    other_study.acquire()  # a different study does not wait
    other_study.close()
    got = threading.Event()
    thread = threading.Thread(target=lambda: (second.acquire(), got.set()), daemon=True)
    thread.start()
    assert not got.wait(0.5)
    first.release()
    first.release()  # idempotent
    assert got.wait(10)
    second.close()
    first.close()


@pytest.mark.parametrize("url", ["mysql://u@h/db"])
def test_servers_without_a_lock_get_a_no_op(url):
    lock = claim_lock(url, "s")
    lock.acquire()
    lock.release()
    assert type(lock).__name__ == "ClaimLock"


def test_trials_queued_before_the_run_are_part_of_its_budget():
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.5})
    study.enqueue_trial({"x": 1.5})
    budget = Budget(first_number=2, n_trials=2, queued=(0, 1))
    for _ in range(2):
        assert budget.decide(study) == "run"
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 2))
    assert [t.params["x"] for t in study.trials] == [0.5, 1.5]
    assert budget.decide(study) == "stop"
