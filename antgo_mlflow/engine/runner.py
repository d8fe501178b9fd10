"""The epoch-based Runner: builds everything from an antgo config, trains, validates and tests.

Logging, checkpoints and MLflow are hooks (``antgo_mlflow.engine.hooks``); the loop itself only
moves batches through the model, steps the optimizer and the LR schedule, and calls hook points.

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
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from antgo_mlflow.config import Config
from antgo_mlflow.engine import dist
from antgo_mlflow.engine.checkpoint import (
    load_checkpoint,
    load_weights,
    rng_state,
    set_rng_state,
)
from antgo_mlflow.engine.hooks.base import Hook, get_priority
from antgo_mlflow.engine.optim import build_optimizers, build_schedulers, current_lr
from antgo_mlflow.errors import AntgoError, ConfigError, DataError, UsageError
from antgo_mlflow.registry import DATASETS, HOOKS, METRICS, MODELS

log = logging.getLogger(__name__)

DATALOADER_KEYS = (
    "samples_per_gpu",
    "workers_per_gpu",
    "drop_last",
    "shuffle",
    "pin_memory",
    "persistent_workers",
    "prefetch_factor",
    "iters_per_epoch",
)
OPTIMIZER_CONFIG_KEYS = ("type", "grad_clip", "amp", "loss_scale")


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGTERM or Ctrl-C at an iteration boundary."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); ``deterministic`` also pins cuDNN/algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch sample dicts: equal-shape tensors/arrays are stacked, numbers become tensors,
    anything else (strings, ragged boxes, meta dicts) stays a list."""
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            try:
                out[key] = torch.stack(values)  # fast path; raises on ragged shapes
            except (RuntimeError, TypeError):
                out[key] = values
        elif isinstance(first, np.ndarray):
            try:
                out[key] = torch.from_numpy(np.stack(values))
            except (ValueError, TypeError):
                out[key] = values
        elif isinstance(first, (bool, int, float, np.number)):
            try:
                out[key] = torch.as_tensor(values)
            except (TypeError, ValueError, RuntimeError):
                out[key] = values
        else:
            out[key] = values
    return out


class LogBuffer:
    """Scalar loss tensors of recent iterations, kept on the device and reduced at log intervals
    only (appending is cheaper than an add kernel per key per iteration)."""

    def __init__(self):
        self._items: list[Mapping[str, torch.Tensor]] = []
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._epoch_count = 0

    def update(self, values: Mapping[str, torch.Tensor]) -> None:
        self._items.append({k: v.detach() for k, v in values.items()})

    def pop_interval(self) -> dict[str, float]:
        """Means since the last call (one device sync), folded into the epoch sums."""
        items, self._items = self._items, []
        if not items:
            return {}
        keys = list(items[0])
        sums = torch.stack(
            [
                torch.stack([it[k].float().reshape(()) for it in items if k in it]).sum()
                for k in keys
            ]
        )
        for k, v in zip(keys, sums.unbind(0)):
            self._epoch_sums[k] = self._epoch_sums.get(k, 0.0) + v
        self._epoch_count += len(items)
        return dict(zip(keys, (sums / len(items)).tolist()))

    def pop_epoch(self) -> dict[str, torch.Tensor]:
        """Per-key mean over the epoch as 0-d tensors (callers may all-reduce them)."""
        self.pop_interval()
        n = max(1, self._epoch_count)
        out = {k: (v / n).reshape(()) for k, v in self._epoch_sums.items()}
        self._epoch_sums, self._epoch_count = {}, 0
        return out


def import_custom_modules(cfg: Mapping) -> None:
    """Import ``custom_imports=dict(imports=[...])`` modules (they register models, hooks, ...)."""
    spec = cfg.get("custom_imports")
    if not spec:
        return
    names = spec.get("imports") if isinstance(spec, Mapping) else spec
    if isinstance(names, str):
        names = [names]
    allow_failed = (
        bool(spec.get("allow_failed_imports", False)) if isinstance(spec, Mapping) else False
    )
    import importlib

    for i, name in enumerate(names or []):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if not allow_failed:
                raise ConfigError(
                    f"custom_imports.imports.{i}: cannot import {name!r} ({exc})"
                ) from exc


def _resolve_device(gpu_id: int | str | None) -> torch.device:
    if gpu_id is None or gpu_id == "":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank() if dist.launched_by_torchrun() else 0)
        return torch.device("cpu")
    if isinstance(gpu_id, str):
        if gpu_id.strip().lower() == "cpu":
            return torch.device("cpu")
        try:
            gpu_id = int(gpu_id.split(",")[0])
        except ValueError:
            raise UsageError(f"--gpu-id={gpu_id}: expected a GPU index like 0 or 0,1") from None
    if gpu_id < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(
            f"--gpu-id={gpu_id}: CUDA is not available on this machine (use --gpu-id=-1)"
        )
    if dist.launched_by_torchrun():
        return torch.device("cuda", dist.local_rank())
    if gpu_id >= torch.cuda.device_count():
        raise UsageError(f"--gpu-id={gpu_id}: only {torch.cuda.device_count()} GPU(s) visible")
    return torch.device("cuda", gpu_id)


def _find_exp_name(cfg: Config) -> str:
    name = cfg.get("exp") or os.environ.get("ANTGO_EXP")
    if name:
        return str(name)
    if cfg.filename:
        parent = Path(cfg.filename).parent
        return parent.parent.name if parent.name == "configs" else parent.name
    return "default"


class Runner:
    """Epoch-based training and evaluation driven by an antgo config.

    Args:
        cfg: the loaded ``Config``.
        work_dir: where checkpoints (``epoch_N.pth``, ``latest.pth``, ``best.pth``) and logs go.
        gpu_id: GPU index; None picks CUDA when available, ``-1``/``"cpu"`` forces the CPU.
        distributed: None joins DDP when started by torchrun; True requires it.
        resume_from: a checkpoint (or ``"auto"`` for ``work_dir/latest.pth``) to continue,
            including its MLflow run.
        load_from: a checkpoint whose weights initialise the model (nothing else is restored).
        no_validate: skip validation during training.
        max_epochs: overrides ``cfg.max_epochs``.
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
        self.device = _resolve_device(gpu_id)
        if distributed and not dist.launched_by_torchrun():
            raise UsageError("--distributed: start with torchrun (or use --gpu-id=0,1 / --nproc)")
        self.distributed = dist.init_distributed(self.device) if distributed is not False else False
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self.exp_name = _find_exp_name(cfg)

        seed = seed if seed is not None else cfg.get("seed")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31) if self.is_main else 0
            seed = int(dist.broadcast_str(str(seed)))
        self.seed = int(seed)
        self.deterministic = deterministic or bool(cfg.get("deterministic", False))
        set_random_seed(self.seed, self.deterministic)

        self.max_epochs = self._max_epochs(max_epochs)
        self.no_validate = no_validate
        self.resume_from = resume_from
        self.load_from = load_from or cfg.get("load_from")
        self.load_report = None

        self.model = self._build_model()
        self.model_core = self.model  # the unwrapped model (DDP wraps it in train())
        if self.load_from:
            self.load_report = load_weights(self.model_core, self.load_from, "load_from")
            if self.is_main:
                print(self.load_report.text(), file=sys.stderr, flush=True)

        # Training state.
        self.epoch = 0  # completed epochs
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
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedule = None
        self.scaler = None
        self.train_loader = None
        self.val_loader = None
        self.metric = None
        self._hooks: list[Hook] = []
        self._point_cache: dict[str, list[Hook]] = {}
        self._stop_signal: int | None = None
        self._extra_hooks = list(hooks)

    # -- building ---------------------------------------------------------------------------------
    def _max_epochs(self, override: int | None) -> int:
        value = override
        if value is None:
            value = self.cfg.get("max_epochs")
        if value is None:
            value = (self.cfg.get("runner") or {}).get("max_epochs")
        if value is None:
            raise ConfigError(f"max_epochs: missing from {self.cfg.filename or 'the config'}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            where = "--max-epochs" if override is not None else "max_epochs"
            raise ConfigError(f"{where}: must be a positive integer, got {value!r}")
        return value

    def _build_model(self) -> torch.nn.Module:
        if not self.cfg.get("model"):
            raise ConfigError(f"model: missing from {self.cfg.filename or 'the config'}")
        model = MODELS.build(self.cfg.model, path="model")
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"model.type: {self.cfg.model.get('type')} did not build a torch module"
            )
        return model.to(self.device)

    def build_dataset(self, split: str):
        """Build ``data.<split>`` from DATASETS; errors name the config key."""
        data = self.cfg.get("data") or {}
        if not data.get(split):
            raise ConfigError(f"data.{split}: missing from {self.cfg.filename or 'the config'}")
        path = f"data.{split}"
        try:
            return DATASETS.build(data[split], path=path)
        except AntgoError as exc:
            if str(exc).startswith(path):
                raise
            raise type(exc)(f"{path}: {exc}") from exc
        except OSError as exc:
            raise DataError(f"{path}: {exc}") from exc

    def build_dataloader(self, split: str, dataset, train: bool) -> DataLoader:
        """A DataLoader for ``dataset`` from ``data.<split>_dataloader`` (validated)."""
        key = f"data.{split}_dataloader"
        opts = dict((self.cfg.get("data") or {}).get(f"{split}_dataloader") or {})
        for name in opts:
            if name not in DATALOADER_KEYS:
                raise ConfigError(
                    f"{key}.{name}: unknown option (allowed: {', '.join(DATALOADER_KEYS)})"
                )
        batch = opts.get("samples_per_gpu", 32)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
            raise ConfigError(f"{key}.samples_per_gpu: must be a positive integer, got {batch!r}")
        workers = opts.get("workers_per_gpu", 0)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"{key}.workers_per_gpu: must be an integer >= 0, got {workers!r}")
        shuffle = bool(opts.get("shuffle", train))
        kwargs: dict[str, Any] = dict(
            batch_size=batch,
            num_workers=workers,
            collate_fn=collate,
            drop_last=bool(opts.get("drop_last", False)) if train else False,
            # Pinning pays off only when worker processes prepare batches ahead of the GPU.
            pin_memory=bool(opts.get("pin_memory", self.device.type == "cuda" and workers > 0)),
        )
        if workers > 0:
            kwargs["persistent_workers"] = bool(opts.get("persistent_workers", True))
            if opts.get("prefetch_factor"):
                kwargs["prefetch_factor"] = int(opts["prefetch_factor"])
            kwargs["generator"] = torch.Generator().manual_seed(self.seed + self.rank)
        if not isinstance(dataset, IterableDataset):
            try:
                n = len(dataset)
            except TypeError:
                raise ConfigError(f"data.{split}: the dataset has no length") from None
            if n == 0:
                raise DataError(f"data.{split}: the dataset is empty")
            kwargs["sampler"] = dist.EpochSampler(n, shuffle=shuffle, seed=self.seed, pad=train)
        loader = DataLoader(dataset, **kwargs)
        loader.iters_per_epoch = opts.get("iters_per_epoch")
        return loader

    def _amp_settings(self) -> tuple[bool, torch.dtype]:
        opt_cfg = self.cfg.get("optimizer_config") or {}
        for name in opt_cfg:
            if name not in OPTIMIZER_CONFIG_KEYS:
                raise ConfigError(
                    f"optimizer_config.{name}: unknown option "
                    f"(allowed: {', '.join(OPTIMIZER_CONFIG_KEYS)})"
                )
        amp = opt_cfg.get("amp", True)
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return bool(amp) and self.device.type == "cuda", dtype

    def _grad_clip(self) -> dict | None:
        clip = (self.cfg.get("optimizer_config") or {}).get("grad_clip")
        if not clip:
            return None
        if not isinstance(clip, Mapping) or "max_norm" not in clip:
            raise ConfigError(
                "optimizer_config.grad_clip: expected dict(max_norm=..., norm_type=2)"
            )
        extra = set(clip) - {"max_norm", "norm_type"}
        if extra:
            raise ConfigError(f"optimizer_config.grad_clip.{sorted(extra)[0]}: unknown option")
        return {"max_norm": float(clip["max_norm"]), "norm_type": float(clip.get("norm_type", 2))}

    def _build_metric(self):
        evaluation = self.cfg.get("evaluation") or {}
        metric_cfg = evaluation.get("metric")
        if not metric_cfg:
            return None
        if isinstance(metric_cfg, (list, tuple)):
            metrics = [
                METRICS.build(m, path=f"evaluation.metric.{i}") for i, m in enumerate(metric_cfg)
            ]
            return _MetricList(metrics)
        return METRICS.build(metric_cfg, path="evaluation.metric")

    def _build_hooks(self) -> None:
        cfg = self.cfg
        hooks: list[Hook] = []
        log_cfg = dict(cfg.get("log_config") or {})
        listed = log_cfg.get("hooks")
        listed = [dict(type="TextLoggerHook")] if listed is None else list(listed)
        if self.is_main:
            ckpt_cfg = dict(cfg.get("checkpoint_config") or {})
            ckpt_cfg.setdefault("type", "CheckpointHook")
            ckpt_cfg.pop("out_dir", None)  # the Runner's work_dir wins (antgo's --root)
            hooks.append(self._build_hook(ckpt_cfg, "checkpoint_config"))
            types = [h.get("type") for h in listed if isinstance(h, Mapping)]
            if "MlflowLoggerHook" not in types and log_cfg.get("mlflow", True):
                listed.append(dict(type="MlflowLoggerHook"))
            for i, h in enumerate(listed):
                hooks.append(self._build_hook(h, f"log_config.hooks.{i}"))
        for i, h in enumerate(cfg.get("custom_hooks") or []):
            hooks.append(self._build_hook(h, f"custom_hooks.{i}"))
        hooks.extend(self._extra_hooks)
        for hook in hooks:
            self.register_hook(hook)

    def _build_hook(self, hook_cfg: Mapping, path: str) -> Hook:
        if not isinstance(hook_cfg, Mapping):
            raise ConfigError(f"{path}: expected dict(type=...), got {hook_cfg!r}")
        hook_cfg = dict(hook_cfg)
        priority = hook_cfg.pop("priority", None)
        hook = HOOKS.build(hook_cfg, path=path)
        if not isinstance(hook, Hook):
            raise ConfigError(f"{path}.type: {hook_cfg.get('type')} is not a Hook")
        if priority is not None:
            try:
                get_priority(priority)
            except ValueError as exc:
                raise ConfigError(f"{path}.priority: {exc}") from None
            hook.priority = priority
        return hook

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

    def call_hook(self, point: str, *args) -> None:
        """Call ``point`` on every hook that implements it, in priority order."""
        hooks = self._point_cache.get(point)
        if hooks is None:
            hooks = self._point_cache[point] = [h for h in self._hooks if h.implements(point)]
        for hook in hooks:
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
        if with_optimizer and self.optimizers:
            ckpt["optimizer"] = {n: o.state_dict() for n, o in self.optimizers.items()}
            if self.schedule is not None:
                ckpt["scheduler"] = self.schedule.state_dict()
            if self.scaler is not None:
                ckpt["scaler"] = self.scaler.state_dict()
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
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
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
        train_set = self.build_dataset("train")
        self.train_dataset = train_set
        self.train_loader = self.build_dataloader("train", train_set, train=True)
        try:
            self.iters_per_epoch = len(self.train_loader)
        except TypeError:
            if not self.train_loader.iters_per_epoch:
                raise ConfigError(
                    "data.train_dataloader.iters_per_epoch: needed for a dataset without a length"
                ) from None
            self.iters_per_epoch = int(self.train_loader.iters_per_epoch)
        if self.iters_per_epoch == 0:
            raise ConfigError(
                "data.train_dataloader.samples_per_gpu: larger than the training set with drop_last"
            )
        self.val_dataset = None
        data = self.cfg.get("data") or {}
        self.metric = None
        if (
            not self.no_validate
            and data.get("val")
            and (self.cfg.get("evaluation") or {}).get("metric")
        ):
            self.metric = self._build_metric()
            self.val_dataset = self.build_dataset("val")
            self.val_loader = self.build_dataloader("val", self.val_dataset, train=False)
        elif (
            not self.no_validate
            and (self.cfg.get("evaluation") or {}).get("metric")
            and self.is_main
        ):
            print("evaluation: the config has no data.val; validation is skipped", file=sys.stderr)
        if not self.cfg.get("optimizer"):
            raise ConfigError(f"optimizer: missing from {self.cfg.filename or 'the config'}")
        self.optimizers = build_optimizers(self.model_core, self.cfg.optimizer)
        self.schedule = build_schedulers(
            self.optimizers, self.cfg.get("lr_config"), self.max_epochs, self.iters_per_epoch
        )
        self.grad_clip = self._grad_clip()
        self.amp, self.amp_dtype = self._amp_settings()
        if self.amp:
            self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self._build_hooks()
        resume = self.resume_from
        if resume == "auto":
            latest = self.work_dir / "latest.pth"
            resume = latest if latest.is_file() else None
        if resume:
            self._resume(resume)
        if self.distributed:
            if self.device.type == "cuda" and self.cfg.get("syncBN", True):
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(self.cfg.get("find_unused_parameters", False)),
            )

    def train(self) -> str | None:
        """Train for ``max_epochs`` (continuing a resumed checkpoint); return the MLflow run id.

        SIGTERM and Ctrl-C stop at the next iteration boundary: ``latest.pth`` is written and the
        MLflow run ends KILLED. Any other exception ends it FAILED. Only rank 0 logs/saves.
        """
        self._prepare_training()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        restore = self._install_signal_handlers()
        try:
            self.call_hook("before_run")
            while self.epoch < self.max_epochs:
                self._train_epoch()
                if self.metric is not None and self._val_due():
                    self.validate()
                self.call_hook("after_train_epoch")
                self._check_stop()
            self.call_hook("after_run")
        except BaseException as exc:
            self._on_exception(exc)
            raise
        finally:
            restore()
        return self.run_id

    def _val_due(self) -> bool:
        interval = int((self.cfg.get("evaluation") or {}).get("interval", 1) or 1)
        return self.epoch % interval == 0 or self.epoch == self.max_epochs

    def _on_exception(self, exc: BaseException) -> None:
        for hook in list(self._hooks):
            if hook.implements("on_exception"):
                try:
                    hook.on_exception(self, exc)
                except Exception as hook_exc:  # one broken hook must not hide the others
                    log.warning("hook %s failed in on_exception: %s", type(hook).__name__, hook_exc)

    @property
    def interrupted(self) -> bool:
        """True once SIGTERM/SIGINT arrived (the run ends KILLED, not FAILED)."""
        return self._stop_signal is not None

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def handler(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self._stop_signal = signum

        signals = [signal.SIGTERM, signal.SIGINT]
        if hasattr(signal, "SIGHUP"):  # a closed terminal/ssh session: stop cleanly as well
            signals.append(signal.SIGHUP)
        for sig in signals:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)

        def restore():
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def _check_stop(self) -> None:
        if self._stop_signal is not None:
            raise Interrupted(self._stop_signal)

    def _to_device(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, Any, dict]:
        nb = self.device.type == "cuda"
        image = batch["image"].to(self.device, non_blocking=nb)
        label = batch.get("label")
        if isinstance(label, torch.Tensor):
            label = label.to(self.device, non_blocking=nb)
        extra = {
            k: v.to(self.device, non_blocking=nb)
            for k, v in batch.items()
            if k not in ("image", "label") and isinstance(v, torch.Tensor)
        }
        return image, label, extra

    def _train_epoch(self) -> None:
        model = self.model
        model.train()
        loader = self.train_loader
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, dist.EpochSampler):
            sampler.set_epoch(self.epoch)
            if self.inner_iter:
                sampler.skip(self.inner_iter * loader.batch_size)
        else:
            self.inner_iter = 0  # a stream restarts its epoch
        self.log_buffer = LogBuffer()
        self.call_hook("before_train_epoch")
        optimizers = list(self.optimizers.values())
        per_iter_sched = (
            self.schedule is not None and not self.schedule.by_epoch and not self.schedule.constant
        )
        scaler = self.scaler
        clip = self.grad_clip
        params = (
            [p for o in optimizers for g in o.param_groups for p in g["params"]] if clip else []
        )
        autocast = (
            torch.autocast("cuda", dtype=self.amp_dtype) if self.amp else contextlib.nullcontext()
        )
        has_before = bool(self._hooks_for("before_train_iter"))
        samples = 0
        checked = False
        start = time.perf_counter()
        limit = self.iters_per_epoch
        for batch_idx, batch in enumerate(loader, start=self.inner_iter):
            if batch_idx >= limit:
                break
            if has_before:
                self.call_hook("before_train_iter", batch_idx, batch)
            if "image" not in batch or "label" not in batch:
                raise DataError("data.train: samples need 'image' and 'label' fields")
            image, label, extra = self._to_device(batch)
            with autocast:
                outputs = model(image, label=label, **extra)
            if not checked:
                self._check_outputs(outputs)
                checked = True
            loss = _total_loss(outputs)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if clip:
                    for opt in optimizers:
                        scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, **clip)
                for opt in optimizers:
                    scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(params, **clip)
                for opt in optimizers:
                    opt.step()
            if per_iter_sched:
                self.schedule.step()
            samples += image.shape[0]
            self.iter += 1
            self.inner_iter = batch_idx + 1
            scalars = {
                k: v for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1
            }
            scalars["loss"] = loss
            self.log_buffer.update(scalars)
            if self.iter % self.log_interval == 0:
                self.log_vars = self.log_buffer.pop_interval()
                self.log_vars.update(current_lr(self.optimizers))
            else:
                self.log_vars = None
            self.call_hook("after_train_iter", batch_idx, batch, outputs)
            if self._stop_signal is not None:
                raise Interrupted(self._stop_signal)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        if self.schedule is not None and self.schedule.by_epoch:
            self.schedule.step()
        epoch_means = self.log_buffer.pop_epoch()
        if self.distributed and epoch_means:
            keys = sorted(epoch_means)
            reduced = dist.all_reduce_mean(torch.stack([epoch_means[k] for k in keys]))
            epoch_means = dict(zip(keys, reduced.unbind(0)))
        self.epoch_log = {k: float(v) for k, v in epoch_means.items()}
        self.epoch_log.update(current_lr(self.optimizers))
        self.epoch_log["throughput_img_s"] = samples * self.world_size / max(elapsed, 1e-9)
        self.epoch_log["epoch_time_s"] = elapsed
        self.log_vars = None
        self.epoch += 1
        self.inner_iter = 0

    def _hooks_for(self, point: str) -> list[Hook]:
        hooks = self._point_cache.get(point)
        if hooks is None:
            hooks = self._point_cache[point] = [h for h in self._hooks if h.implements(point)]
        return hooks

    def _check_outputs(self, outputs: Any) -> None:
        name = (self.cfg.get("model") or {}).get("type")
        if not isinstance(outputs, Mapping) or not any(str(k).startswith("loss") for k in outputs):
            raise ConfigError(
                f"model.type: {name} returned {type(outputs).__name__} when called with label=; "
                "expected a dict with 'loss*' entries"
            )

    # -- evaluation -------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, C) and labels (N,) over ``loader`` (gathered from all ranks)."""
        model = self.model_core
        was_training = model.training
        model.eval()
        preds, labels = [], []
        autocast = (
            torch.autocast("cuda", dtype=self.amp_dtype)
            if getattr(self, "amp", False)
            else contextlib.nullcontext()
        )
        for batch in loader:
            image, label, extra = self._to_device(batch)
            with autocast:
                if hasattr(model, "predict"):
                    prob = model.predict(image)
                else:
                    prob = torch.softmax(model(image), dim=-1)
            preds.append(prob.float())
            if label is None:
                raise DataError("data.val: samples need a 'label' field to be evaluated")
            labels.append(label.reshape(prob.shape[0], -1).squeeze(-1) if label.dim() else label)
        model.train(was_training)
        pred = torch.cat(preds) if preds else torch.zeros((0, 0))
        lab = torch.cat(labels) if labels else torch.zeros((0,), dtype=torch.long)
        pred, lab = dist.gather_rows(pred), dist.gather_rows(lab)
        return pred.cpu().numpy(), lab.cpu().numpy()

    def validate(self) -> dict[str, float]:
        """Evaluate on ``data.val`` with ``evaluation.metric``; hooks get the metric dict."""
        self.call_hook("before_val_epoch")
        preds, labels = self.predict(self.val_loader)
        metrics: dict[str, float] = {}
        if self.is_main:
            metrics = _as_float_dict(self.metric(preds, labels), "evaluation.metric")
            self.last_val = {"preds": preds, "labels": labels, "metrics": metrics}
        self.call_hook("after_val_epoch", metrics)
        self.call_hook("after_val", metrics)
        return metrics

    def class_names(self, dataset=None) -> list[str] | None:
        """Class names exposed by the dataset (``class_names``/``CLASSES``), if any."""
        for ds in (
            dataset,
            getattr(self, "val_dataset", None),
            getattr(self, "train_dataset", None),
        ):
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
        metric = self._build_metric()
        if metric is None:
            raise ConfigError("evaluation.metric: needed to test a model")
        dataset = self.build_dataset(split)
        loader = self.build_dataloader(split, dataset, train=False)
        self.amp, self.amp_dtype = self._amp_settings()
        preds, labels = self.predict(loader)
        if not self.is_main:
            return {}
        metrics = _as_float_dict(metric(preds, labels), "evaluation.metric")
        if json_out:
            from antgo_mlflow.fileio import atomic_write_json

            atomic_write_json(json_out, metrics, indent=2)
        self.call_hook("after_test", metrics)
        log_test_results(
            self,
            metrics,
            metric=metric,
            preds=preds,
            labels=labels,
            run_id=ckpt_meta.get("mlflow_run_id"),
            json_out=json_out,
            class_names=self.class_names(dataset),
        )
        return metrics


class _MetricList:
    """Several metrics evaluated as one (their dicts merged)."""

    def __init__(self, metrics: list):
        self.metrics = metrics

    def __call__(self, preds, labels) -> dict:
        out: dict = {}
        for m in self.metrics:
            out.update(m(preds, labels))
        return out

    def artifacts(self, preds, labels, out_dir, class_names=None) -> list:
        paths: list = []
        for m in self.metrics:
            if hasattr(m, "artifacts"):
                paths.extend(m.artifacts(preds, labels, out_dir, class_names=class_names) or [])
        return paths


def _total_loss(outputs: Mapping[str, Any]) -> torch.Tensor:
    total = None
    for key, value in outputs.items():
        if not str(key).startswith("loss"):
            continue
        if isinstance(value, (list, tuple)):
            value = sum(v.mean() for v in value)
        total = value if total is None else total + value
    return total


def _as_float_dict(result: Any, path: str) -> dict[str, float]:
    """A metric's result as ``{name: float}``; non-scalar entries (arrays) are left out."""
    if not isinstance(result, Mapping):
        raise ConfigError(f"{path}: the metric returned {type(result).__name__}, expected a dict")
    out = {}
    for key, value in result.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def run_from_config(
    config_path: str | os.PathLike,
    cfg_options: Sequence[str] | Mapping[str, Any] = (),
    process: str = "train",
    work_dir: str | os.PathLike | None = None,
    gpu_id: int | str | None = None,
    resume_from: str | os.PathLike | None = None,
    load_from: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    max_epochs: int | None = None,
    no_validate: bool = False,
    json_out: str | os.PathLike | None = None,
    nproc: int | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    distributed: bool | None = None,
):
    """Load ``config_path`` (+ ``cfg_options`` overrides) and train or test.

    ``gpu_id="0,1"`` (several GPUs) or ``nproc=N`` (N CPU processes, gloo) launches torchrun and
    waits; the caller gets the same result as a one-process run.

    Returns:
        train: the MLflow run id. test: the metric dict.
    """
    if process not in ("train", "test"):
        raise UsageError(f"--process={process}: expected train or test")
    cfg = Config.fromfile(config_path)
    if cfg_options:
        cfg.merge_overrides(cfg_options)
    from antgo_mlflow.engine.launch import parse_gpu_ids

    gpu_ids = parse_gpu_ids(gpu_id)
    n = int(nproc) if nproc else max(1, len(gpu_ids))
    if process == "train" and n > 1 and not dist.launched_by_torchrun():
        from antgo_mlflow.engine.launch import launch_training

        return launch_training(
            dict(
                config_path=str(Path(config_path).resolve()),
                cfg_options=list(cfg_options)
                if not isinstance(cfg_options, Mapping)
                else [f"{k}={v!r}" for k, v in cfg_options.items()],
                work_dir=str(Path(work_dir).resolve()) if work_dir else None,
                resume_from=str(resume_from) if resume_from else None,
                load_from=str(load_from) if load_from else None,
                max_epochs=max_epochs,
                no_validate=no_validate,
                seed=seed,
                deterministic=deterministic,
            ),
            nproc=n,
            gpu_ids=gpu_ids,
        )
    single = gpu_ids[0] if gpu_ids else None
    runner = Runner(
        cfg,
        work_dir=work_dir,
        gpu_id=single if not dist.launched_by_torchrun() else (0 if gpu_ids else None),
        distributed=distributed,
        resume_from=resume_from if process == "train" else None,
        load_from=load_from if process == "train" else None,
        no_validate=no_validate,
        max_epochs=max_epochs,
        seed=seed,
        deterministic=deterministic,
    )
    try:
        if process == "train":
            return runner.train()
        return runner.test(checkpoint or load_from, json_out=json_out)
    finally:
        if runner.distributed:
            dist.destroy()
