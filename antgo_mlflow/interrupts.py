"""SIGTERM handled like Ctrl-C: an exception in the main thread, so cleanup code runs.

``antgo`` installs :func:`sigterm_raises` around every command: a ``kill`` (or a scheduler ending
the job) unwinds through the same ``finally``/``except BaseException`` blocks as Ctrl-C, so staging
folders are removed and worker pools are stopped. Worker processes must not inherit that handler:
pools start them with :func:`worker_signals`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a KeyboardInterrupt, so every Ctrl-C cleanup path handles it too)."""

    exit_code = 128 + signal.SIGTERM


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def worker_signals() -> None:
    """Pool initializer: the parent handles Ctrl-C once; SIGTERM ends a worker at once, quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
