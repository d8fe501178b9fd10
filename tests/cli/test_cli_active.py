"""`antgo active`: lazy help (no torch/mlflow/cleanlab) with runnable examples."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.test_cli_main import HEAVY, PROBE


@pytest.mark.parametrize(
    "args, example",
    [
        (["--help"], "active"),
        (["active", "--help"], "rank"),
        (["active", "rank", "--help"], "antgo active rank --src="),
        (["active", "issues", "--help"], "antgo active issues --src="),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_active_help_shows_examples_and_imports_nothing_heavy(args, example):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps([*HEAVY, "cleanlab", "numpy"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert example in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=[]"
