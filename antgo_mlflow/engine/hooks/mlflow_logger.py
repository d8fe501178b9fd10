"""MlflowLoggerHook: the training run in MLflow (params, config, metrics, checkpoints, model, datasets).

Everything goes through ``MlflowClient`` with an explicit run id, so several runs may be alive in
one process (HPO). Step metrics are sent every ``log_config.interval`` iterations as one
asynchronous ``log_batch`` and awaited at the end of each epoch and at exit. The run ends FINISHED,
FAILED on an exception, or KILLED on SIGTERM/Ctrl-C; a run resumed from a checkpoint is the same
run, reopened, with steps continuing where they stopped.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from antgo_mlflow import env
from antgo_mlflow.engine.hooks.base import Hook
from antgo_mlflow.engine.hooks.mlflow_datasets import dataset_inputs, run_datasets
from antgo_mlflow.errors import TrackingError
from antgo_mlflow.registry import HOOKS

log = logging.getLogger(__name__)

PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a param value
PARAM_KEY_LIMIT = 250
BATCH_PARAMS = 100
MAX_METRICS = 900  # MLflow accepts up to 1000 metrics per log_batch
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
RUN_ID_FILE_ENV = env.ANTGO_RUN_ID_FILE  # set by the DDP launcher: rank 0 writes the run id there


def experiment_name(cfg: Mapping) -> str:
    """The experiment a new run goes to: ``experiment_name``, $MLFLOW_EXPERIMENT_NAME, ``project``."""
    return str(
        cfg.get("experiment_name")
        or os.environ.get(EXPERIMENT_ENV)
        or cfg.get("project")
        or "Default"
    )


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(f"experiment {name!r} is deleted; restore it or pick another name")
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created concurrently by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_items(flat: Mapping[str, Any]) -> list[Param]:
    from antgo_mlflow.credentials import redact

    params = []
    for key, value in redact(dict(flat)).items():  # a password in a config never becomes a param
        text = json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)
        params.append(Param(str(key)[:PARAM_KEY_LIMIT], text[:PARAM_VALUE_LIMIT]))
    return params


def default_run_name(runner) -> str:
    """``<exp>-<yyyymmdd-hhmmss>``: MLflow's random names come from ``random``, which the
    Runner has seeded, so every run of one config would get the same one."""
    return f"{runner.exp_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def log_inputs(client: MlflowClient, run_id: str, inputs: list) -> None:
    """Log dataset inputs; a failure is a warning (inputs are nice to have, never fatal)."""
    if not inputs:
        return
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as exc:
        log.warning("could not log dataset inputs: %s", exc)


def logged_model_id(client: MlflowClient, run_id: str, name: str = "model") -> str | None:
    """The id of the newest logged model ``name`` of the run (None when it logged none)."""
    try:
        outputs = client.get_run(run_id).outputs
        ids = [o.model_id for o in (outputs.model_outputs if outputs else [])]
        models = [client.get_logged_model(i) for i in ids]
    except MlflowException:
        return None
    named = [m for m in models if m.name == name] or models
    return max(named, key=lambda m: m.creation_timestamp).model_id if named else None


def _pip_requirements() -> list[str]:
    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"numpy=={np.__version__}",
    ]


def log_torch_model(
    client: MlflowClient, run_id: str, model: torch.nn.Module, example: np.ndarray
) -> str | None:
    """Log ``model`` as the run's ``model`` (pt2 with signature and input example; pickle fallback)."""
    from mlflow.models import infer_signature

    cpu_model = copy.deepcopy(model).cpu().eval()
    example = np.ascontiguousarray(example.astype(np.float32))
    with torch.inference_mode():
        output = cpu_model(torch.from_numpy(example))
    if isinstance(output, torch.Tensor):
        signature = infer_signature(example, output.float().numpy())
    else:
        signature = infer_signature(example)
    kwargs = dict(
        name="model",
        input_example=example,
        signature=signature,
        pip_requirements=_pip_requirements(),
        run_id=run_id,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            info = mlflow.pytorch.log_model(cpu_model, **kwargs)
        except Exception as exc:  # torch.export cannot trace every model: keep a pickled one
            log.warning("pt2 export of the model failed (%s); logging it in pickle format", exc)
            info = mlflow.pytorch.log_model(cpu_model, serialization_format="pickle", **kwargs)
    return getattr(info, "model_uri", None)


@HOOKS.register_module()
class MlflowLoggerHook(Hook):
    """Log the run to MLflow (rank 0 only; the Runner adds it by default).

    Args:
        interval: log step metrics every N iterations (default ``log_config.interval``; the
            values are the means since the Runner's previous log point).
        batch_seconds: step metrics wait up to this long to be sent together in one
            asynchronous ``log_batch`` (each request costs milliseconds of CPU in the store);
            everything is flushed at the end of each epoch and at exit. 0 sends at every log.
        log_model: log the final model (``model.inference_model()``) with ``mlflow.pytorch``.
        log_artifacts: ``'best'``/``'all'``/``'none'``; default ``checkpoint_config.log_artifacts``.
        run_name: name of a newly created run.
        tags: extra tags for the run.
        parent_run_id: make a new run that is a child of this one (an HPO trial under its
            study), even when a run is active or ``$MLFLOW_RUN_ID`` is set.
        experiment_id: the experiment of a new run (default: ``experiment_name(cfg)``).

    An exception with a ``run_status`` attribute (``'KILLED'``) ends the run with that status and
    logs its ``run_tags`` (a dict) instead of ``antgo.error``: a pruned HPO trial.
    """

    priority = "VERY_LOW"

    def __init__(
        self,
        interval: int | None = None,
        batch_seconds: float = 2.0,
        log_model: bool = True,
        log_artifacts: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        by_epoch: bool = True,
        parent_run_id: str | None = None,
        experiment_id: str | None = None,
    ):
        if log_artifacts not in (None, "best", "all", "none"):
            raise ValueError(
                f"log_artifacts must be 'best', 'all' or 'none', got {log_artifacts!r}"
            )
        self.interval = interval
        self.batch_seconds = float(batch_seconds)
        self._last_send = 0.0
        self.log_model = log_model
        self.log_artifacts = log_artifacts
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.experiment_id = experiment_id
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self.owns_run = False
        self._pending: list[Metric] = []
        self._ops: list = []
        self._example: np.ndarray | None = None
        self._logged_ckpts: set[str] = set()
        self._ended = False
        self._heartbeat = None  # engine.run_owner: owner tags + heartbeat while training
        self._logged_until: dict[str, int] = {}  # a resumed run skips steps logged before a kill
        # Seconds spent in this hook: run setup, during epochs (step metrics, flushes), finish.
        self.timing = {"setup": 0.0, "epochs": 0.0, "finish": 0.0}
        if not by_epoch:  # antgo configs carry by_epoch=True; False would be silently ignored
            raise ValueError("by_epoch=False is not supported (train/ metrics step by iteration)")

    # -- run lifecycle ----------------------------------------------------------------------------
    def before_run(self, runner) -> None:
        with self._timed("setup"):
            self._start(runner)

    def _start(self, runner) -> None:
        self.client = client = MlflowClient()
        cfg = runner.cfg
        resumed = runner.run_id is not None
        active = mlflow.active_run()
        if resumed:
            try:
                run = client.get_run(runner.run_id)
                self.run_id = run.info.run_id
                self.owns_run = active is None or active.info.run_id != self.run_id
            except MlflowException:
                log.warning(
                    "run %s from the checkpoint is not in this tracking store; starting a new run",
                    runner.run_id,
                )
                resumed = False
        own_run = bool(self.parent_run_id or self.experiment_id)  # never the caller's run
        if not resumed:
            if active is not None and not own_run:
                self.run_id, self.owns_run = active.info.run_id, False
            elif os.environ.get("MLFLOW_RUN_ID") and not own_run:
                self.run_id, self.owns_run = os.environ["MLFLOW_RUN_ID"], True
                client.get_run(self.run_id)  # fails loudly if the id is wrong
            else:
                exp_id = self.experiment_id or get_or_create_experiment(
                    client, experiment_name(cfg)
                )
                from mlflow.tracking.context.registry import resolve_tags

                tags = resolve_tags({"antgo.process": "train"})
                if self.parent_run_id:
                    tags["mlflow.parentRunId"] = self.parent_run_id
                run_name = self.run_name or cfg.get("run_name") or default_run_name(runner)
                run = client.create_run(exp_id, tags=tags, run_name=run_name)
                self.run_id, self.owns_run = run.info.run_id, True
        runner.run_id = self.run_id
        from antgo_mlflow.engine.run_owner import take_over

        self._heartbeat, self._logged_until = take_over(client, self.run_id, resumed)
        client.update_run(self.run_id, status="RUNNING")
        if run_id_file := env.text(RUN_ID_FILE_ENV):
            from antgo_mlflow.fileio import atomic_write_text

            atomic_write_text(run_id_file, self.run_id)

        tags = {
            "antgo.exp": runner.exp_name,
            "antgo.config_hash": cfg.hash(),
            "antgo.process": "train",
            "antgo.work_dir": str(Path(runner.work_dir).resolve()),
            "antgo.device": str(runner.device),
            **{str(k): str(v) for k, v in self.tags.items()},
        }
        if getattr(runner, "device_note", None):  # --gpu-id named a GPU this machine lacks
            tags["antgo.device_note"] = runner.device_note
        if resumed:
            tags["antgo.resumed_at_iter"] = str(runner.iter)
        client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        if not resumed:  # the resolved config: overrides and --max-epochs included
            flat = dict(cfg.flatten())
            flat.update(
                {
                    "runner.seed": runner.seed,
                    "runner.world_size": runner.world_size,
                    "runner.iters_per_epoch": runner.iters_per_epoch,
                    "runner.device": str(runner.device),
                }
            )
            existing = client.get_run(self.run_id).data.params
            params = [p for p in _param_items(flat) if p.key not in existing]
            for i in range(0, len(params), BATCH_PARAMS):
                client.log_batch(self.run_id, params=params[i : i + BATCH_PARAMS])
            self._log_datasets(runner)
        if runner.load_report is not None and not resumed:
            client.log_text(self.run_id, runner.load_report.text() + "\n", "load_from.txt")
        with tempfile.TemporaryDirectory() as tmp:
            name = Path(cfg.filename).name if cfg.filename else "config.py"
            path = Path(tmp) / name
            from antgo_mlflow.config import Config
            from antgo_mlflow.credentials import redact

            Config(redact(cfg.to_dict()), cfg.filename).dump(path)  # the snapshot holds no secret
            client.log_artifact(self.run_id, str(path))
        self.interval = self.interval or runner.log_interval
        self._last_send = time.perf_counter()

    def _log_datasets(self, runner) -> None:
        data = runner.cfg.get("data") or {}
        train = getattr(runner, "train_datasets", None) or {"train": runner.train_dataset}
        inputs = []
        for name, dataset in train.items():  # several sources: data.train.<name>
            cfg = data.get("train") if name == "train" else (data.get("train") or {}).get(name)
            inputs += dataset_inputs(dataset, cfg, name, "train")
        if getattr(runner, "val_dataset", None) is not None:
            inputs += dataset_inputs(runner.val_dataset, data.get("val"), "val", "validation")
        log_inputs(self.client, self.run_id, inputs)

    # -- metrics ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _timed(self, key: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timing[key] += time.perf_counter() - start

    def after_train_iter(self, runner, batch_idx, batch, outputs) -> None:
        if self._example is None:
            image = _example_image(batch)
            if image is not None:  # two rows: torch.export would specialise a batch of one
                self._example = image[:2].detach().cpu().numpy()
        if runner.log_vars is None or runner.iter % self.interval:
            return
        start = time.perf_counter()
        ts = _now_ms()
        step = runner.iter
        self._pending.extend(
            Metric(f"train/{k}", float(v), ts, step) for k, v in runner.log_vars.items()
        )
        if start - self._last_send >= self.batch_seconds or len(self._pending) >= MAX_METRICS:
            self._send()
        self.timing["epochs"] += time.perf_counter() - start

    def _send(self) -> None:
        if self._pending and self.run_id:
            batch, self._pending = self._pending, []
            if self._logged_until:
                batch = [m for m in batch if m.step > self._logged_until.get(m.key, -1)]
                if not batch:
                    return
            self._ops.append(self.client.log_batch(self.run_id, metrics=batch, synchronous=False))
            self._last_send = time.perf_counter()

    def flush(self, wait_last: bool = True) -> None:
        """Send what is queued and wait until MLflow has stored it.

        ``wait_last=False`` (epoch ends) leaves the batch just sent writing in the background
        while the next epoch starts; earlier batches are confirmed stored.
        """
        self._send()
        ops, self._ops = self._ops, []
        if not wait_last and ops:
            ops, self._ops = ops[:-1], ops[-1:]
        for op in ops:
            if op is not None:
                op.wait()

    def after_val_epoch(self, runner, metrics) -> None:
        ts = _now_ms()
        self._pending.extend(
            Metric(f"val/{k}", float(v), ts, runner.epoch) for k, v in metrics.items()
        )

    def after_train_epoch(self, runner) -> None:
        with self._timed("epochs"):
            self._epoch_end(runner)

    def _epoch_end(self, runner) -> None:
        ts = _now_ms()
        step = runner.epoch
        self._pending.extend(
            Metric(f"epoch/{k}", float(v), ts, step) for k, v in runner.epoch_log.items()
        )
        self.flush(wait_last=False)
        if self._artifact_mode(runner) == "all":
            ckpt = self._checkpoint_hook(runner)
            for path in list(ckpt.saved) if ckpt else []:
                self._log_checkpoint(path)

    # -- artifacts --------------------------------------------------------------------------------
    def _checkpoint_hook(self, runner):
        from antgo_mlflow.engine.hooks.checkpoint import CheckpointHook

        return runner.get_hook(CheckpointHook)

    def _artifact_mode(self, runner) -> str:
        if self.log_artifacts:
            return self.log_artifacts
        ckpt = self._checkpoint_hook(runner)
        return ckpt.log_artifacts if ckpt else "none"

    def _log_checkpoint(self, path: Path) -> None:
        key = str(path)
        if key in self._logged_ckpts or not Path(path).is_file():
            return
        self.client.log_artifact(self.run_id, str(path), "checkpoints")
        self._logged_ckpts.add(key)

    def _log_best(self, runner) -> None:
        if self._artifact_mode(runner) in ("best", "all"):
            ckpt = self._checkpoint_hook(runner)
            if ckpt and ckpt.best_path is not None:
                self._log_checkpoint(ckpt.best_path)
                best_json = Path(ckpt.best_path).with_name("best.json")
                if best_json.is_file():
                    self.client.log_artifact(self.run_id, str(best_json), "checkpoints")

    def _log_metric_artifacts(self, runner) -> None:
        metric = runner.metric
        if not runner.last_val or metric is None or not hasattr(metric, "artifacts"):
            return
        with tempfile.TemporaryDirectory() as tmp:
            try:  # the metric still holds the last validation's predictions
                paths = metric.artifacts(Path(tmp), class_names=runner.class_names())
            except Exception as exc:  # a plot failing must not fail the run
                log.warning("metric artifacts failed: %s", exc)
                return
            for p in paths or []:
                self.client.log_artifact(self.run_id, str(p), "metrics")

    # -- end of run -------------------------------------------------------------------------------
    def after_run(self, runner) -> None:
        with self._timed("finish"):
            self._finish(runner)
        self._end(runner, "FINISHED")

    def _finish(self, runner) -> None:
        self.flush()
        self._log_best(runner)
        self._log_metric_artifacts(runner)
        if self.log_model and self._example is not None:
            log_torch_model(self.client, self.run_id, inference_model(runner), self._example)

    def on_exception(self, runner, exc: BaseException) -> None:
        if self.run_id is None or self._ended:
            return
        status = getattr(exc, "run_status", None)  # e.g. a pruned HPO trial: KILLED + its tags
        killed = runner.interrupted or isinstance(exc, KeyboardInterrupt) or status == "KILLED"
        with contextlib.suppress(Exception):
            self.flush()
        if killed:
            with contextlib.suppress(Exception):
                self._log_best(runner)
        tags = getattr(exc, "run_tags", None) or {"antgo.error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(Exception):
            self.client.log_batch(
                self.run_id, tags=[RunTag(str(k), str(v)[:500]) for k, v in tags.items()]
            )
        self._end(runner, status or ("KILLED" if killed else "FAILED"), force=True)

    def _end(self, runner, status: str, force: bool = False) -> None:
        self._ended = True
        if self._heartbeat is not None:
            self._heartbeat.stop()
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            if force:  # end the caller's run too, so its `with` block does not overwrite the status
                mlflow.end_run(status)
            return
        if self.owns_run or force:
            self.client.set_terminated(self.run_id, status)


def inference_model(runner) -> torch.nn.Module:
    """The module a run logs as its model: ``model.inference_model()`` (a semi-supervised or
    distillation wrapper's EMA copy or student), else the trained model itself."""
    model = runner.model_core
    get = getattr(model, "inference_model", None)
    return get() if callable(get) else model


def _example_image(batch: Any) -> torch.Tensor | None:
    """The batch's ``image`` (or the first source's, or a weak view) to log the model with."""
    if not isinstance(batch, Mapping):
        return None
    for key in ("image", "image_weak"):
        if isinstance(batch.get(key), torch.Tensor):
            return batch[key]
    for value in batch.values():  # {'labeled': batch, 'unlabeled': batch}
        if isinstance(value, Mapping) and isinstance(value.get("image"), torch.Tensor):
            return value["image"]
    return None


def log_test_results(
    runner,
    metrics: Mapping[str, float],
    metric=None,
    run_id: str | None = None,
    json_out=None,
    class_names=None,
    dataset=None,
    data_cfg: Mapping | None = None,
) -> str:
    """Log a test evaluation: into the active run, else the checkpoint's run, else a new run.

    ``dataset`` (the test data) becomes an input with context ``test``; the ``test/*`` metrics
    are linked to the run's logged model (the model page shows them) and, when the test data is
    one shard set, to that dataset.
    """
    client = MlflowClient()
    owned = False
    active = mlflow.active_run()
    if active is not None:
        run_id = active.info.run_id
    elif run_id:
        try:
            client.get_run(run_id)
        except MlflowException:
            run_id = None
    if not run_id:
        run_id = os.environ.get("MLFLOW_RUN_ID") or None
    if not run_id:
        from mlflow.tracking.context.registry import resolve_tags

        exp_id = get_or_create_experiment(client, experiment_name(runner.cfg))
        tags = resolve_tags({"antgo.process": "test", "antgo.exp": runner.exp_name})
        name = f"{runner.exp_name}-test-{time.strftime('%Y%m%d-%H%M%S')}"
        run_id = client.create_run(exp_id, tags=tags, run_name=name).info.run_id
        owned = True
    link: dict[str, str] = {}
    if dataset is not None:
        datasets = run_datasets(dataset, data_cfg, "test")
        log_inputs(
            client,
            run_id,
            [
                DatasetInput(d._to_mlflow_entity(), [InputTag("mlflow.data.context", "test")])
                for d in datasets
            ],
        )
        if len(datasets) == 1:
            link = {"dataset_name": datasets[0].name, "dataset_digest": datasets[0].digest}
    model_id = logged_model_id(client, run_id)
    ts = _now_ms()
    client.log_batch(
        run_id,
        metrics=[
            Metric(f"test/{k}", float(v), ts, 0, model_id=model_id, **link)
            for k, v in metrics.items()
        ],
    )
    if json_out and Path(json_out).is_file():
        client.log_artifact(run_id, str(json_out), "test")
    if metric is not None and hasattr(metric, "artifacts"):
        with tempfile.TemporaryDirectory() as tmp:
            try:  # from the predictions the metric processed
                paths = metric.artifacts(Path(tmp), class_names=class_names)
            except Exception as exc:
                log.warning("metric artifacts failed: %s", exc)
                paths = []
            for p in paths or []:
                client.log_artifact(run_id, str(p), "test")
    if owned:
        client.set_terminated(run_id, "FINISHED")
    return run_id
