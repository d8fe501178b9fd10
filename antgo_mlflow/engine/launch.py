"""Launch multi-process training with torchrun (DDP): ``--gpu-id=0,1`` or ``--nproc=N`` on the CPU.

The parent process runs ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
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
from collections.abc import Sequence
from pathlib import Path

from antgo_mlflow.errors import AntgoError, UsageError

ERROR_FILE_ENV = "ANTGO_ERROR_FILE"


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


def _worker(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="antgo torchrun worker (started by launch_training)"
    )
    parser.add_argument("--spec", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    from antgo_mlflow.engine import dist
    from antgo_mlflow.engine.runner import run_from_config

    try:
        run_from_config(process="train", distributed=True, **spec)
    except AntgoError as exc:
        line = " ".join(str(exc).split())
        if int(os.environ.get("RANK", 0)) == 0 and os.environ.get(ERROR_FILE_ENV):
            Path(os.environ[ERROR_FILE_ENV]).write_text(line, encoding="utf-8")
        print(f"antgo: error: {line}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        dist.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
