"""Static study plots (PNG, matplotlib without pyplot): optimisation history, parameter importance."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def optimization_history(study, metric: str, path: Path) -> Path | None:
    """Each finished trial's value by trial number, and the best-so-far line."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False) if t.values]
    if not done:
        return None
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.get_trials(deepcopy=False) if t.state.name == "PRUNED"]
    ax.scatter([t.number for t in complete], [t.value for t in complete], label="complete", s=24)
    if pruned:
        last = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in pruned
                if t.intermediate_values]  # fmt: skip
        if last:
            ax.scatter(*zip(*last), marker="x", color="grey", label="pruned (last value)", s=24)
    best, xs, ys = None, [], []
    for t in sorted(complete, key=lambda t: t.number):
        if best is None or (t.value > best if maximize else t.value < best):
            best = t.value
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"optimisation history: {study.study_name}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def param_importances(study, path: Path) -> Path | None:
    """Each parameter's importance for the objective (Optuna's default evaluator, PED-ANOVA in
    Optuna 5; needs two or more complete trials that differ); None when it cannot be computed."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return None
    try:
        with warnings.catch_warnings():  # "quantiles select the same set": few trials
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study)
    except Exception as exc:  # too few distinct trials, a single-valued parameter, ...
        log.info("parameter importance not computed: %s", exc)
        return None
    if not importances:
        return None
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    fig = _figure(7.0, 1.2 + 0.4 * len(names))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(names, values, color="tab:blue")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance")
    ax.set_xlim(0, max(values) * 1.2 or 1.0)
    ax.set_title(f"parameter importance: {study.study_name}")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
