"""Benchmark antgo-ssh: what submitting the digits training over SSH adds to running it locally.

One run starts a real `mlflow server` and a throw-away OpenSSH server on 127.0.0.1, builds a
~10 MB project (this repository's files plus an incompressible 8.8 MB asset, so the snapshot is
really ~10 MB on the wire), then alternates, round by round:

* local:  ``mlflow run <project> -e train --env-manager local ...``
* ssh:    ``mlflow run <project> -e train --backend antgo-ssh --backend-config {...}``

Both train the same tiny digits job (1 epoch on the 179-sample split, model logging off) into the
same server; the remote side is this machine, so the difference is the submitter's own cost:
snapshot + SSH connect + SFTP upload + unpack + start + log streaming + the log artifact. The
snapshot, connect and upload steps are also timed alone. Goal: <= 5 s added.

Run: .venv/bin/python benchmarks/bench_submit.py [--rounds 3] [--quick]
(run it under the CPU lock on a shared machine: flock /work/wt/cpu.lock ...)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.submit.services: the loopback sshd

from tests.submit.services import LoopbackSSHD, free_port, sshd_missing_reason  # noqa: E402


def start_mlflow_server(root: Path) -> tuple[subprocess.Popen, str]:
    import urllib.request

    port = free_port()
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"mlflow server did not start: {(root / 'server.log').read_text()[-1500:]}")


def build_project(root: Path, size_mb: float) -> Path:
    """This repository's tracked files plus random bytes up to ``size_mb`` (not a git repo)."""
    project = root / "project"
    listed = (
        subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, project / rel)
    have = sum(p.stat().st_size for p in project.rglob("*") if p.is_file())
    blob = max(0, int(size_mb * 1e6) - have)
    (project / "assets").mkdir(exist_ok=True)
    (project / "assets" / "blob.bin").write_bytes(os.urandom(blob))
    return project


def mlflow_run(project: Path, params: list[str], experiment_id: str, env: dict, backend=None):
    cmd = [sys.executable, "-m", "mlflow", "run", str(project), "-e", "train"]
    cmd += ["--experiment-id", experiment_id, *params]
    if backend is None:
        cmd += ["--env-manager", "local"]
    else:
        cmd += ["--backend", "antgo-ssh", "--backend-config", json.dumps(backend)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd[:8])} failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        )
    return wall


def time_steps(project: Path, sshd, submitter) -> dict:
    """Snapshot, connect and upload timed alone (best of 3)."""
    from antgo_mlflow.submit import config as cfg
    from antgo_mlflow.submit.snapshot import take_snapshot
    from antgo_mlflow.submit.ssh import connect

    out = {"snapshot": [], "connect": [], "upload": []}
    sub = cfg.validate("ssh", submitter, "bench")
    for i in range(3):
        t0 = time.perf_counter()
        snap = take_snapshot(project)
        data = snap.tar_bytes()
        out["snapshot"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        client = connect(sub)
        out["connect"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with client.open_sftp() as sftp:
            sftp.putfo(io.BytesIO(data), f"{submitter['remote_dir']}/bench-{i}.tar.gz")
        out["upload"].append(time.perf_counter() - t0)
        client.close()
    best = {k: min(v) for k, v in out.items()}
    best["files"], best["mb"], best["tar_mb"] = len(snap.files), snap.size / 1e6, len(data) / 1e6
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="local/ssh pairs (default 3)")
    parser.add_argument("--size-mb", type=float, default=10.0, help="project size (default 10)")
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    reason = sshd_missing_reason()
    if reason:
        raise SystemExit(f"bench_submit: {reason}")
    from antgo_mlflow.data.sources.digits import prepare_digits

    root = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    server, url = start_mlflow_server(root)
    try:
        with LoopbackSSHD(root / "sshd") as sshd:
            cache = root / "cache"
            val = prepare_digits(cache).shard_paths("val")
            project = build_project(root, args.size_mb)
            (root / "remote").mkdir(mode=0o700)
            env = dict(os.environ, MLFLOW_TRACKING_URI=url, ANTGO_CACHE_DIR=str(cache))
            env.update(ANTGO_PROGRESS="0", ANTGO_CONFIG_DIR=str(root / "config"))
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
            submitter = sshd.submitter(
                python=sys.executable,
                remote_dir=str(root / "remote"),
                env={"ANTGO_CACHE_DIR": str(cache), "ANTGO_PROGRESS": "0"},
            )
            hooks = "[{'type':'TextLoggerHook'},{'type':'MlflowLoggerHook','log_model':False}]"
            options = f"data.train.data_path_list={val!r} log_config.hooks={hooks}"
            params = ["-P", "epochs=1", "-P", f"cfg_options={options}"]
            params += ["-P", f"work_dir={root / 'work'}"]
            from mlflow import MlflowClient

            os.environ["MLFLOW_TRACKING_URI"] = url
            experiment_id = MlflowClient(url).create_experiment("bench-submit")
            steps = time_steps(project, sshd, submitter)
            local, remote = [], []
            for i in range(rounds):
                order = ("local", "ssh") if i % 2 == 0 else ("ssh", "local")
                for which in order:
                    if which == "local":
                        local.append(mlflow_run(project, params, experiment_id, env))
                    else:
                        remote.append(mlflow_run(project, params, experiment_id, env, submitter))
                print(
                    f"round {i + 1}/{rounds}: local {local[-1]:.1f} s, ssh {remote[-1]:.1f} s",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)
    lm, rm = statistics.median(local), statistics.median(remote)
    load = os.getloadavg()
    print()
    print(
        f"project: {steps['files']} files, {steps['mb']:.1f} MB ({steps['tar_mb']:.1f} MB as .tar.gz)"
    )
    print(f"{'step':<46}{'seconds':>10}")
    print(f"{'snapshot: list + digest + tar.gz (best of 3)':<46}{steps['snapshot']:>10.2f}")
    print(f"{'SSH connect + key auth (best of 3)':<46}{steps['connect']:>10.2f}")
    print(f"{'SFTP upload of the snapshot (best of 3)':<46}{steps['upload']:>10.2f}")
    print(f"{f'local mlflow run, median of {rounds}':<46}{lm:>10.2f}")
    print(f"{f'antgo-ssh mlflow run, median of {rounds}':<46}{rm:>10.2f}")
    print(f"{'added by submitting over SSH (goal <= 5 s)':<46}{rm - lm:>10.2f}")
    paired = statistics.median(r - loc for r, loc in zip(remote, local))
    print(f"{'added, median of per-round (paired) differences':<46}{paired:>10.2f}")
    print(f"{'ratio ssh / local':<46}{rm / lm:>10.2f}")
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
