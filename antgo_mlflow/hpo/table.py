"""The trials of a study as rows: for ``antgo hpo --show`` (text or ``--json``) and the study run."""

from __future__ import annotations

import json
from typing import Any

from antgo_mlflow.hpo.keys import ERROR_ATTR, RUN_ID_ATTR, WORKER_ATTR


def trial_rows(study) -> list[dict[str, Any]]:
    """One dict per trial: number, state, value, params, duration, MLflow run, retry origin."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = None
        if t.datetime_start and t.datetime_complete:
            duration = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
        last_step = max(t.intermediate_values) if t.intermediate_values else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.values else None,
                "params": dict(t.params),
                "last_step": last_step,
                "duration_s": duration,
                "mlflow_run_id": t.user_attrs.get(RUN_ID_ATTR),
                "retry_of": t.system_attrs.get("failed_trial"),
                "worker": t.user_attrs.get(WORKER_ATTR),
            }
        )
    return rows


def trial_line(trial, metric: str = "value") -> str:
    """One line for a finished trial: state, value (or last value and epoch), params, run."""
    params = ", ".join(f"{k}={_cell(v)}" for k, v in trial.params.items())
    run = trial.user_attrs.get(RUN_ID_ATTR, "-")
    seconds = ""
    if trial.datetime_start and trial.datetime_complete:
        seconds = f"{(trial.datetime_complete - trial.datetime_start).total_seconds():.1f} s, "
    state = trial.state.name
    if state == "COMPLETE":
        result = f"{metric}={_cell(trial.value)}"
    elif state == "PRUNED" and trial.intermediate_values:
        step = max(trial.intermediate_values)
        result = f"pruned at epoch {step} ({metric}={_cell(trial.intermediate_values[step])})"
    elif state == "FAIL":
        result = f"failed ({trial.user_attrs.get(ERROR_ATTR) or 'worker lost or interrupted'})"
    else:
        result = state.lower()
    return f"antgo-hpo: trial {trial.number} {result} [{params}] ({seconds}run {run})"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of ``trial_rows`` (params as their own columns)."""
    keys = sorted({k for r in rows for k in r["params"]})
    header = ["#", "state", "value", *keys, "epochs", "seconds", "run", "retry_of"]
    lines = [header]
    for r in rows:
        lines.append(
            [
                str(r["number"]),
                r["state"],
                _cell(r["value"]),
                *(_cell(r["params"].get(k)) for k in keys),
                _cell(r["last_step"]),
                _cell(r["duration_s"]),
                _cell(r["mlflow_run_id"]),
                _cell(r["retry_of"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, default=str)
