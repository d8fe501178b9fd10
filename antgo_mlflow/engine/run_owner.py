"""Who trains a run, a heartbeat while it does, and reaping runs whose trainer is gone.

While a run trains, its tags name the owner process (``antgo.owner.host``, ``antgo.owner.pidns``,
``antgo.owner.pid``, ``antgo.owner.start``: see ``antgo_mlflow.owner``) and ``antgo.heartbeat``
(Unix seconds), refreshed every ``ANTGO_HEARTBEAT_S`` seconds (default 30) by a daemon thread.

A RUNNING run is *reaped* - set KILLED, with tag ``antgo.killed_reason`` saying why - when

* its owner ran on this host and the process is gone (pid not running, a zombie, or reused by
  another process: the start time differs); a live owner on this host is never reaped;
* its owner ran on another host and the heartbeat is older than ``ANTGO_HEARTBEAT_TIMEOUT_S``
  seconds (default 300; keep it well above the heartbeat interval).

Runs without an owner record (not trained by antgo) are left alone. ``antgo show exp``, resuming
a run (``--resume-from auto`` reopens the checkpoint's run) and the automation server call
:func:`reap` / :func:`reap_experiments`; a resumed run keeps the reason as
``antgo.resumed_after``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from antgo_mlflow import env
from antgo_mlflow.owner import current_owner, gone_reason, is_this_host

log = logging.getLogger(__name__)

OWNER_PREFIX = "antgo.owner."
HEARTBEAT_TAG = "antgo.heartbeat"
REASON_TAG = "antgo.killed_reason"
RESUMED_TAG = "antgo.resumed_after"
HEARTBEAT_ENV = env.ANTGO_HEARTBEAT_S
TIMEOUT_ENV = env.ANTGO_HEARTBEAT_TIMEOUT_S
DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_TIMEOUT_S = 300.0


def heartbeat_interval() -> float:
    """Seconds between heartbeats ($ANTGO_HEARTBEAT_S, default 30)."""
    return env.seconds(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)


def heartbeat_timeout() -> float:
    """Age after which a heartbeat from another host means the owner is gone (default 300 s)."""
    return env.seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def owner_of(tags: Mapping[str, str]) -> dict[str, str]:
    """The owner record in a run's tags ({} when the run has none)."""
    return {k[len(OWNER_PREFIX) :]: v for k, v in tags.items() if k.startswith(OWNER_PREFIX)}


def run_gone_reason(run, now: float | None = None) -> str | None:
    """Why the trainer of RUNNING ``run`` is gone, or None (alive, unknown, or not running)."""
    if run.info.status != "RUNNING":
        return None
    tags = run.data.tags
    owner = owner_of(tags)
    if not owner.get("host"):
        return None
    if is_this_host(owner):
        return gone_reason(owner)
    try:
        beat = float(tags.get(HEARTBEAT_TAG, ""))
    except ValueError:
        return None
    age = (now if now is not None else time.time()) - beat
    if age > heartbeat_timeout():
        return (
            f"no heartbeat from pid {owner.get('pid')} on {owner['host']} for {age:.0f} s "
            f"(timeout {heartbeat_timeout():.0f} s)"
        )
    return None


def reap(client, runs: Iterable) -> dict[str, str]:
    """Mark every RUNNING run of ``runs`` whose owner is gone KILLED; ``{run_id: reason}``."""
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    reaped = {}
    now = time.time()
    for run in runs:
        reason = run_gone_reason(run, now)
        if reason is None:
            continue
        run_id = run.info.run_id
        try:
            client.log_batch(run_id, tags=[RunTag(REASON_TAG, reason)])
            # ended at its last sign of life, so its duration is not counted up to now
            client.set_terminated(run_id, "KILLED", end_time=_last_beat_ms(run, now))
        except MlflowException as exc:  # another lister reaped it first, or the store is busy
            log.warning("could not mark run %s KILLED: %s", run_id, exc)
            continue
        reaped[run_id] = reason
    return reaped


def _last_beat_ms(run, now: float) -> int | None:
    try:
        beat = float(run.data.tags.get(HEARTBEAT_TAG, ""))
    except ValueError:
        return None
    return int(min(beat, now) * 1000) if beat * 1000 >= (run.info.start_time or 0) else None


def reap_experiments(client, experiment_ids: Iterable[str]) -> dict[str, str]:
    """Reap the RUNNING runs of these experiments (for the automation server's start-up/loop)."""
    from mlflow.entities import ViewType

    runs = client.search_runs(
        list(experiment_ids),
        filter_string="attributes.status = 'RUNNING'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=10000,
    )
    return reap(client, runs)


class Heartbeat:
    """A daemon thread refreshing ``antgo.heartbeat`` on a run until :meth:`stop`."""

    def __init__(self, client, run_id: str, interval: float | None = None):
        self.client = client
        self.run_id = run_id
        self.interval = interval or heartbeat_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="antgo-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.3f}")
            except Exception as exc:  # the store being briefly unreachable must not stop training
                log.debug("heartbeat for run %s failed: %s", self.run_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def claim(client, run) -> Heartbeat:
    """Record this process as the owner of ``run`` (a resumed one's old reason is kept as
    ``antgo.resumed_after``) and start its heartbeat."""
    from mlflow.entities import RunTag

    tags = [RunTag(OWNER_PREFIX + k, v) for k, v in current_owner().items()]
    tags.append(RunTag(HEARTBEAT_TAG, f"{time.time():.3f}"))
    reason = run.data.tags.get(REASON_TAG)
    if reason:
        tags.append(RunTag(RESUMED_TAG, reason))
    client.log_batch(run.info.run_id, tags=tags)
    if reason:
        client.delete_tag(run.info.run_id, REASON_TAG)
    return Heartbeat(client, run.info.run_id).start()


def take_over(client, run_id: str, resumed: bool) -> tuple[Heartbeat, dict[str, int]]:
    """Become the owner of ``run_id`` before training it: a resumed run whose old owner is gone is
    reaped first (the reason is kept). Returns the heartbeat and, when resuming, the last logged
    step per metric (see :func:`last_steps`)."""
    run = client.get_run(run_id)
    steps: dict[str, int] = {}
    if resumed:
        if reap(client, [run]):
            run = client.get_run(run_id)
        steps = last_steps(client, run)
    return claim(client, run), steps


def last_steps(client, run) -> dict[str, int]:
    """``{metric key: highest step logged}`` of ``run``: a resumed run logs only later steps.

    After a ``kill -9`` the checkpoint is older than the last metrics sent; the steps between
    were logged already and must not appear twice.
    """
    out = {}
    for key in run.data.metrics:
        history = client.get_metric_history(run.info.run_id, key)
        if history:
            out[key] = max(m.step for m in history)
    return out
