"""`antgo hpo --help`: fast (no torch, mlflow or optuna imported) and shows runnable examples."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.test_cli_main import PROBE

HEAVY = ("torch", "mlflow", "optuna", "sqlalchemy", "matplotlib")


@pytest.mark.parametrize("args", [["--help"], ["hpo", "--help"]], ids=" ".join)
def test_help_imports_neither_torch_mlflow_nor_optuna(args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=[]"
    if args[0] == "hpo":
        assert "antgo hpo --config=recipes/digits/config.py --trials=8" in proc.stdout
        assert "optuna-dashboard" in proc.stdout
    else:
        assert "hpo" in proc.stdout
