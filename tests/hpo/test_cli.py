"""`antgo hpo --help` shows runnable examples (that it imports nothing heavy is checked with the
other commands in tests/cli/test_cli_main.py)."""

from __future__ import annotations

from tests.tools._extract_data import run_inprocess


def test_help_shows_runnable_examples_and_the_dashboard(capsys):
    res = run_inprocess(capsys, "hpo", "--help")
    assert res.code == 0
    assert "antgo hpo --config=recipes/digits/config.py --trials=8" in res.stdout
    assert "antgo hpo --show --study=digits-lr" in res.stdout
    assert "optuna-dashboard" in res.stdout


def test_the_root_help_lists_hpo(capsys):
    res = run_inprocess(capsys, "--help")
    assert "hpo" in res.stdout and "Hyper-parameter search" in res.stdout
