"""``antgo-script``: hand a job to the team's own submit script (antgo's custom submitter).

The script is called, from the project folder, as (an argv list, no shell)::

    <folder>/<script> --image IMAGE --launch-argv COMMAND --gpu-num N --cpu-num N --memory-size NM

``COMMAND`` is the entry point's command line (one argument; MLflow has quoted its parameters)
for the script to start in ``IMAGE`` wherever it submits to. The environment adds
``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID`` and ``MLFLOW_EXPERIMENT_ID`` (so the job logs into the
run), ``ANTGO_SNAPSHOT`` (a .tar.gz of the project, secrets left out), ``ANTGO_CODE_DIGEST``
and ``ANTGO_GPU_NUM``/``ANTGO_CPU_NUM``/``ANTGO_MEMORY_MB``. The script's exit code and output are
the job's: 0 ends the run FINISHED, anything else FAILED; ``cancel()`` ends its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

from antgo_mlflow.submit.backend import GRACE_S, SubmitBackend, SubmitError, SubmittedJob
from antgo_mlflow.submit.config import check_script


def script_argv(path, image: str, command: str, resources: dict) -> list[str]:
    """The documented arguments of a submit script."""
    return [
        str(path),
        "--image",
        image,
        "--launch-argv",
        command,
        "--gpu-num",
        str(resources["gpu_num"]),
        "--cpu-num",
        str(resources["cpu_num"]),
        "--memory-size",
        f"{int(resources['memory'])}M",
    ]


class ScriptJob(SubmittedJob):
    """The submit script running as a local process group."""

    def __init__(self, run_id, client, sink, describe, proc, snapshot_path):
        super().__init__(run_id, client, sink, describe)
        self.proc, self.snapshot_path = proc, snapshot_path

    def _follow(self) -> int:
        def pump(stream, name):
            for chunk in iter(lambda: stream.read1(65536), b""):
                self.sink.write(chunk, name)

        readers = [
            threading.Thread(target=pump, args=(self.proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=pump, args=(self.proc.stderr, "stderr"), daemon=True),
        ]
        for t in readers:
            t.start()
        code = self.proc.wait()
        for t in readers:
            t.join(5)
        return 128 - code if code < 0 else code

    def _stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever the script left running
        self.snapshot_path.unlink(missing_ok=True)


class ScriptBackend(SubmitBackend):
    """The ``antgo-script`` project backend."""

    kind = "script"
    backend_name = "antgo-script"

    def connect(self, sub, tracking_uri: str):
        return check_script(sub, "script submitter")

    def run_tags(self, sub) -> dict:
        return {"antgo.submit.script": str(sub.path)}

    def start(self, path, job):
        sub = job.submitter
        image = sub.image or _project_image(job.client, job.run.info.experiment_id)
        snapshot_path = job.snapshot.tar_file()
        env = dict(os.environ)
        env.update(job.env)
        env.update(ANTGO_SNAPSHOT=str(snapshot_path), ANTGO_CODE_DIGEST=job.snapshot.digest)
        argv = script_argv(path, image, job.command, job.resources)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=job.snapshot.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            snapshot_path.unlink(missing_ok=True)
            raise SubmitError(f"script {path}: cannot start it ({exc.strerror or exc})") from None
        return ScriptJob(job.run_id, job.client, job.sink, f"script {path}", proc, snapshot_path)


def _project_image(client, experiment_id) -> str:
    """The project's image (``antgo create project --image``), '' when none is recorded."""
    from antgo_mlflow.project.projects import TAG_IMAGE

    with contextlib.suppress(Exception):
        return client.get_experiment(str(experiment_id)).tags.get(TAG_IMAGE, "") or ""
    return ""
