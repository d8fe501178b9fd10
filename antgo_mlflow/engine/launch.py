"""Start a run from a config file: ``run_from_config`` (one process, or torchrun for several).

``--gpu-id=0,1`` or ``--nproc=N`` (on the CPU) launches DDP training: the parent process runs ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
antgo_mlflow.engine.launch --spec <json>`` (argument list, no shell) and waits. Each worker reads
the JSON spec (no pickle) and calls ``run_from_config`` inside the process group. Rank 0 writes the
MLflow run id (and a one-line error, if any) to files the parent reads back, so the caller gets the
same result as from a one-process run. SIGTERM/Ctrl-C are forwarded to torchrun, which forwards
them to the workers: rank 0 saves ``latest.pth`` and ends the run KILLED.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from antgo_mlflow import env
from antgo_mlflow.errors import AntgoError, UsageError, one_line

ERROR_FILE_ENV = env.ANTGO_ERROR_FILE


def parse_gpu_ids(gpu_id: int | str | Sequence[int] | None) -> list[int]:
    """``"0,1"`` -> [0, 1]; ``3`` -> [3]; None, ``""``, ``-1`` or ``"cpu"`` -> [] (CPU)."""
    if gpu_id is None or gpu_id == "":
        return []
    if isinstance(gpu_id, bool):
        raise UsageError(f"--gpu-id={gpu_id}: expected GPU indices like 0 or 0,1")
    if isinstance(gpu_id, int):
        return [] if gpu_id < 0 else [gpu_id]
    if isinstance(gpu_id, (list, tuple)):
        items = [str(x) for x in gpu_id]
    else:
        text = str(gpu_id).strip()
        if text.lower() == "cpu":
            return []
        items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        ids = [int(x) for x in items]
    except ValueError:
        raise UsageError(f"--gpu-id={gpu_id}: expected GPU indices like 0 or 0,1") from None
    if ids == [-1]:
        return []
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--gpu-id={gpu_id}: indices must be distinct and >= 0")
    return ids


def torchrun_command(nproc: int, spec_path: str | os.PathLike) -> list[str]:
    """The torchrun argument list for ``nproc`` local workers running this module."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={int(nproc)}",
        "-m",
        "antgo_mlflow.engine.launch",
        "--spec",
        str(spec_path),
    ]


def launch_training(spec: dict, nproc: int, gpu_ids: Sequence[int] = ()) -> str | None:
    """Run ``run_from_config(**spec)`` in ``nproc`` torchrun workers; return rank 0's MLflow run id."""
    from antgo_mlflow.engine.hooks.mlflow_logger import RUN_ID_FILE_ENV

    if nproc < 1:
        raise UsageError(f"--nproc={nproc}: must be >= 1")
    if gpu_ids and len(gpu_ids) != nproc:
        raise UsageError(f"--gpu-id: {len(gpu_ids)} GPUs listed for {nproc} processes")
    with tempfile.TemporaryDirectory(prefix="antgo-launch-") as tmp:
        spec = dict(spec, gpu_id=0 if gpu_ids else -1)
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        run_id_file, error_file = Path(tmp) / "run_id", Path(tmp) / "error"
        env = dict(os.environ)
        env[RUN_ID_FILE_ENV] = str(run_id_file)
        env[ERROR_FILE_ENV] = str(error_file)
        if gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        proc = subprocess.Popen(torchrun_command(nproc, spec_path), env=env)
        received: list[int] = []

        def forward(signum, frame):
            received.append(signum)
            if proc.poll() is None:
                proc.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            rc = proc.wait()
        finally:
            for s, old in previous.items():
                signal.signal(s, old)
        run_id = run_id_file.read_text().strip() if run_id_file.is_file() else None
        if rc != 0:
            _mark_failed(run_id, killed=bool(received))
            if received:
                raise KeyboardInterrupt
            message = error_file.read_text().strip() if error_file.is_file() else ""
            raise AntgoError(message or f"distributed training failed (torchrun exit code {rc})")
        return run_id


def _mark_failed(run_id: str | None, killed: bool) -> None:
    """A run a dead worker left RUNNING ends FAILED (KILLED if we were interrupted)."""
    if not run_id:
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "KILLED" if killed else "FAILED")
    except Exception:  # the store may be gone; nothing more we can say
        pass


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
    from antgo_mlflow.config import Config
    from antgo_mlflow.engine import dist

    if process not in ("train", "test"):
        raise UsageError(f"--process={process}: expected train or test")
    cfg = Config.fromfile(config_path)
    if cfg_options:
        cfg.merge_overrides(cfg_options)
    from antgo_mlflow.engine.device import usable_gpu_ids, warn_once

    gpu_ids = parse_gpu_ids(gpu_id)
    if gpu_ids and not dist.launched_by_torchrun():  # GPUs the machine lacks: fall back, warn
        gpu_ids, note = usable_gpu_ids(gpu_ids)
        warn_once(note)
    n = int(nproc) if nproc else max(1, len(gpu_ids))
    if process == "train" and n > 1 and not dist.launched_by_torchrun():
        spec = dict(
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
        )
        return launch_training(spec, nproc=n, gpu_ids=gpu_ids)
    from antgo_mlflow.engine.runner import Runner

    # The Runner resolves (and records) the device from --gpu-id itself, fallback included.
    single = (0 if gpu_ids else None) if dist.launched_by_torchrun() else gpu_id
    runner = Runner(
        cfg,
        work_dir=work_dir,
        gpu_id=single,
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


def _worker(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="antgo torchrun worker (started by launch_training)"
    )
    parser.add_argument("--spec", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    from antgo_mlflow.engine import dist

    try:
        run_from_config(process="train", distributed=True, **spec)
    except AntgoError as exc:
        line = one_line(exc)
        if int(os.environ.get("RANK", 0)) == 0 and (error_file := env.text(ERROR_FILE_ENV)):
            Path(error_file).write_text(line, encoding="utf-8")
        print(f"antgo: error: {line}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        dist.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
