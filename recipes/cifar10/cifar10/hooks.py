"""This experiment's hooks: an example, enabled from the config with
``custom_hooks = [dict(type="StopAtAccuracyHook", key="top_1", value=0.999)]``.

Hooks run at named points of the loop (``before_run``, ``after_train_iter``, ``after_val_epoch``,
...; see ``antgo_mlflow.engine.hooks.base.POINTS``).
"""

from antgo_mlflow.engine.hooks.base import Hook
from antgo_mlflow.registry import HOOKS

HOOKS.import_locations()  # the library's hooks first; a same name below replaces it


@HOOKS.register_module(force=True)
class StopAtAccuracyHook(Hook):
    """End training early once validation ``key`` reaches ``value`` (the run still finishes)."""

    priority = "LOW"

    def __init__(self, key="top_1", value=1.0):
        self.key = key
        self.value = float(value)

    def after_val_epoch(self, runner, metrics):
        if metrics.get(self.key, float("-inf")) >= self.value:
            print(f"{self.key}={metrics[self.key]:.4f} >= {self.value}: stopping after this epoch")
            runner.max_epochs = runner.epoch
