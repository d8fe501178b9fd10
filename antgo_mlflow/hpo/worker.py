"""A worker: takes trials from the shared study until the study's budget is spent.

The same code runs in the ``antgo hpo`` process (``--workers 1``) and in each worker process
(``python -m antgo_mlflow.hpo.worker <spec.json>``, the storage URL in ``$ANTGO_HPO_STORAGE``).
Trials run through ``study.optimize`` one at a time, so Optuna's heartbeats and stale-trial retries
apply; the claim lock makes the trial count exact across workers.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from antgo_mlflow import env
from antgo_mlflow.errors import AntgoError, UsageError, one_line

ERROR_SUFFIX = ".error"


@dataclass
class WorkerSpec:
    """Everything a worker process needs (no secrets: the storage URL travels in the environment)."""

    config: str
    cfg_options: list[str]
    study_name: str
    parent_run_id: str
    experiment_id: str
    work_root: str
    first_number: int
    n_trials: int
    queued: list[int] = field(default_factory=list)
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    deadline: float | None = None
    heartbeat: int = 10
    index: int = 0
    workers: int = 1
    threads: int | None = None
    gpu_id: str | None = None
    max_retry: int | None = 3
    poll_s: float = 1.0
    extra: dict = field(default_factory=dict)

    def dump(self, path: Path) -> Path:
        from antgo_mlflow.fileio import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> WorkerSpec:
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class Budget:
    """``n_trials`` trials: those numbered from ``first_number`` (earlier ones belong to earlier
    runs of the study) and the ``queued`` ones (waiting when this run began: enqueued by hand or
    retries). A trial that failed because its worker died and was queued again does not count."""

    first_number: int
    n_trials: int
    deadline: float | None = None
    queued: tuple[int, ...] = ()

    def mine(self, trial) -> bool:
        return trial.number >= self.first_number or trial.number in self.queued

    def decide(self, study) -> str:
        """``'run'`` (start or resume a trial), ``'wait'`` (others run the last trials; one of
        them may die and need a retry) or ``'stop'``."""
        from optuna.trial import TrialState

        if self.deadline is not None and time.time() >= self.deadline:
            return "stop"
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return "run"
        replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
        mine = [t for t in trials if self.mine(t)]
        claimed = sum(1 for t in mine if t.state != TrialState.FAIL or t.number not in replaced)
        if claimed < self.n_trials:
            return "run"
        if any(t.state == TrialState.RUNNING for t in mine):
            return "wait"
        return "stop"


def work(study, objective, budget: Budget, lock, poll_s: float = 1.0, callbacks=()) -> int:
    """Run trials of ``study`` until ``budget`` says stop; returns how many this worker ran."""
    import optuna

    from antgo_mlflow.hpo.objective import TrialFailed

    objective.on_start = lock.release
    ran = 0
    while True:
        lock.acquire()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            decision = budget.decide(study)
            if decision == "run":
                study.optimize(
                    objective,
                    n_trials=1,
                    catch=(TrialFailed,),
                    callbacks=callbacks,
                    gc_after_trial=True,  # a trial's model and loaders go before the next one
                )
                ran += 1
        finally:
            lock.release()
        if decision == "stop":
            return ran
        time.sleep(poll_s if decision == "wait" else 0)


def run_worker(spec: WorkerSpec, storage_url: str, say: Callable[[str], None] | None = None):
    """Build the study, objective and lock of ``spec`` in this process and work."""
    import optuna

    from antgo_mlflow.hpo import claim, samplers
    from antgo_mlflow.hpo.objective import Objective
    from antgo_mlflow.hpo.space import parse_spec
    from antgo_mlflow.hpo.storage import open_storage
    from antgo_mlflow.hpo.study import load_config, quiet_optuna, say_err
    from antgo_mlflow.hpo.table import trial_line
    from antgo_mlflow.hpo.tracking import RetryLostTrials

    quiet_optuna()
    cfg = load_config(spec.config, spec.cfg_options)
    hpo = parse_spec(cfg)
    seed = samplers.worker_seed(spec.seed, spec.index, spec.first_number)
    storage = open_storage(
        storage_url,
        heartbeat=spec.heartbeat,
        stale_callback=RetryLostTrials(3 * spec.heartbeat, spec.max_retry),
    )
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=samplers.build_sampler(spec.sampler, hpo, seed, parallel=spec.workers > 1),
        pruner=samplers.build_pruner(spec.pruner, hpo, cfg.get("max_epochs")),
    )
    objective = Objective(
        cfg,
        hpo,
        study_name=spec.study_name,
        parent_run_id=spec.parent_run_id,
        experiment_id=spec.experiment_id,
        work_root=Path(spec.work_root),
        gpu_id=spec.gpu_id,
    )
    say = say or say_err

    def report(study, trial) -> None:
        say(trial_line(trial, hpo.metric))

    lock = claim.claim_lock(storage_url, spec.study_name)
    try:
        return work(
            study,
            objective,
            Budget(spec.first_number, spec.n_trials, spec.deadline, tuple(spec.queued)),
            lock,
            poll_s=spec.poll_s,
            callbacks=[report],
        )
    finally:
        lock.close()


def error_file(work_root: str | os.PathLike, index: int) -> Path:
    return Path(work_root) / f"worker-{index}{ERROR_SUFFIX}"


def main(argv: list[str] | None = None) -> int:
    """Worker process entry: ``python -m antgo_mlflow.hpo.worker <spec.json>``."""
    from antgo_mlflow.hpo.storage import STORAGE_ENV
    from antgo_mlflow.hpo.study import sigterm_as_interrupt

    args = sys.argv[1:] if argv is None else argv
    spec = WorkerSpec.load(args[0])
    try:
        storage_url = env.text(STORAGE_ENV)
        if not storage_url:
            raise UsageError(f"${STORAGE_ENV}: not set (the worker's storage URL)")
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        with sigterm_as_interrupt():
            run_worker(spec, storage_url)
    except AntgoError as exc:
        from antgo_mlflow.fileio import atomic_write_text

        atomic_write_text(error_file(spec.work_root, spec.index), one_line(exc))
        print(f"antgo-hpo worker {spec.index}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
