"""Progress bars only on a terminal: a log file gets lines, not carriage-return bar updates."""

from __future__ import annotations

import io
import sys

import pytest

from antgo_mlflow.progress import bars_enabled, progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "env", "expected"),
    [
        (io.StringIO(), None, False),  # redirected to a file
        (_Tty(), None, True),  # a terminal
        (_Tty(), "0", False),  # ANTGO_PROGRESS=0 wins over a terminal
        (io.StringIO(), "1", True),  # ANTGO_PROGRESS=1 forces bars into a file
    ],
)
def test_bars_are_drawn_on_a_terminal_only(monkeypatch, stream, env, expected):
    monkeypatch.setattr(sys, "stderr", stream)
    if env is None:
        monkeypatch.delenv("ANTGO_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("ANTGO_PROGRESS", env)
    assert bars_enabled() is expected


def test_a_redirected_log_gets_no_bar(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.delenv("ANTGO_PROGRESS", raising=False)
    assert list(progress(range(50), desc="packing")) == list(range(50))
    assert log.getvalue() == ""
