"""TextLoggerHook: a progress bar per epoch and one text line every ``log_config.interval`` iterations."""

from __future__ import annotations

import sys
import time

from antgo_mlflow.engine.hooks.base import Hook
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import HOOKS


def _fmt(value: float) -> str:
    return f"{value:.3e}" if value and (abs(value) < 1e-3 or abs(value) >= 1e4) else f"{value:.4f}"


@HOOKS.register_module()
class TextLoggerHook(Hook):
    """Print ``Epoch [e/E][i/N] lr: .. loss: ..`` lines to stdout (rank 0) and to ``work_dir/train.log``.

    Args:
        interval: print every N iterations (default ``log_config.interval``; must be a multiple
            of it: the values are the means the Runner reduces every ``log_config.interval``).
        progress: show a tqdm bar per epoch (only on a terminal, see ``antgo_mlflow.progress``:
            in a log file the lines alone tell the story, one per log interval and per epoch).
        log_file: also append the lines to ``work_dir/train.log``.
        by_epoch: lines say ``Epoch [e/E][i/N]``; False: ``Iter [i/total]``.
    """

    priority = "VERY_LOW"

    def __init__(
        self,
        interval: int | None = None,
        progress: bool = True,
        log_file: bool = True,
        by_epoch: bool = True,
    ):
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int) or interval < 1
        ):
            raise ValueError(f"interval must be a positive integer, got {interval!r}")
        self.interval = interval
        self.by_epoch = bool(by_epoch)
        self.progress = progress
        self.log_file = log_file
        self._bar = None
        self._fh = None
        self._t = 0.0

    def _emit(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)
        if self._fh is not None:
            self._fh.write(line + "\n")
            self._fh.flush()

    def before_run(self, runner) -> None:
        if self.interval is None:
            self.interval = runner.log_interval
        elif self.interval % runner.log_interval:
            raise ConfigError(
                f"TextLoggerHook.interval: {self.interval} is not a multiple of "
                f"log_config.interval ({runner.log_interval})"
            )
        if self.log_file:
            runner.work_dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(runner.work_dir / "train.log", "a", encoding="utf-8")  # noqa: SIM115
        self._emit(
            f"training {runner.exp_name}: epochs {runner.epoch + 1}..{runner.max_epochs}, "
            f"{runner.iters_per_epoch} iterations/epoch, device {runner.device}, "
            f"world size {runner.world_size}, work_dir {runner.work_dir}"
        )

    def before_train_epoch(self, runner) -> None:
        self._t = time.perf_counter()
        from antgo_mlflow.progress import bars_enabled, progress

        if self.progress and bars_enabled():
            self._bar = progress(
                None,
                total=runner.iters_per_epoch,
                desc=f"epoch {runner.epoch + 1}/{runner.max_epochs}",
                unit="it",
            )
            if runner.inner_iter:
                self._bar.update(runner.inner_iter)

    def after_train_iter(self, runner, batch_idx, batch, outputs) -> None:
        if self._bar is not None:
            self._bar.update(1)
        if runner.log_vars is not None and runner.iter % self.interval == 0:
            parts = " ".join(f"{k}: {_fmt(v)}" for k, v in runner.log_vars.items())
            if self.by_epoch:
                where = (
                    f"Epoch [{runner.epoch + 1}/{runner.max_epochs}]"
                    f"[{batch_idx + 1}/{runner.iters_per_epoch}]"
                )
            else:
                where = f"Iter [{runner.iter}/{runner.max_iters}]"
            self._emit(f"{where} {parts}")

    def after_train_epoch(self, runner) -> None:
        self._close_bar()
        parts = " ".join(f"{k}: {_fmt(v)}" for k, v in runner.epoch_log.items())
        self._emit(f"Epoch [{runner.epoch}/{runner.max_epochs}] done: {parts}")

    def after_val_epoch(self, runner, metrics) -> None:
        if metrics:
            parts = " ".join(f"{k}: {_fmt(v)}" for k, v in metrics.items())
            self._emit(f"Epoch [{runner.epoch}/{runner.max_epochs}] val: {parts}")

    def after_test(self, runner, metrics) -> None:
        self._emit("test: " + " ".join(f"{k}: {_fmt(v)}" for k, v in metrics.items()))

    def after_run(self, runner) -> None:
        self._close()

    def on_exception(self, runner, exc) -> None:
        self._close()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _close(self) -> None:
        self._close_bar()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
