"""CheckpointHook: ``epoch_N.pth`` every ``interval`` epochs, ``latest.pth``, ``best.pth`` + ``best.json``.

Files are written atomically. ``max_keep_ckpts`` prunes old ``epoch_N.pth`` files (never
``latest``/``best``). On SIGTERM/Ctrl-C the current (mid-epoch) state goes to ``latest.pth`` so
``resume_from`` continues exactly there.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

from antgo_mlflow.engine.checkpoint import epoch_number, save_checkpoint
from antgo_mlflow.engine.hooks.base import Hook
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.fileio import atomic_write_json
from antgo_mlflow.registry import HOOKS

_LESS_IS_BETTER = ("loss", "error", "err", "mse", "mae", "rmse")


def infer_rule(key: str) -> str:
    """'less' for loss/error-like metric names, else 'greater'."""
    lowered = key.lower()
    return "less" if any(tok in lowered for tok in _LESS_IS_BETTER) else "greater"


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Save checkpoints into the Runner's ``work_dir`` (rank 0 only).

    Args:
        interval: save ``epoch_N.pth`` every N epochs (and after the last one); <=0 disables.
        max_keep_ckpts: keep only the newest N ``epoch_N.pth`` files; -1 keeps all.
        save_latest: also keep ``latest.pth`` up to date every epoch.
        save_optimizer: include optimizer/scheduler state (needed to resume).
        log_artifacts: read by the MLflow hook: ``'best'`` (default), ``'all'`` or ``'none'``.
    """

    priority = "NORMAL"

    def __init__(
        self,
        interval: int = 1,
        max_keep_ckpts: int = -1,
        save_latest: bool = True,
        save_optimizer: bool = True,
        log_artifacts: str = "best",
        by_epoch: bool = True,
    ):
        if log_artifacts not in ("best", "all", "none"):
            raise ValueError(
                f"log_artifacts must be 'best', 'all' or 'none', got {log_artifacts!r}"
            )
        if not by_epoch:
            raise ValueError("only by_epoch=True is supported (the Runner is epoch-based)")
        self.interval = int(interval)
        self.max_keep_ckpts = int(max_keep_ckpts)
        self.save_latest = save_latest
        self.save_optimizer = save_optimizer
        self.log_artifacts = log_artifacts
        self.saved: list[Path] = []  # epoch files written by this run (the MLflow hook reads it)
        self.best_path: Path | None = None
        self.best_improved = False
        self.save_best: str | None = None
        self.rule = "greater"

    def before_run(self, runner) -> None:
        evaluation = runner.cfg.get("evaluation") or {}
        self.save_best = evaluation.get("save_best") or None
        rule = evaluation.get("rule")
        if rule is not None and rule not in ("greater", "less"):
            raise ConfigError(f"evaluation.rule: expected 'greater' or 'less', got {rule!r}")
        self.rule = rule or (infer_rule(self.save_best) if self.save_best else "greater")
        existing = runner.work_dir / "best.pth"
        if runner.best_score is not None and existing.is_file():
            self.best_path = existing

    def _save(self, runner, path: Path) -> Path:
        return save_checkpoint(runner.checkpoint_dict(self.save_optimizer), path)

    def after_val_epoch(self, runner, metrics: dict) -> None:
        self.best_improved = False
        if not self.save_best or not metrics:
            return
        key = self.save_best
        if key == "auto":
            key = self.save_best = next(iter(metrics))
            self.rule = infer_rule(key)
        if key not in metrics:
            raise ConfigError(
                f"evaluation.save_best: the metric has no key {key!r} (it has: {', '.join(metrics)})"
            )
        score = float(metrics[key])
        if math.isnan(score):
            return
        best = runner.best_score
        if best is None or (score > best if self.rule == "greater" else score < best):
            runner.best_score = score
            self.best_path = self._save(runner, runner.work_dir / "best.pth")
            atomic_write_json(
                runner.work_dir / "best.json",
                {"epoch": runner.epoch, "key": key, "score": score, "metrics": metrics},
                indent=2,
            )
            self.best_improved = True

    def after_train_epoch(self, runner) -> None:
        epoch = runner.epoch
        due = self.interval > 0 and (epoch % self.interval == 0 or epoch == runner.max_epochs)
        latest = runner.work_dir / "latest.pth"
        if due:
            path = self._save(runner, runner.work_dir / f"epoch_{epoch}.pth")
            self.saved.append(path)
            if self.save_latest:
                _link_or_copy(path, latest)
            self._prune(runner.work_dir)
        elif self.save_latest:
            self._save(runner, latest)

    def on_exception(self, runner, exc: BaseException) -> None:
        # Only an interruption saves: after a crash the state may be garbage (NaN, half step).
        if runner.interrupted or isinstance(exc, KeyboardInterrupt):
            if runner.optimizers:
                path = self._save(runner, runner.work_dir / "latest.pth")
                print(
                    f"interrupted: saved {path} (epoch {runner.epoch}, iteration {runner.iter}); "
                    f"continue with --resume-from={path}",
                    file=sys.stderr,
                    flush=True,
                )

    def _prune(self, folder: Path) -> None:
        if self.max_keep_ckpts <= 0:
            return
        found = sorted((n, p) for p in folder.iterdir() if (n := epoch_number(p.name)) is not None)
        for _, path in found[: max(0, len(found) - self.max_keep_ckpts)]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _link_or_copy(src: Path, dst: Path) -> None:
    """Point ``dst`` at ``src``'s content atomically (hard link; a copy where links fail)."""
    tmp = dst.with_name(f".antgo-tmp-{dst.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
