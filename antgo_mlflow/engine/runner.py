"""The Runner: builds a run from an antgo config and drives its loops (train, val, test).

What an iteration does belongs to the model (``model.train_step(batch, optim_wrapper)``, see
``antgo_mlflow.models.base``); how iterations are arranged to the loops (``engine/loops.py``,
LOOPS); logging, checkpoints and MLflow to hooks (``engine/hooks``). The Runner holds the
state they share (model, optimizer wrapper, LR schedule, counters) and saves/restores it.

Example:
    >>> cfg = Config.fromfile("cifar10/configs/config.py")
    >>> run_id = Runner(cfg, work_dir="./output").train()
    >>> Runner(cfg, work_dir="./output").test("./output/best.pth", json_out="metrics.json")
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from antgo_mlflow.config import Config
from antgo_mlflow.engine import dist
from antgo_mlflow.engine.checkpoint import load_checkpoint, load_weights, rng_state, set_rng_state
from antgo_mlflow.engine.dataloader import build_split, build_train_sources
from antgo_mlflow.engine.device import choose_device, warn_once
from antgo_mlflow.engine.hooks.base import Hook, get_priority
from antgo_mlflow.engine.hooks.builder import config_hooks
from antgo_mlflow.engine.label_check import check_training_labels
from antgo_mlflow.engine.loops import TestLoop, ValLoop, build_train_loop
from antgo_mlflow.engine.metrics import build_metric
from antgo_mlflow.engine.optim import build_schedulers
from antgo_mlflow.engine.optim_wrapper import amp_dtype, build_optim_wrapper, optimizers_of
from antgo_mlflow.engine.run_setup import find_exp_name, import_custom_modules, set_random_seed
from antgo_mlflow.engine.signals import Interrupted, install_stop_handlers
from antgo_mlflow.errors import ConfigError, UsageError
from antgo_mlflow.models.base import as_steps
from antgo_mlflow.registry import MODELS

log = logging.getLogger(__name__)


def _check_max_epochs(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"--max-epochs: must be a positive integer, got {value!r}")
    return value


def _resolve_max_epochs(cfg: Config, max_epochs: int | None) -> None:
    """Write a ``--max-epochs`` override into the config, so that what MLflow records (params,
    the config artifact, checkpoints' config) is what trains."""
    if max_epochs is None:
        return
    loop = cfg.get("train_cfg") or {}
    if loop.get("type", "EpochBasedTrainLoop") != "EpochBasedTrainLoop":
        return  # an iteration loop counts train_cfg.max_iters
    overrides = []
    if loop.get("max_epochs") is not None:
        overrides.append(f"train_cfg.max_epochs={max_epochs}")
    if cfg.get("max_epochs") is not None or not overrides:
        overrides.append(f"max_epochs={max_epochs}")
    cfg.merge_overrides(overrides)


class Runner:
    """Training and evaluation driven by an antgo config.

    Args:
        cfg: the loaded ``Config``.
        work_dir: where checkpoints (``epoch_N.pth``, ``latest.pth``, ``best.pth``) and logs go.
        gpu_id: GPU index; None picks CUDA when available, ``-1``/``"cpu"`` forces the CPU; a
            GPU the machine does not have falls back to the CPU with a warning
            (``device_note``, also a tag of the MLflow run).
        distributed: None joins DDP when started by torchrun; True requires it.
        resume_from: a checkpoint (or ``"auto"`` for ``work_dir/latest.pth``) to continue,
            including its MLflow run.
        load_from: a checkpoint whose weights initialise the model (nothing else is restored).
        no_validate: skip validation during training.
        max_epochs: overrides ``max_epochs`` / ``train_cfg.max_epochs``.
        seed: overrides ``cfg.seed``; without either a random seed is drawn (and logged).
        deterministic: deterministic algorithms (slower).
        hooks: extra Hook instances (besides the config's).
    """

    def __init__(
        self,
        cfg: Config,
        work_dir: str | os.PathLike | None = None,
        gpu_id: int | str | None = None,
        distributed: bool | None = None,
        resume_from: str | os.PathLike | None = None,
        load_from: str | os.PathLike | None = None,
        no_validate: bool = False,
        max_epochs: int | None = None,
        seed: int | None = None,
        deterministic: bool = False,
        hooks: Sequence[Hook] = (),
    ):
        if not isinstance(cfg, Config):
            cfg = Config(dict(cfg))
        self.cfg = cfg
        import_custom_modules(cfg)
        ckpt_cfg = cfg.get("checkpoint_config") or {}
        self.work_dir = Path(
            work_dir or cfg.get("work_dir") or ckpt_cfg.get("out_dir") or "./output"
        )
        # A GPU the machine lacks falls back (one warning line); the MLflow hook records why.
        self.device, self.device_note = choose_device(gpu_id)
        warn_once(self.device_note)
        if distributed and not dist.launched_by_torchrun():
            raise UsageError("--distributed: start with torchrun (or use --gpu-id=0,1 / --nproc)")
        self.distributed = dist.init_distributed(self.device) if distributed is not False else False
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self.exp_name = find_exp_name(cfg)
        self._seed(seed, deterministic)
        self.max_epochs = _check_max_epochs(max_epochs)  # set from the config by the train loop
        _resolve_max_epochs(cfg, self.max_epochs)
        self.max_iters = 0
        self.no_validate = no_validate
        self.resume_from = resume_from
        self.load_from = load_from or cfg.get("load_from")
        self.load_report = None
        self.model_core = self._build_model()  # the nn.Module: state_dict, export, logging
        self.model = as_steps(self.model_core)  # what the loops call: train_step, val_step, ...
        if self.load_from:
            self.load_report = load_weights(self.model_core, self.load_from, "load_from")
            if self.is_main:
                print(self.load_report.text(), file=sys.stderr, flush=True)
        self.amp_dtype = amp_dtype(cfg.get("optimizer_config"), self.device)
        self._init_state(cfg, hooks)

    def _seed(self, seed: int | None, deterministic: bool) -> None:
        seed = seed if seed is not None else self.cfg.get("seed")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31) if self.is_main else 0
            seed = int(dist.broadcast_str(str(seed)))
        self.seed = int(seed)
        self.deterministic = deterministic or bool(self.cfg.get("deterministic", False))
        set_random_seed(self.seed, self.deterministic)

    def _init_state(self, cfg: Config, hooks: Sequence[Hook]) -> None:
        self.epoch = 0  # completed epochs (rounds of an IterBasedTrainLoop)
        self.iter = 0  # completed iterations (the MLflow step)
        self.inner_iter = 0  # completed iterations of the current epoch
        self.iters_per_epoch = 0
        self.best_score: float | None = None
        self.run_id: str | None = None  # set by the MLflow hook
        self.resume_checkpoint: dict | None = None
        self.log_vars: dict[str, float] | None = None
        self.log_interval = int((cfg.get("log_config") or {}).get("interval", 50) or 50)
        self.epoch_log: dict[str, float] = {}
        self.last_val: dict | None = None
        self.optim_wrapper = None
        self.schedule = None
        self.train_loaders: dict = {}
        self.train_datasets: dict = {}
        self.train_dataset = self.val_dataset = None
        self.train_loop = self.val_loop = None
        self.metric = None
        self._hooks: list[Hook] = []
        self._point_cache: dict[str, list[Hook]] = {}
        self.stop_signal: int | None = None
        self._extra_hooks = list(hooks)

    def _build_model(self) -> torch.nn.Module:
        if not self.cfg.get("model"):
            raise ConfigError(f"model: missing from {self.cfg.filename or 'the config'}")
        model = MODELS.build(self.cfg.model, path="model")
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"model.type: {self.cfg.model.get('type')} did not build a torch module"
            )
        return model.to(self.device)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``{"": optimizer}`` or ``{name: optimizer}`` (per-module ``optimizer`` configs)."""
        return optimizers_of(self.optim_wrapper)

    def eval_context(self):
        """The forward context of evaluation: autocast under AMP."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    # -- hooks ------------------------------------------------------------------------------------
    def _build_hooks(self) -> None:
        for hook in [*config_hooks(self.cfg, self.is_main), *self._extra_hooks]:
            self.register_hook(hook)

    def register_hook(self, hook: Hook, priority: int | str | None = None) -> None:
        """Add a hook; hooks run in ascending priority, ties in registration order."""
        if priority is not None:
            hook.priority = priority
        get_priority(hook.priority)
        self._hooks.append(hook)
        self._hooks.sort(key=lambda h: get_priority(h.priority))  # stable: keeps ties in order
        self._point_cache.clear()

    @property
    def hooks(self) -> list[Hook]:
        return list(self._hooks)

    def get_hook(self, cls: type) -> Hook | None:
        return next((h for h in self._hooks if isinstance(h, cls)), None)

    def hooks_for(self, point: str) -> list[Hook]:
        """The hooks implementing ``point``, in priority order."""
        hooks = self._point_cache.get(point)
        if hooks is None:
            hooks = self._point_cache[point] = [h for h in self._hooks if h.implements(point)]
        return hooks

    def call_hook(self, point: str, *args) -> None:
        """Call ``point`` on every hook that implements it, in priority order."""
        for hook in self.hooks_for(point):
            getattr(hook, point)(self, *args)

    # -- state ------------------------------------------------------------------------------------
    def checkpoint_dict(self, with_optimizer: bool = True) -> dict:
        """Everything needed to resume: model, optimizer, schedule, counters, RNG, run id."""
        ckpt: dict[str, Any] = {
            "meta": {
                "epoch": self.epoch,
                "iter": self.iter,
                "inner_iter": self.inner_iter,
                "iters_per_epoch": self.iters_per_epoch,
                "max_epochs": self.max_epochs,
                "seed": self.seed,
                "best_score": self.best_score,
                "mlflow_run_id": self.run_id,
                "exp": self.exp_name,
                "config_dict": self.cfg.to_data(),  # plain data: loading never runs it
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "torch": str(torch.__version__),
            },
            "state_dict": {k: v.detach().cpu() for k, v in self.model_core.state_dict().items()},
        }
        if with_optimizer and self.optim_wrapper is not None:
            ckpt["optimizer"] = {n: o.state_dict() for n, o in self.optimizers.items()}
            if self.schedule is not None:
                ckpt["scheduler"] = self.schedule.state_dict()
            if self.optim_wrapper.scaler is not None:
                ckpt["scaler"] = self.optim_wrapper.scaler.state_dict()
        ckpt["rng"] = rng_state()
        self.call_hook("before_save_checkpoint", ckpt)
        return ckpt

    def _resume(self, path: str | os.PathLike) -> None:
        ckpt = load_checkpoint(path, "resume_from")
        meta = ckpt.get("meta") or {}
        if "state_dict" not in ckpt or "epoch" not in meta:
            raise ConfigError(f"resume_from: {path} is not a training checkpoint (no meta/epoch)")
        try:
            self.model_core.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"resume_from: {path} does not fit the model: {first}") from None
        for name, opt in self.optimizers.items():
            state = (ckpt.get("optimizer") or {}).get(name)
            if state is not None:
                opt.load_state_dict(state)
        if self.schedule is not None and ckpt.get("scheduler"):
            self.schedule.load_state_dict(ckpt["scheduler"])
        if self.optim_wrapper.scaler is not None and ckpt.get("scaler"):
            self.optim_wrapper.scaler.load_state_dict(ckpt["scaler"])
        self.epoch = int(meta["epoch"])
        self.iter = int(meta.get("iter", 0))
        self.inner_iter = int(meta.get("inner_iter", 0))
        self.best_score = meta.get("best_score")
        self.run_id = meta.get("mlflow_run_id")
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
        self.resume_checkpoint = ckpt
        self.call_hook("after_load_checkpoint", ckpt)
        if self.is_main:
            print(
                f"resumed from {path}: epoch {self.epoch}, iteration {self.iter}",
                file=sys.stderr,
                flush=True,
            )

    # -- training ---------------------------------------------------------------------------------
    def _prepare_training(self) -> None:
        sources = build_train_sources(self.cfg, self.seed, self.rank, self.device)
        self.train_datasets = {name: ds for name, (ds, _) in sources.items()}
        self.train_loaders = {name: loader for name, (_, loader) in sources.items()}
        self.train_dataset = next(iter(self.train_datasets.values()))
        check_training_labels(self.model, self.train_datasets)
        self.train_loop = build_train_loop(self, self.cfg)
        self.train_loop.setup()
        self._prepare_validation()
        if not self.cfg.get("optimizer"):
            raise ConfigError(f"optimizer: missing from {self.cfg.filename or 'the config'}")
        self.optim_wrapper = build_optim_wrapper(
            self.model_core,
            self.cfg.optimizer,
            self.cfg.get("optimizer_config"),
            self.device,
            sync_grads=self.distributed,
        )
        self.schedule = build_schedulers(
            self.optimizers,
            self.cfg.get("lr_config"),
            self.max_epochs,
            self.iters_per_epoch,
            total_iters=self.max_iters,
        )
        check = getattr(self.model_core, "check_train_setup", None)
        if callable(check):  # a wrapper refuses bad sources here, before any run or step
            check(self.train_datasets, self.train_loaders, self.optim_wrapper)
        self._build_hooks()
        resume = self.resume_from
        if resume == "auto":
            latest = self.work_dir / "latest.pth"
            resume = latest if latest.is_file() else None
        if resume:
            self._resume(resume)
        self.optim_wrapper.initialize_count_status(self.iter, self.max_iters)
        if self.distributed:
            if self.device.type == "cuda" and self.cfg.get("syncBN", True):
                self.model_core = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model_core)
                self.model = as_steps(self.model_core)
            dist.broadcast_module(self.model_core)  # every rank starts from rank 0's weights

    def _prepare_validation(self) -> None:
        data = self.cfg.get("data") or {}
        metric_cfg = (self.cfg.get("evaluation") or {}).get("metric")
        self.val_dataset = self.metric = self.val_loop = None
        if self.no_validate or not metric_cfg:
            return
        if not data.get("val"):
            if self.is_main:
                print(
                    "evaluation: the config has no data.val; validation is skipped", file=sys.stderr
                )
            return
        self.metric = build_metric(metric_cfg)
        self.val_dataset, loader = build_split(self.cfg, "val", self.seed, self.rank, self.device)
        self.val_loop = ValLoop(self, loader, self.metric)

    def train(self) -> str | None:
        """Train (continuing a resumed checkpoint) with the config's loop; return the MLflow run id.

        SIGTERM and Ctrl-C stop at the next iteration boundary: ``latest.pth`` is written and the
        MLflow run ends KILLED. Any other exception ends it FAILED. Only rank 0 logs/saves.
        """
        self._prepare_training()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        restore = install_stop_handlers(self._record_signal, lambda: self.interrupted)
        try:
            self.call_hook("before_run")
            self.train_loop.run()
            self.call_hook("after_run")
        except BaseException as exc:
            self._on_exception(exc)
            raise
        finally:
            restore()
        return self.run_id

    def validate(self) -> dict[str, float]:
        """Evaluate on ``data.val`` with ``evaluation.metric``; hooks get the metric dict."""
        return self.val_loop.run() if self.val_loop is not None else {}

    def _record_signal(self, signum: int) -> None:
        self.stop_signal = signum

    def check_stop(self) -> None:
        """Raise ``Interrupted`` once a stop signal arrived."""
        if self.stop_signal is not None:
            raise Interrupted(self.stop_signal)

    @property
    def interrupted(self) -> bool:
        """True once SIGTERM/SIGINT arrived (the run ends KILLED, not FAILED)."""
        return self.stop_signal is not None

    def _on_exception(self, exc: BaseException) -> None:
        for hook in list(self._hooks):
            if hook.implements("on_exception"):
                try:
                    hook.on_exception(self, exc)
                except Exception as hook_exc:  # one broken hook must not hide the others
                    log.warning("hook %s failed in on_exception: %s", type(hook).__name__, hook_exc)

    # -- evaluation -------------------------------------------------------------------------------
    def class_names(self, dataset=None) -> list[str] | None:
        """Class names exposed by the dataset (``class_names``/``CLASSES``), if any."""
        for ds in (dataset, self.val_dataset, self.train_dataset):
            for attr in ("class_names", "CLASSES", "classes"):
                names = getattr(ds, attr, None) if ds is not None else None
                if names:
                    return [str(n) for n in names]
        return None

    def test(
        self, checkpoint: str | os.PathLike | None = None, json_out: str | os.PathLike | None = None
    ) -> dict:
        """Evaluate ``checkpoint`` on ``data.test`` (or ``data.val``), write ``json_out``, log to MLflow.

        The metrics go to the active MLflow run, else to the training run recorded in the
        checkpoint (as ``test/<name>``), else to a new run tagged ``antgo.process=test``.
        """
        from antgo_mlflow.engine.hooks.mlflow_logger import log_test_results

        ckpt_meta: dict = {}
        if checkpoint:
            self.load_report = load_weights(self.model_core, checkpoint, "--checkpoint")
            ckpt_meta = dict(load_checkpoint(checkpoint, "--checkpoint").get("meta") or {})
            if self.is_main and not self.load_report.clean:
                print(self.load_report.text(), file=sys.stderr, flush=True)
        data = self.cfg.get("data") or {}
        split = "test" if data.get("test") else "val"
        if not data.get(split):
            raise ConfigError(f"data.test: missing from {self.cfg.filename or 'the config'}")
        metric_cfg = (self.cfg.get("evaluation") or {}).get("metric")
        if not metric_cfg:
            raise ConfigError("evaluation.metric: needed to test a model")
        metric = build_metric(metric_cfg)
        dataset, loader = build_split(self.cfg, split, self.seed, self.rank, self.device)
        metrics = TestLoop(self, loader, metric).run()
        if not self.is_main:
            return {}
        if json_out:
            from antgo_mlflow.fileio import atomic_write_json

            atomic_write_json(json_out, metrics, indent=2)
        self.call_hook("after_test", metrics)
        log_test_results(
            self,
            metrics,
            metric=metric,
            run_id=ckpt_meta.get("mlflow_run_id"),
            json_out=json_out,
            class_names=self.class_names(dataset),
            dataset=dataset,
            data_cfg=data.get(split),
        )
        return metrics
