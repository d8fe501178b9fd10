"""Run a study end to end: check the input, open storage and MLflow, start workers, summarise.

Everything a user can get wrong (the space, sampler/pruner names, the storage URL, the trial
count) is checked before a study or a run exists. A study that fails before any trial completed
(for example the metric is never logged) is deleted again; its MLflow run ends FAILED with the
reason in ``antgo.error``.

Example:
    >>> run_study(HpoOptions(config="recipes/digits/config.py", trials=8, workers=2))
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import AntgoError, ConfigError, UsageError, one_line
from antgo_mlflow.hpo import samplers
from antgo_mlflow.hpo import storage as storages
from antgo_mlflow.hpo.keys import METRIC_ATTR, PARENT_ATTR
from antgo_mlflow.hpo.space import HpoSpec, parse_spec

log = logging.getLogger(__name__)


class HpoError(AntgoError):
    """A study could not run (a worker reported a config or storage problem)."""


@dataclass
class HpoOptions:
    """What ``antgo hpo`` and the ``hpo`` entry point ask for (see ``antgo hpo --help``)."""

    config: str
    trials: int = 8
    workers: int = 1
    storage: str | None = None
    study: str | None = None
    timeout: float | None = None
    sampler: str | None = None  # None: the config's hpo.sampler.type, else 'tpe'
    pruner: str | None = None  # None: the config's hpo.pruner.type, else 'median'
    seed: int | None = None
    cfg_options: Sequence[str] = field(default_factory=list)
    experiment: str | None = None
    work_dir: str | None = None
    heartbeat: int = 10
    gpu_id: str | None = None


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While inside, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so the study's and
    trials' runs end KILLED instead of staying RUNNING (the Runner has its own handler while a
    trial trains)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def say_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines and failure tracebacks off: we print one line per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # heartbeats and the stale-trial retry are "experimental" since Optuna 2.8; said once here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load_config(path: str, cfg_options: Sequence[str] = ()):
    """The training config with ``--cfg-options`` applied."""
    from antgo_mlflow.config import Config

    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_overrides(list(cfg_options))
    return cfg


def check_options(opts: HpoOptions) -> None:
    """One-line UsageError for a bad flag (before anything is created)."""
    if isinstance(opts.trials, bool) or not isinstance(opts.trials, int) or opts.trials < 1:
        raise UsageError(f"--trials={opts.trials}: must be an integer >= 1")
    if isinstance(opts.workers, bool) or not isinstance(opts.workers, int) or opts.workers < 1:
        raise UsageError(f"--workers={opts.workers}: must be an integer >= 1")
    if opts.timeout is not None and not opts.timeout > 0:
        raise UsageError(f"--timeout={opts.timeout}: must be a positive number of seconds")
    if not isinstance(opts.heartbeat, int) or opts.heartbeat < 1:
        raise UsageError(f"--heartbeat={opts.heartbeat}: must be an integer >= 1 (seconds)")
    if opts.study is not None and not str(opts.study).strip():
        raise UsageError("--study: must not be empty")
    if not Path(opts.config).is_file():
        raise UsageError(f"--config={opts.config}: no such file")
    samplers.check_names(opts.sampler or "tpe", opts.pruner or "median")


def _algorithms(opts: HpoOptions, spec: HpoSpec) -> tuple[str, str]:
    sampler = opts.sampler or spec.sampler.get("type") or "tpe"
    pruner = opts.pruner or spec.pruner.get("type") or "median"
    samplers.check_names(sampler, pruner)
    return sampler, pruner


def default_study_name(config: str) -> str:
    return f"{Path(config).resolve().parent.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _experiment_id(client, opts: HpoOptions, cfg) -> str:
    from antgo_mlflow.engine.hooks.mlflow_logger import experiment_name, get_or_create_experiment

    if opts.experiment:
        return get_or_create_experiment(client, opts.experiment)
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    return get_or_create_experiment(client, experiment_name(cfg))


def run_study(opts: HpoOptions, say: Callable[[str], None] = say_err) -> dict[str, Any]:
    """Run ``opts.trials`` trials of the config's ``hpo`` search; returns the summary
    (``best``: number, value, params, mlflow_run_id; ``counts``; ``study``; ``run_id``).
    SIGTERM and Ctrl-C end the study's run and the running trials' runs KILLED."""
    with sigterm_as_interrupt():
        return _run_study(opts, say)


def _run_study(opts: HpoOptions, say: Callable[[str], None]) -> dict[str, Any]:
    check_options(opts)
    cfg = load_config(opts.config, opts.cfg_options)
    spec = parse_spec(cfg)
    sampler, pruner = _algorithms(opts, spec)
    samplers.build_sampler(sampler, spec, opts.seed)  # option and grid errors, before any I/O
    samplers.build_pruner(pruner, spec, cfg.get("max_epochs"))
    n_trials = opts.trials
    if sampler == "grid" and spec.grid_size() < n_trials:
        say(f"antgo-hpo: the grid has {spec.grid_size()} points; running {spec.grid_size()} trials")
        n_trials = spec.grid_size()

    import mlflow
    import optuna
    from mlflow import MlflowClient

    from antgo_mlflow.hpo import tracking
    from antgo_mlflow.hpo.worker import Budget, WorkerSpec, run_worker

    quiet_optuna()
    url = storages.normalise(opts.storage or storages.default_storage(opts.workers))
    if opts.workers > 1 and storages.kind(url) == "sqlite":
        say(
            "antgo-hpo: warning: several workers on SQLite may fail with 'database is locked'; "
            "prefer a journal file (--storage=optuna-journal.log) or PostgreSQL"
        )
    storage = storages.open_storage(url, heartbeat=opts.heartbeat)
    name = str(opts.study or default_study_name(opts.config))
    existing = name in optuna.get_all_study_names(storage)
    if existing:
        study = optuna.load_study(study_name=name, storage=storage)
        if study.direction.name.lower() != spec.direction:
            raise ConfigError(
                f"hpo.direction: study {name} {study.direction.name.lower()}s, the config says "
                f"{spec.direction}"
            )
    else:
        study = optuna.create_study(study_name=name, storage=storage, direction=spec.direction)
    study.set_user_attr(METRIC_ATTR, spec.metric)
    study.set_user_attr("config", str(Path(opts.config).resolve()))

    client = MlflowClient()
    parent = heartbeat = None
    try:
        experiment_id = _experiment_id(client, opts, cfg)
        parent, _ = tracking.open_study_run(
            client,
            experiment_id,
            study,
            spec,
            tags={
                "antgo.hpo.sampler": sampler,
                "antgo.hpo.pruner": pruner,
                "antgo.hpo.seed": opts.seed,
                "antgo.hpo.workers": opts.workers,
                "antgo.hpo.trials_requested": n_trials,
                "antgo.hpo.storage": storages.mask(url),
                "antgo.hpo.space": spec.space_json(),
                "antgo.config": str(Path(opts.config).resolve()),
            },
        )
        heartbeat = tracking.own_study_run(client, parent)
        experiment_id = client.get_run(parent).info.experiment_id
        work_root = Path(opts.work_dir or Path("output") / "hpo" / name).resolve()
        work_root.mkdir(parents=True, exist_ok=True)
        worker = WorkerSpec(
            config=str(Path(opts.config).resolve()),
            cfg_options=list(opts.cfg_options),
            study_name=name,
            parent_run_id=parent,
            experiment_id=experiment_id,
            work_root=str(work_root),
            first_number=len(study.trials),
            n_trials=n_trials,
            queued=[t.number for t in study.trials if t.state.name == "WAITING"],
            sampler=sampler,
            pruner=pruner,
            seed=opts.seed,
            deadline=time.time() + opts.timeout if opts.timeout else None,
            heartbeat=opts.heartbeat,
            workers=opts.workers,
            gpu_id=opts.gpu_id,
        )
        say(
            f"antgo-hpo: study {name}: {n_trials} trials, {opts.workers} worker(s), "
            f"{sampler} sampler, {pruner} pruner, storage {storages.mask(url)}; "
            f"MLflow run {parent} (experiment {experiment_id})"
        )
        if opts.workers == 1:
            run_worker(worker, url, say=say)
        else:
            run_processes(worker, url, say)
            budget = Budget(
                worker.first_number, worker.n_trials, worker.deadline, tuple(worker.queued)
            )
            if budget.decide(study) != "stop":  # a worker died: finish its trials here
                say("antgo-hpo: finishing the remaining trials in this process")
                run_worker(replace(worker, index=opts.workers), url, say=say)
    except KeyboardInterrupt:
        if parent:
            with contextlib.suppress(Exception):
                tracking.summarise(client, parent, study, spec)
            with contextlib.suppress(Exception):
                tracking.end_run(client, parent, "KILLED", {"antgo.error": "interrupted"})
        raise
    except BaseException as exc:
        _abort(client, parent, study, storage, created=not existing, exc=exc)
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
    summary = tracking.summarise(client, parent, study, spec)
    active = mlflow.active_run()
    if active is None or active.info.run_id != parent:
        client.set_terminated(parent, "FINISHED")
    summary.update(study=name, run_id=parent, storage=storages.mask(url))
    if not summary["best"]:
        say("antgo-hpo: no trial completed")
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items() if v)
    say(f"antgo-hpo: {counts}; look at it: antgo hpo --show --study={name} "
        f"--storage={storages.mask(url)}")  # fmt: skip
    return summary


def _abort(client, parent, study, storage, created: bool, exc: BaseException) -> None:
    """A study that failed: its run ends FAILED with the reason; a study this call created that
    has no completed trial is deleted (no half-made study is left to resume)."""
    import optuna

    if parent:
        with contextlib.suppress(Exception):
            client.log_batch(parent, tags=[_tag("antgo.error", f"{exc}")])
            client.set_terminated(parent, "FAILED")
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.values]
    if created and not done:
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=study.study_name, storage=storage)


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, one_line(value)[:500])


def run_processes(spec, url: str, say: Callable[[str], None]) -> None:
    """Start ``spec.workers`` worker processes on the study, report trials as they finish, and
    wait. A worker's config/storage error becomes this process's error (one line); a worker
    killed by a signal is reported and the others carry on (its trial is retried)."""
    from antgo_mlflow.hpo.worker import Budget, error_file

    root = Path(spec.work_root)
    env = dict(os.environ)
    env[storages.STORAGE_ENV] = url
    env.pop("MLFLOW_RUN_ID", None)  # workers make child runs, never write into the study run
    threads = max(1, (os.cpu_count() or 1) // spec.workers)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs: list[tuple[int, subprocess.Popen, Any]] = []
    budget = Budget(spec.first_number, spec.n_trials, queued=tuple(spec.queued))
    watcher = TrialWatcher(url, spec.study_name, budget, say)
    try:
        for i in range(spec.workers):
            worker = replace(spec, index=i, threads=threads)
            path = worker.dump(root / f"worker-{i}.json")
            error_file(root, i).unlink(missing_ok=True)
            out = open(root / f"worker-{i}.log", "ab")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(
                [sys.executable, "-m", "antgo_mlflow.hpo.worker", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
            procs.append((i, proc, out))
        while any(p.poll() is None for _, p, _ in procs):
            watcher.poll()
            time.sleep(1.0)
        watcher.poll()
    except KeyboardInterrupt:
        for _, p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # each worker ends its trial KILLED
        for _, p, _ in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        for _, _, out in procs:
            out.close()
    errors = []
    for i, p, _ in procs:
        path = error_file(root, i)
        if path.is_file():
            errors.append(path.read_text().strip())
        elif p.returncode and p.returncode < 0:
            name = signal.Signals(-p.returncode).name
            say(f"antgo-hpo: worker {i} (pid {p.pid}) was killed by {name}; its trial is retried")
        elif p.returncode:
            errors.append(
                f"worker {i} exited with code {p.returncode} (see {root / f'worker-{i}.log'})"
            )
    if errors:
        raise HpoError(errors[0])


class TrialWatcher:
    """Prints one line per trial that finished since the last ``poll`` (workers write theirs to
    their log files)."""

    def __init__(self, url: str, study_name: str, budget, say):
        import optuna

        self.study = optuna.load_study(
            study_name=study_name, storage=storages.open_storage(url, heartbeat=None)
        )
        self.budget = budget
        self.say = say
        self.seen: set[int] = set()

    def poll(self) -> None:
        from antgo_mlflow.hpo.table import trial_line

        with contextlib.suppress(Exception):  # a busy storage: report on the next poll
            for t in self.study.get_trials(deepcopy=False):
                if self.budget.mine(t) and t.state.is_finished() and t.number not in self.seen:
                    self.seen.add(t.number)
                    self.say(trial_line(t, self.study.user_attrs.get(METRIC_ATTR, "value")))


def find_storage(study: str | None, storage: str | None) -> str:
    """The storage of ``--show``: ``--storage``, else the default SQLite file or journal that
    holds ``study`` (or the first that exists)."""
    import optuna

    if storage:
        return storages.normalise(storage)
    candidates = [storages.default_storage(1), storages.default_storage(2)]
    found = []
    for url in candidates:
        path = storages.sqlite_path(url) or storages.journal_path(url)
        if path is not None and path.is_file():
            found.append(url)
            if study is None:
                return url
            opened = storages.open_storage(url, create=False)
            if study in optuna.get_all_study_names(opened):
                return url
    if not found:
        raise UsageError(
            f"--storage: none given and no study storage next to the MLflow store "
            f"({', '.join(storages.mask(c) for c in candidates)})"
        )
    raise UsageError(
        f"--study={study}: not in {' or '.join(storages.mask(u) for u in found)} (give --storage)"
    )


def show_study(study: str | None, storage: str | None) -> dict[str, Any]:
    """The trials of ``study`` (``rows``), or the studies of the storage when ``study`` is None."""
    import optuna

    from antgo_mlflow.hpo.table import trial_rows

    quiet_optuna()
    url = find_storage(study, storage)
    opened = storages.open_storage(url, create=False)
    names = optuna.get_all_study_names(opened)
    if study is None:
        summaries = []
        for s in optuna.get_all_study_summaries(opened):
            best = s.best_trial
            summaries.append(
                {
                    "study": s.study_name,
                    "trials": s.n_trials,
                    "direction": s.direction.name.lower() if s.direction else None,
                    "best_value": best.value if best else None,
                    "best_params": dict(best.params) if best else None,
                }
            )
        return {"storage": storages.mask(url), "studies": summaries}
    if study not in names:
        listed = ", ".join(sorted(names)[:10]) or "none"
        raise UsageError(f"--study={study}: no such study in {storages.mask(url)} (has: {listed})")
    loaded = optuna.load_study(study_name=study, storage=opened)
    best = None
    with contextlib.suppress(ValueError):
        best = loaded.best_trial.number
    return {
        "storage": storages.mask(url),
        "study": study,
        "direction": loaded.direction.name.lower(),
        "metric": loaded.user_attrs.get(METRIC_ATTR),
        "mlflow_run_id": loaded.user_attrs.get(PARENT_ATTR),
        "best_trial": best,
        "trials": trial_rows(loaded),
    }
