"""Remote job launcher: unpack the snapshot, start the job in its own process group, end it on demand.

This file is uploaded next to the snapshot and run by the remote ``python`` (standard library
only, Python >= 3.8, so any remote interpreter runs it):

    python launch.py RUN_DIR -- ARGV...

* The first line on stdin is JSON ``{"env": {...}}``: the job's environment (the tracking URI and
  any token travel this way, never on a command line another user could read with ``ps``).
* ``RUN_DIR/snapshot.tar.gz`` is unpacked into ``RUN_DIR/code`` (members that would land outside
  it, links and devices are refused), the job runs there with ``PYTHONPATH=RUN_DIR/code`` so
  the snapshot's packages are the ones imported.
* A line ``cancel`` on stdin, end of stdin (the submitting side went away) or SIGTERM/SIGHUP end
  the job's whole process group: SIGTERM, then SIGKILL after ``GRACE_S``. Nothing of the job
  is left running when the launcher exits.
* The exit code is the job's (128 + signal number when a signal ended it).
"""

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading

GRACE_S = 4.0


def _safe_extract(archive, dest):
    real_dest = os.path.realpath(dest)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            target = os.path.realpath(os.path.join(dest, m.name))
            if not (m.isfile() or m.isdir()) or not (
                target == real_dest or target.startswith(real_dest + os.sep)
            ):
                raise SystemExit(f"antgo-launch: refusing snapshot member {m.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)


class Job:
    def __init__(self, argv, cwd, env):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True)
        self.lock = threading.Lock()
        self.stopping = False

    def _killpg(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, why):
        with self.lock:
            if self.stopping:
                return
            self.stopping = True
        if self.proc.poll() is None:
            sys.stderr.write(f"antgo-launch: {why}: stopping the job's process group\n")
            sys.stderr.flush()
            self._killpg(signal.SIGTERM)
            try:
                self.proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        self._killpg(signal.SIGKILL)

    def watch_stdin(self, stream):
        for line in stream:
            if line.strip() == "cancel":
                self.stop("cancelled")
                return
        self.stop("the submitting side disconnected")


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: launch.py RUN_DIR -- ARGV...\n")
        return 2
    run_dir, job_argv = argv[0], argv[2:]
    header = sys.stdin.readline()
    try:
        extra_env = json.loads(header).get("env", {})
    except ValueError:
        sys.stderr.write('antgo-launch: the first stdin line must be JSON {"env": {...}}\n')
        return 2
    code = os.path.join(run_dir, "code")
    archive = os.path.join(run_dir, "snapshot.tar.gz")
    os.makedirs(code, mode=0o700, exist_ok=True)
    _safe_extract(archive, code)
    os.unlink(archive)
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in extra_env.items()})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (code, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    job = Job(job_argv, code, env)
    with open(os.path.join(run_dir, "job.pgid"), "w") as fh:
        fh.write(f"{job.proc.pid}\n")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: job.stop(f"signal {signum}"))
    threading.Thread(target=job.watch_stdin, args=(sys.stdin,), daemon=True).start()
    rc = job.proc.wait()
    job._killpg(signal.SIGKILL)  # stragglers the job left behind (dataloader workers, ...)
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
