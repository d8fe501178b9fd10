"""Review GT samples in the FiftyOne App: persistent dataset, App on 127.0.0.1, tag feedback.

Used by ``antgo tool browser/images`` and by ``InteractContext.browser`` (same code).
Shutdown: Ctrl-C and SIGTERM close the App server (and, for the CLI, the database service this
process started); nothing is left holding the port.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, ServiceError, UsageError, one_line

PLUGIN_DIR = Path(__file__).with_name("fo_plugins")


def port_is_free(port: int, address: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``address:port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tunnel_hint(port: int) -> str:
    """The ``ssh -N -L`` line a remote user runs to reach the App."""
    user = os.environ.get("USER") or getpass.getuser()
    host = socket.gethostname()
    return f"ssh -N -L {port}:127.0.0.1:{port} {user}@{host}"


def default_dataset_name(src: str | os.PathLike) -> str:
    """``antgo-<folder>-<file stem>`` (stable, so re-running updates the same dataset)."""
    path = Path(src).resolve()
    if path.is_dir():
        return f"antgo-{path.name}-annotation"
    return f"antgo-{path.parent.name}-{path.stem}"


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler so that cleanup code runs."""


@contextlib.contextmanager
def sigterm_as_exception():
    """Turn SIGTERM into an exception for the duration of the block (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class AppServer:
    """One FiftyOne App session on 127.0.0.1; :meth:`close` stops its server process."""

    def __init__(self, dataset, port: int, echo: Callable[[str], Any] = print):
        from antgo_mlflow.review.fiftyone_io import fo

        if not port_is_free(port):
            raise ServiceError(f"port {port} is in use on 127.0.0.1 (pick another one with --port)")
        fo_ = fo()
        os.environ.setdefault("FIFTYONE_PLUGINS_DIR", str(PLUGIN_DIR))
        fo_.config.plugins_dir = os.environ["FIFTYONE_PLUGINS_DIR"]
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        try:
            self.session = fo_.launch_app(
                dataset, remote=True, address="127.0.0.1", port=port, auto=False
            )
        except Exception as exc:  # noqa: BLE001 - any App start failure is a service error
            self._kill_server_processes()
            raise ServiceError(
                f"FiftyOne App did not start on port {port}: {one_line(exc) or type(exc).__name__}"
            ) from None
        echo(f"FiftyOne App: {self.url}")
        echo(f"remote: {tunnel_hint(port)}  (then open {self.url})")

    def _server_processes(self) -> list:
        import psutil

        found = []
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(child.cmdline())
                if "--51-service server" in cmd or (
                    "main.py" in cmd and f"--port {self.port}" in cmd
                ):
                    found.append(child)
        return found

    def _kill_server_processes(self) -> None:
        import psutil

        procs = self._server_processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()

    def close(self) -> None:
        """Close the session and make sure the server process is gone."""
        with contextlib.suppress(Exception):
            self.session.close()
        from fiftyone.core.session import session as fos_session

        # FiftyOne keeps one server service per port; drop ours so a later launch starts afresh.
        service = fos_session._server_services.pop(self.port, None)
        if service is not None:
            with contextlib.suppress(Exception):
                service.stop()
        self._kill_server_processes()


def stop_own_services() -> None:
    """Stop every process this process started (App server, mongod service): CLI shutdown only."""
    import psutil

    with contextlib.suppress(Exception):
        from fiftyone.core.odm import database

        database._disconnect()
    procs = psutil.Process().children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


def tag_status(dataset, allowed: list[str]) -> tuple[int, int, list[str]]:
    """(samples with an allowed tag, total, sample names carrying tags outside ``allowed``)."""
    dataset.reload()
    keys = dataset.values("image_file")
    tags = dataset.values("tags")
    done, bad = 0, []
    for key, t in zip(keys, tags):
        t = t or []
        if any(x in allowed for x in t):
            done += 1
        extra = [x for x in t if x not in allowed]
        if extra:
            bad.append(f"{key}: {','.join(extra)}")
    return done, len(tags), bad


def tag_record(dataset, allowed: list[str], complete: bool) -> dict[str, Any]:
    """The ``<name>_browser.json`` content: per-sample tags in GT order."""
    from antgo_mlflow.review.fiftyone_io import INDEX

    dataset.reload()
    rows = sorted(
        zip(
            dataset.values(INDEX),
            dataset.values("image_file"),
            dataset.values("image_url"),
            dataset.values("tags"),
        ),
        key=lambda r: (r[0] is None, r[0] or 0),
    )
    return {
        "dataset": dataset.name,
        "tags": list(allowed),
        "complete": complete,
        "samples": [
            {"index": i, "image_file": f or "", "image_url": u or "", "tags": list(t or [])}
            for i, f, u, t in rows
        ],
    }


def wait_for_tags(
    dataset,
    allowed: list[str],
    echo: Callable[[str], Any] = print,
    poll: float = 1.0,
    timeout: float | None = None,
) -> bool:
    """Block until every sample carries one of ``allowed`` (True) or ``timeout`` passes (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    warned: set[str] = set()
    while True:
        done, total, bad = tag_status(dataset, allowed)
        for line in bad:
            if line not in warned:
                warned.add(line)
                echo(f"warning: tag not in the allowed set ({', '.join(allowed)}): {line}")
        if (done, total) != last:
            echo(f"tagged {done}/{total}")
            last = (done, total)
        if done == total:
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(poll)


def log_to_mlflow(path: Path) -> bool:
    """Log ``path`` as an artifact of the active MLflow run, if there is one."""
    import sys

    if "mlflow" not in sys.modules and not os.environ.get("MLFLOW_RUN_ID"):
        return False
    import mlflow

    run = mlflow.active_run()
    if run is None and os.environ.get("MLFLOW_RUN_ID"):
        with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]):
            mlflow.log_artifact(str(path), "review")
        return True
    if run is None:
        return False
    mlflow.log_artifact(str(path), "review")
    return True


def write_feedback(dataset, allowed: list[str], out: Path, complete: bool) -> Path:
    """Write the per-sample tag record atomically and log it to MLflow when a run is active."""
    from antgo_mlflow.fileio import atomic_write_json

    atomic_write_json(out, tag_record(dataset, allowed, complete), indent=1)
    log_to_mlflow(out)
    return out


def open_dataset(src, dataset_name: str | None, persistent: bool = True):
    """Load (or update) the dataset for ``src``; returns ``(dataset, name)``."""
    from antgo_mlflow.gt import load_gt, read_meta
    from antgo_mlflow.review.fiftyone_io import load_dataset

    path = Path(src)
    samples = load_gt(path)
    folder = path if path.is_dir() else path.parent
    name = dataset_name or default_dataset_name(path)
    return load_dataset(name, samples, folder, read_meta(folder), persistent=persistent), name


def browse(
    src: str | None = None,
    tags: list[str] | None = None,
    feedback: bool = False,
    port: int = 5151,
    launch: bool = True,
    dataset_name: str | None = None,
    user_input: bool = False,
    timeout: float | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """``browser/images``: load ``src`` into a persistent dataset, serve the App, collect tags."""
    tags = list(tags or [])
    if user_input and src:
        raise UsageError("--user-input opens an empty dataset: do not give --src")
    if not user_input and not src:
        raise UsageError("--src is required (or --user-input)")
    if feedback and not tags:
        raise UsageError("--feedback needs --tags (the allowed review tags, e.g. valid,invalid)")
    if feedback and not launch:
        raise UsageError("--feedback needs the App: drop --no-launch")
    if launch and not port_is_free(port):
        raise ServiceError(f"port {port} is in use on 127.0.0.1 (pick another one with --port)")
    if src and not Path(src).exists():
        raise DataError(f"--src {src}: no such file")
    result: dict[str, Any] = {}
    app = None
    with sigterm_as_exception():
        try:
            if user_input:
                dataset, name = _empty_dataset(dataset_name or "antgo-user-input")
                echo(
                    f"empty dataset {name!r}: use the operator 'antgo: import GT JSON' (press `) to add files"
                )
            else:
                dataset, name = open_dataset(src, dataset_name)
                echo(f"dataset {name!r}: {len(dataset)} samples")
            result["dataset"] = name
            if tags:
                dataset.info["antgo_review_tags"] = tags
                dataset.save()
            if not launch:
                return result
            app = AppServer(dataset, port, echo)
            if feedback:
                out = Path(src).resolve()
                out = (out if out.is_dir() else out.parent) / f"{_stem(src)}_browser.json"
                complete = False
                try:
                    complete = wait_for_tags(dataset, tags, echo, timeout=timeout)
                except (KeyboardInterrupt, _Terminated):
                    echo("stopped by the user: writing the tags given so far")
                result["feedback"] = str(write_feedback(dataset, tags, out, complete))
                result["complete"] = complete
            else:
                echo("press Ctrl-C to stop")
                while True:
                    time.sleep(1)
        except (KeyboardInterrupt, _Terminated):
            echo("stopping")
        finally:
            if app is not None:
                app.close()
            stop_own_services()
    return result


def _stem(src) -> str:
    path = Path(src)
    return "annotation" if path.is_dir() else path.stem


def _empty_dataset(name: str):
    from antgo_mlflow.review.fiftyone_io import fo

    fo_ = fo()
    dataset = fo_.load_dataset(name) if fo_.dataset_exists(name) else fo_.Dataset(name)
    dataset.persistent = True
    return dataset, name
