"""The loop's steps, in order. Each is ``run(ctx, inputs) -> outputs`` and runs alone (tests do).

``outputs`` are JSON (paths, counts); ``_metrics`` (logged on the step run) and ``_note`` (shown by
``antgo show project``) are taken out by ``state.run_step``.
"""

from __future__ import annotations

ORDER = ("predict", "select", "label", "pack_register", "train", "evaluate_promote")


def step_function(name: str):
    """The ``run`` function of step ``name``."""
    import importlib

    if name not in ORDER:
        raise KeyError(name)
    return importlib.import_module(f"antgo_mlflow.server.steps.{name}").run
