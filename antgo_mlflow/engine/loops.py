"""Loops registered in LOOPS: what a run iterates, and when it validates.

* ``EpochBasedTrainLoop(max_epochs, val_interval=1)``: every epoch walks the training data once
  (``iters_per_epoch`` iterations: the longest source's batches, or
  ``data.train_dataloader.iters_per_epoch``), then validates every ``val_interval`` epochs.
* ``IterBasedTrainLoop(max_iters, val_interval=1000)``: ``max_iters`` iterations in rounds of
  ``val_interval`` (a round plays the part of an epoch for hooks, checkpoints and validation);
  the sources cycle across rounds, each pass over a source in a new seeded order.
* ``ValLoop`` / ``TestLoop``: ``model.val_step`` / ``model.test_step`` on every batch, the
  predictions fed to the metric (``reset`` / ``process`` / ``compute``).

Config: ``train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)`` or
``train_cfg=dict(type='IterBasedTrainLoop', max_iters=5000, val_interval=500)``. Without
``train_cfg`` antgo's keys say the same: top-level ``max_epochs`` and ``evaluation.interval``
(giving both a key and its ``train_cfg`` twin with different values is an error).

With several sources (``data.train=dict(labeled=..., unlabeled=...)``) each iteration draws one
batch from each and hands the model ``{'labeled': batch, 'unlabeled': batch}``; a source that
runs out starts its next pass (reshuffled) while the others continue. Where every source is
(pass, position) is a function of the iteration number, so a resumed run draws exactly the
batches the interrupted one would have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from antgo_mlflow.engine import dist
from antgo_mlflow.engine.device import batch_size, to_device
from antgo_mlflow.engine.metrics import as_float_dict
from antgo_mlflow.engine.optim import current_lr
from antgo_mlflow.engine.signals import Interrupted
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import LOOPS

#: Sampler epochs of consecutive passes over a cycled source are this far apart.
PASS_STRIDE = 100_003


class LogBuffer:
    """Scalars of recent iterations, kept on the device and reduced at log intervals only
    (appending is cheaper than an add kernel per key per iteration). Python floats are kept
    apart and averaged on the host."""

    def __init__(self):
        self._items: list[Mapping[str, torch.Tensor]] = []
        self._floats: list[Mapping[str, float]] = []
        self._epoch_sums: dict[str, Any] = {}
        self._epoch_count = 0

    def update(self, values: Mapping[str, Any]) -> None:
        tensors, floats = {}, {}
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                tensors[k] = v.detach()
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                floats[k] = float(v)
        self._items.append(tensors)
        if floats:
            self._floats.append(floats)

    def pop_interval(self) -> dict[str, float]:
        """Means since the last call (one device sync), folded into the epoch sums."""
        items, self._items = self._items, []
        floats, self._floats = self._floats, []
        if not items:
            return {}
        out: dict[str, float] = {}
        keys = list(items[0])
        if keys:
            sums = torch.stack(
                [
                    torch.stack([it[k].float().reshape(()) for it in items if k in it]).sum()
                    for k in keys
                ]
            )
            for k, v in zip(keys, sums.unbind(0)):
                self._epoch_sums[k] = self._epoch_sums.get(k, 0.0) + v
            out.update(zip(keys, (sums / len(items)).tolist()))
        for k in {k for f in floats for k in f}:
            total = sum(f[k] for f in floats if k in f)
            self._epoch_sums[k] = self._epoch_sums.get(k, 0.0) + total
            out[k] = total / len(floats)
        self._epoch_count += len(items)
        return out

    def pop_epoch(self) -> dict[str, torch.Tensor]:
        """Per-key mean over the epoch as 0-d tensors (callers may all-reduce them)."""
        self.pop_interval()
        n = max(1, self._epoch_count)
        out = {k: (torch.as_tensor(v) / n).reshape(()) for k, v in self._epoch_sums.items()}
        self._epoch_sums, self._epoch_count = {}, 0
        return out


def _source_batches(loader, position: int, epoch_key: int, stop: int) -> Iterator:
    """Batches of one source from iteration ``position`` of a run of passes over it (each pass
    a new sampler epoch), until ``stop`` batches were drawn in all."""
    sampler = getattr(loader, "sampler", None)
    try:
        length = len(loader)
    except TypeError:
        length = None  # a stream: restarts when it ends, never skips
    while position < stop:
        done = 0
        if length:
            pass_index, done = divmod(position, length)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch_key + pass_index * PASS_STRIDE)
            if done and hasattr(sampler, "skip"):
                sampler.skip(done * loader.batch_size)
        drawn = 0
        for batch in loader:
            yield batch
            drawn += 1
            position += 1
            if position >= stop:
                return
        if drawn == 0:
            raise ConfigError("data.train: a training source yields no batches")


def train_batches(sources: Mapping[str, Any], start: int, stop: int, epoch_key: int) -> Iterator:
    """One batch per iteration ``start..stop-1``: the batch of the one source, or a dict of
    one batch per named source."""
    if len(sources) == 1:
        (loader,) = sources.values()
        yield from _source_batches(loader, start, epoch_key, stop)
        return
    iterators = {n: _source_batches(ld, start, epoch_key, stop) for n, ld in sources.items()}
    for _ in range(start, stop):
        yield {name: next(it) for name, it in iterators.items()}


def source_lengths(sources: Mapping[str, Any]) -> dict[str, int | None]:
    """Batches per pass of each source (None for a stream)."""
    out = {}
    for name, loader in sources.items():
        try:
            out[name] = len(loader)
        except TypeError:
            out[name] = None
    return out


class BaseTrainLoop:
    """What both training loops share: one epoch (or round) of iterations, validation timing."""

    def __init__(self, runner, val_interval: int | None = None):
        self.runner = runner
        self.val_interval = val_interval

    # -- set-up -----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Set the runner's ``max_epochs``, ``iters_per_epoch``, ``max_iters`` from the sources."""
        raise NotImplementedError

    def _pass_length(self) -> int:
        runner = self.runner
        lengths = source_lengths(runner.train_loaders)
        override = next(
            (ld.iters_per_epoch for ld in runner.train_loaders.values() if ld.iters_per_epoch),
            None,
        )
        if override:
            return int(override)
        if any(v is None for v in lengths.values()):
            raise ConfigError(
                "data.train_dataloader.iters_per_epoch: needed for a dataset without a length"
            )
        for name, length in lengths.items():
            if length == 0:  # drop_last and a batch larger than what this process samples
                loader = runner.train_loaders[name]
                key = "train" if name == "train" else name
                samples = len(loader.sampler) if loader.sampler is not None else "?"
                per_rank = (
                    f" per process ({runner.world_size} processes)" if runner.world_size > 1 else ""
                )
                raise ConfigError(
                    f"data.{key}_dataloader.samples_per_gpu: a batch of {loader.batch_size} is "
                    f"larger than the {samples} training samples{per_rank} of data.train"
                    f"{'' if name == 'train' else '.' + name} with drop_last=True; lower "
                    "samples_per_gpu or set drop_last=False"
                )
        return max(lengths.values())

    # -- running ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Train until ``runner.max_epochs`` epochs (rounds) are done."""
        runner = self.runner
        while runner.epoch < runner.max_epochs:
            self.run_epoch()
            if runner.val_loop is not None and self.val_due():
                runner.val_loop.run()
            runner.call_hook("after_train_epoch")
            runner.check_stop()

    def val_due(self) -> bool:
        epoch = self.runner.epoch
        return epoch % self.epoch_val_interval == 0 or epoch == self.runner.max_epochs

    epoch_val_interval = 1
    restarts_streams = True

    def epoch_key(self) -> int:
        """The sampler epoch of the sources' first pass in this epoch."""
        return self.runner.epoch

    def position(self) -> int:
        """The iteration number the sources are positioned by."""
        return self.runner.inner_iter

    def epoch_iters(self) -> int:
        return self.runner.iters_per_epoch

    def run_epoch(self) -> None:
        """One epoch (round): ``train_step`` per batch, logs, LR steps, hook points."""
        runner = self.runner
        runner.model_core.train()
        loaders = runner.train_loaders.values()
        if self.restarts_streams and any(not hasattr(ld.sampler, "skip") for ld in loaders):
            runner.inner_iter = 0  # a stream cannot skip: its (resumed) epoch starts over
        runner.log_buffer = LogBuffer()
        runner.call_hook("before_train_epoch")
        start_iter = self.position() - runner.inner_iter
        batches = train_batches(
            runner.train_loaders,
            self.position(),
            start_iter + self.epoch_iters(),
            self.epoch_key(),
        )
        started = time.perf_counter()
        samples = self._iterate(batches)
        if runner.device.type == "cuda":
            torch.cuda.synchronize(runner.device)
        self._end_epoch(samples, time.perf_counter() - started)

    def _iterate(self, batches: Iterator) -> int:
        runner = self.runner
        model, wrapper = runner.model, runner.optim_wrapper
        device, non_blocking = runner.device, runner.device.type == "cuda"
        schedule = runner.schedule
        per_iter = schedule is not None and not schedule.by_epoch and not schedule.constant
        has_before = bool(runner.hooks_for("before_train_iter"))
        buffer, interval = runner.log_buffer, runner.log_interval
        samples = 0
        for batch_idx, batch in enumerate(batches, start=runner.inner_iter):
            if has_before:
                runner.call_hook("before_train_iter", batch_idx, batch)
            batch = to_device(batch, device, non_blocking)
            outputs = model.train_step(batch, wrapper)
            if per_iter:
                schedule.step()
            samples += batch_size(batch)
            runner.iter += 1
            runner.inner_iter = batch_idx + 1
            buffer.update(outputs)
            if runner.iter % interval == 0:
                runner.log_vars = buffer.pop_interval()
                runner.log_vars.update(current_lr(runner.optimizers))
            else:
                runner.log_vars = None
            runner.call_hook("after_train_iter", batch_idx, batch, outputs)
            if runner.stop_signal is not None:
                raise Interrupted(runner.stop_signal)
        return samples

    def _end_epoch(self, samples: int, elapsed: float) -> None:
        runner = self.runner
        if runner.schedule is not None and runner.schedule.by_epoch:
            runner.schedule.step()
        epoch_means = runner.log_buffer.pop_epoch()
        if runner.distributed:
            if epoch_means:
                keys = sorted(epoch_means)
                reduced = dist.all_reduce_mean(torch.stack([epoch_means[k] for k in keys]))
                epoch_means = dict(zip(keys, reduced.unbind(0)))
            dist.broadcast_buffers(runner.model_core)  # rank 0's BN statistics, as DDP keeps
        runner.epoch_log = {k: float(v) for k, v in epoch_means.items()}
        runner.epoch_log.update(current_lr(runner.optimizers))
        runner.epoch_log["throughput_img_s"] = samples * runner.world_size / max(elapsed, 1e-9)
        runner.epoch_log["epoch_time_s"] = elapsed
        runner.log_vars = None
        runner.epoch += 1
        runner.inner_iter = 0


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be a positive integer, got {value!r}")
    return value


@LOOPS.register_module()
class EpochBasedTrainLoop(BaseTrainLoop):
    """Train ``max_epochs`` epochs, validating every ``val_interval`` epochs (and after the last).

    Args:
        max_epochs: default: the config's top-level ``max_epochs``.
        val_interval: default: ``evaluation.interval`` (1).
    """

    def __init__(self, runner, max_epochs: int | None = None, val_interval: int | None = None):
        super().__init__(runner, val_interval)
        self.max_epochs = max_epochs

    def setup(self) -> None:
        runner = self.runner
        runner.max_epochs = runner.max_epochs or _positive(self.max_epochs, "train_cfg.max_epochs")
        runner.iters_per_epoch = self._pass_length()
        runner.max_iters = runner.max_epochs * runner.iters_per_epoch
        self.epoch_val_interval = _positive(self.val_interval or 1, "train_cfg.val_interval")


@LOOPS.register_module()
class IterBasedTrainLoop(BaseTrainLoop):
    """Train ``max_iters`` iterations in rounds of ``val_interval``, validating after each round.

    Args:
        max_iters: total iterations of the run.
        val_interval: iterations per round (validation, epoch logs, ``epoch_N.pth`` = round N).
    """

    def __init__(self, runner, max_iters: int, val_interval: int = 1000):
        super().__init__(runner, val_interval)
        self.max_iters = _positive(max_iters, "train_cfg.max_iters")

    def setup(self) -> None:
        runner = self.runner
        self._pass_length()  # checks the sources (streams need iters_per_epoch)
        interval = _positive(self.val_interval, "train_cfg.val_interval")
        runner.iters_per_epoch = min(interval, self.max_iters)
        runner.max_iters = self.max_iters
        runner.max_epochs = math.ceil(self.max_iters / runner.iters_per_epoch)

    restarts_streams = False  # the round goes on; a stream just reads from its start again

    def epoch_key(self) -> int:
        return 0  # passes are counted over the whole run, not per round

    def position(self) -> int:
        return self.runner.iter

    def epoch_iters(self) -> int:
        runner = self.runner
        return min(runner.iters_per_epoch, runner.max_iters - runner.epoch * runner.iters_per_epoch)

    def val_due(self) -> bool:
        return True


class _EvalLoop:
    """Run a model step over a loader and a metric over its predictions."""

    step = "val_step"
    split = "val"

    def __init__(self, runner, loader=None, metric=None):
        self.runner = runner
        self.loader = loader
        self.metric = metric

    @torch.inference_mode()
    def evaluate(self) -> dict[str, float]:
        """The metric dict over the whole loader (every process's predictions under DDP)."""
        runner, metric = self.runner, self.metric
        model = runner.model
        step = getattr(model, self.step)
        was_training = runner.model_core.training
        runner.model_core.eval()
        metric.reset()
        device, non_blocking = runner.device, runner.device.type == "cuda"
        try:
            for batch in self.loader:
                batch = to_device(batch, device, non_blocking)
                with runner.eval_context():
                    predictions = step(batch)
                metric.process(predictions, batch)
        finally:
            runner.model_core.train(was_training)
        return as_float_dict(metric.compute(), "evaluation.metric")


@LOOPS.register_module()
class ValLoop(_EvalLoop):
    """Validation on ``data.val`` with ``evaluation.metric``; hooks get the metric dict."""

    def run(self) -> dict[str, float]:
        runner = self.runner
        runner.call_hook("before_val_epoch")
        metrics = self.evaluate()
        runner.last_val = {"metrics": metrics}
        runner.call_hook("after_val_epoch", metrics)
        runner.call_hook("after_val", metrics)
        return metrics


@LOOPS.register_module()
class TestLoop(_EvalLoop):
    """Evaluation of ``model.test_step`` on ``data.test`` (or ``data.val``)."""

    step = "test_step"
    split = "test"

    def run(self) -> dict[str, float]:
        return self.evaluate()


def _twin(cfg: Mapping, loop_cfg: dict, key: str, top: Any, top_key: str) -> None:
    """Fill ``loop_cfg[key]`` from antgo's top-level key; both given and different: an error."""
    if top is None:
        return
    if loop_cfg.get(key) is not None and loop_cfg[key] != top:
        raise ConfigError(
            f"train_cfg.{key}: {loop_cfg[key]!r} contradicts {top_key}={top!r}; set one of them"
        )
    loop_cfg[key] = top


def build_train_loop(runner, cfg: Mapping) -> BaseTrainLoop:
    """The training loop from ``train_cfg`` (default ``EpochBasedTrainLoop``) and antgo's keys."""
    loop_cfg = dict(cfg.get("train_cfg") or {})
    loop_cfg.setdefault("type", "EpochBasedTrainLoop")
    top_epochs = cfg.get("max_epochs")
    if top_epochs is None:
        top_epochs = (cfg.get("runner") or {}).get("max_epochs")
    if top_epochs is not None:
        _positive(top_epochs, "max_epochs")
    interval = (cfg.get("evaluation") or {}).get("interval")
    if loop_cfg["type"] == "EpochBasedTrainLoop":
        _twin(cfg, loop_cfg, "max_epochs", top_epochs, "max_epochs")
        _twin(cfg, loop_cfg, "val_interval", interval, "evaluation.interval")
        if loop_cfg.get("max_epochs") is None and not runner.max_epochs:
            raise ConfigError(f"max_epochs: missing from {cfg.filename or 'the config'}")
    elif loop_cfg["type"] == "IterBasedTrainLoop":
        if top_epochs is not None:
            raise ConfigError("max_epochs: the IterBasedTrainLoop counts train_cfg.max_iters")
        if interval not in (None, 1):
            raise ConfigError(
                "evaluation.interval: the IterBasedTrainLoop validates every "
                "train_cfg.val_interval iterations; remove this key"
            )
    loop = LOOPS.build(loop_cfg, path="train_cfg", default_args={"runner": runner})
    if not isinstance(loop, BaseTrainLoop):
        raise ConfigError(f"train_cfg.type: {loop_cfg['type']} is not a training loop")
    return loop
