"""Who holds something (a training run, a role lock, a staging folder): host, pid and start time.

An owner record is ``{"host", "pidns", "pid", "start"}`` (all strings). It is *provably gone* when
it was written on this machine (same host name and same pid namespace, so containers sharing a
host name are told apart) and its pid no longer runs, runs as a zombie, or now belongs to another
process (a different start time: pids are reused). A record from another host is never judged
here; callers decide with a heartbeat (``antgo_mlflow.engine.run_owner``) or an age.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc; None if no such pid."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ("?", "")
    # "pid (comm) state ppid ..." - comm may hold spaces and parentheses: split after the last ')'
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("?", "")


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` as an opaque string ("" where unknown); None if it is not running."""
    if os.path.isdir("/proc/self"):
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):  # zombies have exited; only the entry is left
            return None
        return stat[1]
    try:  # no /proc (macOS): existence only
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def current_owner() -> dict[str, str]:
    """This process as an owner record."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pidns": _pid_namespace(),
        "pid": str(pid),
        "start": process_start(pid) or "",
    }


def is_this_host(owner: Mapping[str, str]) -> bool:
    """True when ``owner`` was recorded on this machine, in this pid namespace."""
    return owner.get("host") == socket.gethostname() and (owner.get("pidns") or "") == (
        _pid_namespace()
    )


def gone_reason(owner: Mapping[str, str]) -> str | None:
    """Why ``owner`` is provably gone ("pid 12 on h no longer runs"), or None (alive or unknown)."""
    if not owner.get("host") or not str(owner.get("pid", "")).isdigit() or not is_this_host(owner):
        return None
    pid, host = int(owner["pid"]), owner["host"]
    start = process_start(pid)
    if start is None:
        return f"pid {pid} on {host} no longer runs"
    if owner.get("start") and start and start != owner["start"]:
        return f"pid {pid} on {host} is now another process (the owner exited)"
    return None
