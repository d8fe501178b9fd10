"""env.py: every ANTGO_* variable is read there, with its type and default."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from antgo_mlflow import env

PACKAGE = Path(__file__).resolve().parents[2] / "antgo_mlflow"


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 30.0), ("5", 5.0), ("0", 30.0), ("-3", 30.0), ("soon", 30.0)]
)
def test_seconds_falls_back_to_the_default_for_unset_or_bad_values(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(env.ANTGO_HEARTBEAT_S, raising=False)
    else:
        monkeypatch.setenv(env.ANTGO_HEARTBEAT_S, value)
    assert env.seconds(env.ANTGO_HEARTBEAT_S, 30.0) == expected


def test_typed_readers(monkeypatch, tmp_path):
    monkeypatch.setenv(env.ANTGO_DATA_ROOTS, os.pathsep.join([str(tmp_path), "", " "]))
    assert env.data_roots() == [str(tmp_path)]
    monkeypatch.setenv(env.ANTGO_PROGRESS, "0")
    assert env.progress_enabled() is False
    monkeypatch.setenv(env.ANTGO_DEBUG, "1")
    assert env.debug() is True
    monkeypatch.setenv(env.ANTGO_EXP, "")
    assert env.text(env.ANTGO_EXP) is None


def test_no_module_but_env_reads_an_antgo_variable_by_its_literal_name():
    """``os.environ.get("ANTGO_...")`` / ``os.environ["ANTGO_..."]`` outside env.py is a second
    declaration of the variable (its name, default and type drift apart)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "env.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith("ANTGO_") and node.value.isupper():
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value}")
    # variables antgo sets for a job's own script to read (it never reads them itself)
    written = {"ANTGO_GPU_NUM", "ANTGO_CPU_NUM", "ANTGO_MEMORY_MB", "ANTGO_SNAPSHOT"}
    written |= {"ANTGO_CODE_DIGEST"}
    assert [f for f in found if f.split()[-1] not in written] == []
