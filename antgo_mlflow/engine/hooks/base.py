"""The Hook base class: named points of the training loop, run in priority order."""

from __future__ import annotations

from typing import Any

#: mmengine's priority names; a smaller number runs earlier.
PRIORITIES = {
    "HIGHEST": 0,
    "VERY_HIGH": 10,
    "HIGH": 30,
    "ABOVE_NORMAL": 40,
    "NORMAL": 50,
    "BELOW_NORMAL": 60,
    "LOW": 70,
    "VERY_LOW": 90,
    "LOWEST": 100,
}

#: Every point a hook may implement, with the extra arguments the Runner passes after ``runner``.
POINTS = (
    "before_run",  # ()
    "after_run",  # ()  only after a run that completed
    "before_train_epoch",  # ()
    "after_train_epoch",  # ()
    "before_train_iter",  # (batch_idx, batch)
    "after_train_iter",  # (batch_idx, batch, outputs)  outputs: what model.train_step returned
    "before_val_epoch",  # ()
    "after_val_epoch",  # (metrics)
    "after_val",  # (metrics)  after every after_val_epoch hook (best checkpoint is on disk)
    "before_save_checkpoint",  # (checkpoint)  may add entries to the dict
    "after_load_checkpoint",  # (checkpoint)
    "after_test",  # (metrics)
    "on_exception",  # (exc)  the run ends with an error or an interruption (KeyboardInterrupt)
)


def get_priority(priority: int | str) -> int:
    """Turn a priority name (``'NORMAL'``) or number (0..100) into a number."""
    if isinstance(priority, str):
        if priority.upper() not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r} (one of {', '.join(PRIORITIES)})")
        return PRIORITIES[priority.upper()]
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
        raise ValueError(f"priority must be a name or an int in 0..100, got {priority!r}")
    return priority


class Hook:
    """Base class of hooks; override the points you need (see ``POINTS``).

    Each point receives the Runner first. Hooks run in ascending ``priority`` (ties keep the order
    in which they were registered). Only overridden points are called, so an empty point costs
    nothing per iteration.
    """

    priority: int | str = "NORMAL"

    def before_run(self, runner) -> None:
        pass

    def after_run(self, runner) -> None:
        pass

    def before_train_epoch(self, runner) -> None:
        pass

    def after_train_epoch(self, runner) -> None:
        pass

    def before_train_iter(self, runner, batch_idx: int, batch: Any) -> None:
        pass

    def after_train_iter(self, runner, batch_idx: int, batch: Any, outputs: dict) -> None:
        pass

    def before_val_epoch(self, runner) -> None:
        pass

    def after_val_epoch(self, runner, metrics: dict) -> None:
        pass

    def after_val(self, runner, metrics: dict) -> None:
        pass

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        pass

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        pass

    def after_test(self, runner, metrics: dict) -> None:
        pass

    def on_exception(self, runner, exc: BaseException) -> None:
        pass

    def implements(self, point: str) -> bool:
        """True if this hook overrides ``point``."""
        return getattr(type(self), point, None) is not getattr(Hook, point)
