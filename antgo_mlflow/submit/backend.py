"""What the three submitters share: MLflow's ``AbstractBackend.run`` steps and the submitted job.

``SubmitBackend.run`` (MLflow 3.x's plugin contract, group ``mlflow.project_backend``):

1. resolve the submitter: ``backend_config`` names a registered one (``{"ip": ...}``) or carries
   the same fields as the YAML; run-level keys are ``run_id`` (attach to an existing RUNNING
   run, as ``antgo train --cloud`` does), ``resources`` (``{gpu_num, cpu_num, memory}``; default:
   the experiment's ``antgo update project/submitter`` setting), ``env`` and ``echo``;
2. fetch the project and compute the entry point's command (MLflow quotes the parameters);
3. check that the job can reach the tracking server and the target answers — bad input fails
   here, before any run exists;
4. snapshot the project, create (or attach to) the run and tag it: submitter, host, code digest,
   resources; start the job and return a ``SubmittedJob`` at once.

MLflow's CLI calls plugin backends with ``synchronous=False`` and exits when ``run`` returns;
inside ``mlflow run`` the backend therefore waits itself (logs streamed, Ctrl-C or SIGTERM
cancel the job, a failed job exits 1 like a failed local run). Other callers that pass
``synchronous=False`` get MLflow's local-backend behaviour: the process waits for its jobs when
it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlflow.entities import RunStatus
from mlflow.exceptions import ExecutionException
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.projects.submitted_run import SubmittedRun

from antgo_mlflow.errors import AntgoError, one_line

TAG_SUBMITTER = "antgo.submitter"
TAG_HOST = "antgo.submitter.host"
TAG_DIGEST = "antgo.submit.code_digest"
TAG_FILES = "antgo.submit.code_files"
TAG_RESOURCES = "antgo.submit.resources"
TAG_EXIT = "antgo.submit.exit_code"
TAG_ERROR = "antgo.submit.error"
LOG_ARTIFACT_DIR = "logs"
LOG_NAME = "remote.log"
#: Keys MLflow itself adds to every backend_config (mlflow.projects.utils.PROJECT_*).
MLFLOW_KEYS = (
    "ENV_MANAGER",
    "SYNCHRONOUS",
    "DOCKER_ARGS",
    "STORAGE_DIR",
    "build_image",
    "docker_auth",
)
RUN_KEYS = ("run_id", "resources", "env", "echo", "log_interval")
#: Credentials of the tracking server, forwarded to the job (never logged or tagged).
FORWARDED_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
)
GRACE_S = 4.0


class SubmitError(AntgoError, ExecutionException):
    """A submission refused before it started: one line for both ``antgo`` and ``mlflow run``."""


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    host = (host or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tracking_uri(uri: str, target: str, loopback_ok: bool) -> str:
    """The tracking URI the job gets, or SubmitError when the job could not log to it."""
    parts = urlsplit(uri)
    hint = (
        "start 'mlflow server --host 0.0.0.0 --port 5000' and set MLFLOW_TRACKING_URI="
        "http://<this machine>:5000, or set tracking_uri in the submitter config"
    )
    if parts.scheme in ("", "file", "sqlite"):
        raise SubmitError(
            f"MLFLOW_TRACKING_URI={redact(uri)} is a store on this machine; the job on {target} "
            f"cannot log to it: {hint}"
        )
    if not loopback_ok and is_loopback(parts.hostname or ""):
        raise SubmitError(
            f"MLFLOW_TRACKING_URI={redact(uri)} is this machine's loopback, which {target} "
            f"cannot reach: {hint}"
        )
    return uri


def job_script(command: str, env_setup: str = "", python: str = "") -> str:
    """The shell text a job runs: PATH for ``python``, the env setup line (must succeed), the command."""
    lines = ["set -e"]
    if python and python.startswith("/"):
        lines.append(f'export PATH={shlex.quote(os.path.dirname(python))}:"$PATH"')
    if env_setup.strip():
        lines.append(env_setup.strip())
    lines += ["set +e", command]
    return "\n".join(lines)


class LogSink:
    """Job output: echoed to this terminal and kept in a file uploaded as ``logs/remote.log``."""

    def __init__(self, client, run_id: str, echo: bool = True, interval: float = 10.0):
        self.client, self.run_id, self.echo, self.interval = client, run_id, echo, interval
        self.dir = Path(tempfile.mkdtemp(prefix="antgo-submit-log-"))
        self.path = self.dir / LOG_NAME
        self._fh = open(self.path, "wb")
        self._lock = threading.Lock()
        self._dirty = False
        self._stop = threading.Event()
        self._uploader = threading.Thread(target=self._upload_loop, daemon=True)
        self._uploader.start()

    def write(self, data: bytes, stream: str = "stdout") -> None:
        """Record a chunk of the job's output (``stream``: stdout or stderr)."""
        if not data:
            return
        with self._lock:
            self._fh.write(data)
            self._fh.flush()
            self._dirty = True
        if self.echo:
            out = sys.stderr if stream == "stderr" else sys.stdout
            with contextlib.suppress(ValueError, OSError):
                out.buffer.write(data) if hasattr(out, "buffer") else out.write(
                    data.decode("utf-8", "replace")
                )
                out.flush()

    def note(self, text: str) -> None:
        """A line from the submitter itself (marked ``antgo-submit:``), to the terminal and log."""
        self.write(f"antgo-submit: {text}\n".encode(), "stderr")

    def _upload(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            self._fh.flush()
        with contextlib.suppress(Exception):  # a flaky server must not end the job
            self.client.log_artifact(self.run_id, str(self.path), LOG_ARTIFACT_DIR)

    def _upload_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._upload()

    def close(self) -> None:
        """Stop the periodic upload, upload the whole log once more, remove the local copy."""
        self._stop.set()
        self._uploader.join(timeout=self.interval + 30)
        with self._lock:
            self._dirty = True
        try:
            with self._lock:
                self._fh.close()
            self.client.log_artifact(self.run_id, str(self.path), LOG_ARTIFACT_DIR)
        finally:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


class SubmittedJob(SubmittedRun):
    """A started job: a monitor thread streams its output and ends the MLflow run.

    Subclasses implement ``_follow() -> int`` (stream output into ``self.sink`` until the job
    ends; return its exit code), ``_stop()`` (end the job at once) and ``_cleanup()``.
    The run ends FINISHED (exit 0), FAILED (non-zero exit, lost connection) or KILLED (cancel).
    """

    def __init__(self, run_id: str, client, sink: LogSink, describe: str):
        super().__init__()
        self._run_id, self.client, self.sink, self.describe = run_id, client, sink, describe
        self.cancelled = threading.Event()
        self.exit_code: int | None = None
        self.error: str | None = None
        self._status: str | None = None
        # an Event, not Thread.join: a join interrupted by Ctrl-C can later report a live thread
        # as finished (CPython 3.11), and the run would be left RUNNING
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._monitor, name=f"antgo-submit-{run_id}", daemon=True
        )

    @property
    def run_id(self) -> str:
        return self._run_id

    def start(self) -> SubmittedJob:
        self._thread.start()
        return self

    # -- subclass hooks
    def _follow(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cleanup(self) -> None:
        pass

    # -- lifecycle
    def _monitor(self) -> None:
        try:
            self.exit_code = self._follow()
        except Exception as exc:  # a lost connection or an engine error ends the run FAILED
            self.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            self.sink.note(f"lost the job: {self.error}")
        finally:
            try:
                with contextlib.suppress(Exception):
                    self._cleanup()
                self._finish()
            finally:
                self._done.set()

    def _finish(self) -> None:
        if self.cancelled.is_set():
            status = "KILLED"
        elif self.error is None and self.exit_code == 0:
            status = "FINISHED"
        else:
            status = "FAILED"
        if status != "FINISHED":
            self.sink.note(
                f"run {self.run_id} {status}"
                + (f" (exit code {self.exit_code})" if self.exit_code not in (None, 0) else "")
            )
        tags = {}
        if self.exit_code is not None:
            tags[TAG_EXIT] = str(self.exit_code)
        if self.error:
            tags[TAG_ERROR] = self.error
        try:
            with contextlib.suppress(Exception):
                for key, value in tags.items():
                    self.client.set_tag(self.run_id, key, value)
            with contextlib.suppress(Exception):
                self.sink.close()
        finally:
            with contextlib.suppress(Exception):
                self.client.set_terminated(self.run_id, status)
            self._status = status

    def wait(self) -> bool:
        """Block until the job ends; True when the run FINISHED."""
        while not self._done.wait(0.5):  # short waits keep Ctrl-C responsive
            pass
        return self._status == "FINISHED"

    def get_status(self) -> str:
        """RUNNING while the job runs, then FINISHED, FAILED or KILLED."""
        if self._status is None:
            return RunStatus.to_string(RunStatus.RUNNING)
        return self._status

    def cancel(self) -> None:
        """End the job (its whole process group / container) and wait until the run is KILLED."""
        if self._status is not None:
            return
        self.cancelled.set()
        with contextlib.suppress(Exception):
            self._stop()
        self._done.wait(GRACE_S + 20)

    def done(self, timeout: float | None = None) -> bool:
        """True once the job ended and its run was closed (waits up to ``timeout``)."""
        return self._done.wait(timeout)


# -- waiting: inside `mlflow run`, and at exit for synchronous=False callers -------------------
_PENDING: list[SubmittedJob] = []
_ATEXIT = False


def _inside_mlflow_run_cli() -> bool:
    try:
        import click
        from mlflow.cli import run as mlflow_run_command
    except Exception:
        return False
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.command is mlflow_run_command


def wait_in_foreground(job: SubmittedJob) -> bool:
    """Wait for ``job``; Ctrl-C or SIGTERM cancel it (run KILLED) and are re-raised."""
    previous = None
    if threading.current_thread() is threading.main_thread():

        def _term(signum, frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, _term)
    try:
        return job.wait()
    except KeyboardInterrupt:
        job.sink.note(f"interrupted: cancelling run {job.run_id}")
        job.cancel()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _wait_at_exit() -> None:
    for job in list(_PENDING):
        try:
            job.wait()
        except KeyboardInterrupt:
            for other in _PENDING:
                other.cancel()
            return


def _register_pending(job: SubmittedJob) -> None:
    global _ATEXIT
    _PENDING.append(job)
    if not _ATEXIT:
        atexit.register(_wait_at_exit)
        _ATEXIT = True


@dataclass
class Submission:
    """Everything ``SubmitBackend.start`` needs to start one job."""

    client: Any  # MlflowClient of the tracking server
    run: Any  # the mlflow Run the job logs into
    submitter: Any  # SSHSubmitter | DockerSubmitter | ScriptSubmitter
    snapshot: Any  # submit.snapshot.Snapshot
    command: str  # the entry point's command line (parameters quoted by MLflow)
    env: dict  # the job's environment additions
    resources: dict  # {gpu_num, cpu_num, memory}
    sink: LogSink
    options: dict  # run-level backend_config keys

    @property
    def run_id(self) -> str:
        return self.run.info.run_id


# -- the backend -------------------------------------------------------------------------------
class SubmitBackend(AbstractBackend):
    """``AbstractBackend.run`` for a submitter; subclasses connect to a target and start the job."""

    kind = ""  # ssh | docker | script
    backend_name = ""  # antgo-ssh | antgo-docker | antgo-script

    # -- subclass hooks
    def connect(self, submitter, tracking_uri: str):
        """Check the target answers (and the tracking URI suits it); return a handle for ``start``."""
        raise NotImplementedError

    def tracking_uri(self, submitter, uri: str) -> str:
        """The tracking URI the job will use (checked to be reachable from the target)."""
        return uri

    def start(self, handle, job: Submission) -> SubmittedJob:
        """Start the job; return its ``SubmittedJob`` (its monitor not yet started)."""
        raise NotImplementedError

    def run_tags(self, submitter) -> dict:
        return {}

    # -- the contract
    def run(
        self, project_uri, entry_point, params, version, backend_config, tracking_uri, experiment_id
    ):
        """Submit ``entry_point`` of ``project_uri``; return a ``SubmittedRun`` at once."""
        try:
            return self._run(
                project_uri,
                entry_point,
                params,
                version,
                backend_config,
                tracking_uri,
                experiment_id,
            )
        except SubmitError:
            raise
        except AntgoError as exc:
            raise SubmitError(str(exc)) from None

    def _run(
        self, project_uri, entry_point, params, version, backend_config, tracking_uri, experiment_id
    ):
        from mlflow import MlflowClient
        from mlflow.projects.utils import get_or_create_run

        from antgo_mlflow.submit.config import resolve
        from antgo_mlflow.submit.snapshot import take_snapshot

        config = dict(backend_config or {})
        synchronous = bool(config.get("SYNCHRONOUS", True))
        options = {k: config.get(k) for k in RUN_KEYS if config.get(k) is not None}
        submitter = resolve(
            self.kind, {k: v for k, v in config.items() if k not in MLFLOW_KEYS + RUN_KEYS}
        )
        params = {k: str(v) for k, v in (params or {}).items()}
        work_dir, command = entry_command(project_uri, version, entry_point, params)
        job_uri = self.tracking_uri(submitter, tracking_uri)
        client = MlflowClient(tracking_uri)
        resources = _resources(options.get("resources"), client, experiment_id)
        attached = options.get("run_id")  # a run made by the caller ends FAILED if we refuse
        run = handle = sink = None
        try:
            handle = self.connect(submitter, job_uri)  # bad input ends here: no run made yet
            key_file = getattr(submitter, "key_file", "")
            snapshot = take_snapshot(work_dir, exclude=[key_file] if key_file else [])
            run = get_or_create_run(
                attached, project_uri, experiment_id, work_dir, version, entry_point, params
            )
            if run.info.status != "RUNNING":
                raise SubmitError(f"run_id={run.info.run_id}: the run is {run.info.status}")
            run_id = run.info.run_id
            tags = {
                TAG_SUBMITTER: self.kind,
                TAG_HOST: submitter.address,
                TAG_DIGEST: snapshot.digest,
                TAG_FILES: str(len(snapshot.files)),
                TAG_RESOURCES: json.dumps(resources, sort_keys=True),
                "mlflow.project.backend": self.backend_name,
                **self.run_tags(submitter),
            }
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            env = job_env(submitter, options, resources, job_uri, run)
            echo, interval = bool(options.get("echo", True)), float(options.get("log_interval", 10))
            sink = LogSink(client, run_id, echo=echo, interval=interval)
            sink.note(
                f"{self.backend_name}: run {run_id} on {submitter.address}; "
                f"snapshot {snapshot.describe()}"
            )
            submission = Submission(
                client, run, submitter, snapshot, command, env, resources, sink, options
            )
            job = self.start(handle, submission)
            job.start()
        except BaseException as exc:
            raise self._refused(exc, client, handle, sink, run, attached, submitter) from None
        if _inside_mlflow_run_cli():
            if not wait_in_foreground(job):
                raise ExecutionException(f"Run (ID '{job.run_id}') {job.get_status()}")
        elif not synchronous:
            _register_pending(job)
        return job

    def _refused(self, exc, client, handle, sink, run, attached, submitter) -> BaseException:
        """Undo a submission that failed half-way; return the exception to raise."""
        msg = one_line(exc) or type(exc).__name__
        if handle is not None:
            with contextlib.suppress(Exception):
                self.close(handle)
        if sink is not None:
            with contextlib.suppress(Exception):
                sink.note(f"could not start the job: {msg}")
                sink.close()
        failed = run.info.run_id if run is not None else attached
        if failed:
            with contextlib.suppress(Exception):
                client.set_tag(failed, TAG_ERROR, msg)
            with contextlib.suppress(Exception):
                interrupted = isinstance(exc, KeyboardInterrupt)
                client.set_terminated(failed, "KILLED" if interrupted else "FAILED")
        if isinstance(exc, AntgoError) or not isinstance(exc, Exception):
            return exc
        if isinstance(exc, (OSError, EOFError)) or type(exc).__module__.startswith(
            ("paramiko", "docker", "requests")
        ):
            return SubmitError(
                f"{self.backend_name}: could not start the job on {submitter.address}: {msg}"
            )
        return exc

    def close(self, handle) -> None:
        """Release what ``connect`` opened (on a failed start)."""


def entry_command(project_uri, version, entry_point, params) -> tuple[str, str]:
    """Fetch the project (MLflow's way) and the entry point's command line, parameters quoted."""
    from mlflow.projects.utils import fetch_and_validate_project, load_project

    work_dir = fetch_and_validate_project(project_uri, version, entry_point, params)
    storage = tempfile.mkdtemp(prefix="antgo-submit-storage-")
    try:
        command = (
            load_project(work_dir).get_entry_point(entry_point).compute_command(params, storage)
        )
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(storage)
    return work_dir, command


def job_env(submitter, options: dict, resources: dict, tracking_uri: str, run) -> dict:
    """The job's environment additions: submitter and caller env, resources, tracking variables."""
    env = dict(getattr(submitter, "env", {}) or {})
    env.update({str(k): str(v) for k, v in (options.get("env") or {}).items()})
    env.update(_resource_env(resources))
    env.update({k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)})
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_RUN_ID=run.info.run_id,
        MLFLOW_EXPERIMENT_ID=str(run.info.experiment_id),
    )
    return env


def _resources(given, client, experiment_id) -> dict:
    """``{gpu_num, cpu_num, memory}``: ``given``, else the project's submitter setting, else zeros."""
    base = {"gpu_num": 0, "cpu_num": 0, "memory": 0}
    if given is None:
        with contextlib.suppress(Exception):
            from antgo_mlflow.project.projects import SETTINGS_PREFIX

            tag = client.get_experiment(str(experiment_id)).tags.get(SETTINGS_PREFIX + "submitter")
            setting = json.loads(tag) if tag else None
            given = (setting or {}).get("config") or {}
    if not isinstance(given, dict):
        raise SubmitError(f"resources={given!r} must be a mapping {{gpu_num, cpu_num, memory}}")
    for key in base:
        value = given.get(key, 0) or 0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise SubmitError(f"resources.{key}={value!r} must be a number >= 0")
        base[key] = value
    return base


def _resource_env(resources: dict) -> dict:
    env = {
        "ANTGO_GPU_NUM": str(resources["gpu_num"]),
        "ANTGO_CPU_NUM": str(resources["cpu_num"]),
        "ANTGO_MEMORY_MB": str(resources["memory"]),
    }
    if resources["cpu_num"]:
        env["OMP_NUM_THREADS"] = str(max(1, int(resources["cpu_num"])))
    return env


def wait_for_pending(timeout: float | None = None) -> None:
    """Wait for jobs started with ``synchronous=False`` (tests and long-lived callers)."""
    deadline = None if timeout is None else time.time() + timeout
    for job in list(_PENDING):
        left = None if deadline is None else max(0.0, deadline - time.time())
        job.done(left)
