"""Where a study lives: choosing, opening and describing Optuna storages.

- One process: SQLite, ``optuna.db`` next to the MLflow store (the default).
- Several processes on one machine (``--workers K``): a journal file, ``optuna-journal.log`` next
  to the MLflow store (Optuna advises against SQLite for parallel writers: "database is locked").
- Several machines: PostgreSQL, ``--storage=postgresql://user@host/db``.

Every storage records heartbeats, so a trial whose worker died (``kill -9``, a lost machine) is
failed and handed to ``stale_callback`` (which retries it) by the next worker that asks for a trial.
Optuna's journal storage has no heartbeats of its own; ``HeartbeatJournalStorage`` adds them as a
trial system attribute.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from antgo_mlflow import env
from antgo_mlflow.errors import UsageError

SQLITE_FILE = "optuna.db"
JOURNAL_FILE = "optuna-journal.log"
HEARTBEAT_ATTR = "antgo.heartbeat"
#: The storage URL of worker processes (not a command-line argument: it may hold a password).
STORAGE_ENV = env.ANTGO_HPO_STORAGE
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def mask(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs, tags and messages)."""
    return _PASSWORD.sub(r"\1***@", str(url))


def store_folder(tracking_uri: str | None = None) -> Path:
    """The folder of the local MLflow store (SQLite file or ``mlruns``), else the current folder."""
    if tracking_uri is None:
        import mlflow

        tracking_uri = mlflow.get_tracking_uri()
    uri = str(tracking_uri)
    if uri.startswith("sqlite:///"):
        path = Path(unquote(uri[len("sqlite:///") :]))
        if not uri.startswith("sqlite:////") and not path.is_absolute():
            path = Path.cwd() / path
        return path.parent
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = Path(unquote(parts.path if parts.scheme else uri))
        return (path if path.is_absolute() else Path.cwd() / path).parent
    return Path.cwd()  # a tracking server: keep the study next to where the command runs


def default_storage(workers: int, tracking_uri: str | None = None) -> str:
    """SQLite for one process, a journal file for several (both next to the MLflow store)."""
    folder = store_folder(tracking_uri)
    if workers > 1:
        return str(folder / JOURNAL_FILE)
    return f"sqlite:///{folder / SQLITE_FILE}"


def kind(url: str) -> str:
    """'sqlite', 'postgresql', 'mysql' (SQLAlchemy URLs) or 'journal' (a file path)."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if not scheme:
        return "journal"
    if scheme == "postgres":
        return "postgresql"
    if scheme in RDB_SCHEMES:
        return scheme
    raise UsageError(
        f"--storage={mask(url)}: unknown storage (sqlite:///file.db, postgresql://user@host/db, "
        "mysql://…, or a journal file path)"
    )


def normalise(url: str) -> str:
    """A URL SQLAlchemy opens: ``postgres://`` and ``postgresql://`` get the installed driver
    (``postgresql+psycopg2://``); journal paths are made absolute."""
    if kind(url) == "journal":
        return str(Path(url).expanduser().resolve())
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        # SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3; the hpo extra installs psycopg2
        url = f"postgresql+{_pg_driver()}://" + url[len("postgresql://") :]
    return url


def _pg_driver() -> str:
    import importlib.util

    return "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"


def journal_path(url: str) -> Path | None:
    return Path(url) if kind(url) == "journal" else None


def sqlite_path(url: str) -> Path | None:
    if kind(url) != "sqlite" or url.startswith("sqlite:///:memory:") or url == "sqlite://":
        return None
    return Path(unquote(url.split(":///", 1)[1])) if ":///" in url else None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_storage(url: str, heartbeat: int | None = None, stale_callback=None, create=True):
    """Open the Optuna storage at ``url`` (checked reachable), with heartbeats if ``heartbeat``.

    Args:
        url: a SQLAlchemy URL (``sqlite:///…``, ``postgresql://…``) or a journal file path.
        heartbeat: seconds between a running trial's heartbeats; a trial silent for 3× that long
            is failed and passed to ``stale_callback``.
        create: False refuses to create a missing SQLite/journal file (``--show``).

    Raises:
        UsageError: the storage cannot be reached or opened (one line, password masked).
    """
    import optuna

    url = normalise(url)
    grace = 3 * heartbeat if heartbeat else None
    shown = mask(url)
    path = journal_path(url) or sqlite_path(url)
    if path is not None and not create and not path.is_file():
        raise UsageError(f"--storage={shown}: no such file")
    if path is not None and create:
        if not path.parent.is_dir():
            raise UsageError(f"--storage={shown}: folder {path.parent} does not exist")
    if kind(url) == "journal":
        from optuna.storages.journal import JournalFileBackend

        try:
            backend = JournalFileBackend(str(url))
        except OSError as exc:
            raise UsageError(f"--storage={shown}: cannot open the journal ({exc})") from exc
        return HeartbeatJournalStorage(backend, heartbeat, grace, stale_callback)
    engine_kwargs: dict = {}
    if kind(url) == "postgresql":
        # fail in seconds, not minutes, on an unreachable server; drop connections a server closed
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    elif kind(url) == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat,
            grace_period=grace,
            heartbeat_stale_trial_callback=stale_callback,
        )
    except ImportError as exc:
        raise UsageError(
            f"--storage={shown}: no database driver for it (PostgreSQL: pip install "
            "'antgo-mlflow[hpo]', which has psycopg2-binary)"
        ) from exc
    except Exception as exc:  # sqlalchemy's OperationalError/ArgumentError, driver errors
        raise UsageError(f"--storage={shown}: cannot connect: {_first_line(exc)}") from exc


@functools.cache
def _journal_storage_class():
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat

    class _HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
        """A journal storage whose running trials record heartbeats (a system attribute)."""

        def __init__(self, backend, heartbeat=None, grace=None, stale_callback=None):
            super().__init__(backend)
            self._heartbeat = heartbeat
            self._grace = grace or (2 * heartbeat if heartbeat else None)
            self._stale_callback = stale_callback

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            if not self._grace:
                return []
            now = time.time()
            stale = []
            running = self.get_all_trials(
                study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            )
            for trial in running:
                beat = trial.system_attrs.get(HEARTBEAT_ATTR)
                if beat is None and trial.datetime_start is not None:
                    beat = trial.datetime_start.timestamp()
                if beat is not None and now - float(beat) > self._grace:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._heartbeat

        def get_heartbeat_stale_trial_callback(self):
            return self._stale_callback

    return _HeartbeatJournalStorage


def HeartbeatJournalStorage(backend, heartbeat=None, grace=None, stale_callback=None):  # noqa: N802
    """A ``JournalStorage`` on ``backend`` with heartbeats (the class is built on first use so
    that importing this module does not import Optuna)."""
    return _journal_storage_class()(backend, heartbeat, grace, stale_callback)
