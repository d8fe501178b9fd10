"""Assertions shared by tests (import as `from tests.helpers import ...`)."""

from __future__ import annotations


def assert_one_line_error(result, *fragments: str) -> None:
    """A bad-input failure: exit 2, one line on stderr containing every fragment, no traceback."""
    assert result.code == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
