"""Run an MLproject entry point locally as its own process group, and pass antgo's signals on.

``mlflow.projects.run(..., synchronous=True)`` starts the entry point in antgo's own process group
and leaves it running (and its run RUNNING) when antgo gets SIGTERM. Here the entry point runs
through MLflow's asynchronous local launch (``mlflow run`` as the leader of a new process group);
SIGTERM/SIGINT/SIGHUP received by antgo are forwarded to that whole group (the trainer stops at
the next iteration, saves ``latest.pth`` and ends its run KILLED), antgo waits until every process
of the group has exited - killing the group after ``STOP_GRACE_S`` - marks the run KILLED if the
child could not, and re-raises the interruption.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from antgo_mlflow.engine.run_owner import REASON_TAG
from antgo_mlflow.interrupts import Terminated

STOP_GRACE_S = 120.0  # how long a stopped child may take to save its checkpoint and exit


def _group_alive(pgid: int) -> bool:
    """True while a process (not a zombie) of group ``pgid`` exists."""
    if os.path.isdir("/proc/self"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                    text = fh.read()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2 :].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def run_entry_point(
    uri: str, entry_point: str, parameters: dict, experiment_id: str, run_id: str
) -> None:
    """Run ``entry_point`` of the MLproject at ``uri`` into run ``run_id`` and wait for it.

    Raises:
        mlflow.exceptions.ExecutionException: the entry point failed (as ``mlflow.projects.run``).
        Terminated / KeyboardInterrupt: antgo got SIGTERM (SIGHUP) / SIGINT; the child's group
            got it too and has exited; the run is KILLED.
    """
    import mlflow.projects
    from mlflow.exceptions import ExecutionException

    submitted = mlflow.projects.run(
        uri,
        entry_point=entry_point,
        parameters=parameters,
        experiment_id=experiment_id,
        env_manager="local",
        synchronous=False,
        run_id=run_id,
    )
    proc = submitted.command_proc
    pgid = proc.pid  # MLflow starts `mlflow run` as the leader of a new session (os.setsid)
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum if signum != signal.SIGHUP else signal.SIGTERM)

    signals = [signal.SIGTERM, signal.SIGINT] + (
        [signal.SIGHUP] if hasattr(signal, "SIGHUP") else []
    )
    previous = {s: signal.signal(s, forward) for s in signals}
    try:
        deadline = None
        # The leader, then every other member: after SIGTERM `mlflow run` exits at once while
        # the trainer is still saving its checkpoint.
        while proc.poll() is None or (received and _group_alive(pgid)):
            if received and deadline is None:
                deadline = time.monotonic() + STOP_GRACE_S
            if deadline is not None and time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.1)
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
    if received:
        _mark_killed(run_id, signal.Signals(received[0]).name)
        raise KeyboardInterrupt if received[0] == signal.SIGINT else Terminated()
    if proc.returncode != 0:
        raise ExecutionException(f"Run (ID '{run_id}') failed")


def _mark_killed(run_id: str, signame: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":  # the child could not end it itself
        client.set_tag(run_id, REASON_TAG, f"antgo train received {signame}; the child was stopped")
        client.set_terminated(run_id, "KILLED")
