"""Stop a run cleanly on SIGTERM, Ctrl-C or a closed terminal: at the next iteration boundary."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGTERM or Ctrl-C at an iteration boundary."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def install_stop_handlers(record: Callable[[int], None], stopping: Callable[[], bool]):
    """Route SIGTERM/SIGINT/SIGHUP to ``record(signum)``; a second Ctrl-C (``stopping()`` already
    true) raises at once. Returns the function that restores the previous handlers (a no-op
    outside the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum, frame):
        if stopping() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        record(signum)

    signals = [signal.SIGTERM, signal.SIGINT]
    if hasattr(signal, "SIGHUP"):  # a closed terminal/ssh session: stop cleanly as well
        signals.append(signal.SIGHUP)
    for sig in signals:
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)

    def restore():
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
