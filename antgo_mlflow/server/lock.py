"""One server per project: a lock in MLflow (a registered model only one process can create).

Like the role lock (``project/roles.py``): the lock's tags record its holder (host, pid, start time)
and a heartbeat. A second server finds the lock held by a live holder and refuses; a holder that is
provably gone (its pid no longer runs on this host) or whose heartbeat is older than
``STALE_S`` (another host) is broken, so a ``kill -9``-ed server does not block its restart.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from antgo_mlflow.errors import UsageError

LOCK_SUFFIX = ".antgo-server-lock"
BEAT_S = 10.0
STALE_S = 120.0


class ServerLocked(UsageError):
    """Another live server holds the project."""


def lock_name(project: str) -> str:
    """The registered model that is ``project``'s server lock."""
    return project + LOCK_SUFFIX


def _holder_gone(tags: dict) -> str | None:
    from antgo_mlflow.owner import gone_reason

    owner = {k: tags.get(f"antgo.lock.{k}", "") for k in ("host", "pidns", "pid", "start")}
    reason = gone_reason(owner)
    if reason:
        return reason
    try:
        beat = float(tags.get("antgo.lock.beat", "0") or 0)
    except ValueError:
        beat = 0.0
    if time.time() - beat > STALE_S:
        return f"no heartbeat for {time.time() - beat:.0f} s"
    return None


def acquire(client, project: str) -> None:
    """Take ``project``'s server lock or raise ServerLocked naming its holder."""
    from mlflow.exceptions import MlflowException

    from antgo_mlflow.owner import current_owner
    from antgo_mlflow.project.projects import error_code

    name = lock_name(project)
    me = current_owner()
    tags = {f"antgo.lock.{k}": v for k, v in me.items()}
    tags["antgo.lock.beat"] = f"{time.time():.3f}"
    for _ in range(3):
        try:
            client.create_registered_model(
                name,
                tags=tags,
                description=f"antgo: the automation server of project {project} holds this lock",
            )
            return
        except MlflowException as exc:
            if error_code(exc) not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        with contextlib.suppress(MlflowException):
            held = client.get_registered_model(name).tags
            if not _holder_gone(held):
                who = f"pid {held.get('antgo.lock.pid')} on {held.get('antgo.lock.host')}"
                raise ServerLocked(
                    f"--project={project}: another antgo server ({who}) already serves this "
                    f"project; stop it first (or delete registered model '{name}' if it is stale)"
                )
            client.delete_registered_model(name)  # a dead holder: break its lock
    raise ServerLocked(f"--project={project}: could not take the server lock '{name}'")


def release(client, project: str) -> None:
    """Give ``project``'s lock back (if this process holds it)."""
    import os

    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):
        held = client.get_registered_model(lock_name(project)).tags
        if held.get("antgo.lock.pid") == str(os.getpid()):
            client.delete_registered_model(lock_name(project))


class _Beat:
    def __init__(self, client, projects: list[str], interval: float):
        self.client, self.projects, self.interval = client, projects, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="antgo-server-lock", daemon=True)

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            for project in self.projects:
                with contextlib.suppress(Exception):  # a missed beat is retried next time
                    self.client.set_registered_model_tag(
                        lock_name(project), "antgo.lock.beat", f"{time.time():.3f}"
                    )


@contextlib.contextmanager
def server_lock(client, projects: list[str], interval: float = BEAT_S) -> Iterator[None]:
    """Hold every project's lock (all or none) while the block runs, with a heartbeat."""
    taken: list[str] = []
    try:
        for project in projects:
            acquire(client, project)
            taken.append(project)
        beat = _Beat(client, taken, interval)
        beat.thread.start()
        try:
            yield
        finally:
            beat.stopped.set()
    finally:
        for project in taken:
            release(client, project)
