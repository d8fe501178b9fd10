"""A throw-away PostgreSQL server on 127.0.0.1 for tests and benchmarks (real binaries, temp data).

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
(``runuser``) in a folder it owns; otherwise as the current user. ``PgServer.find()`` returns the
reason when no server can run here, for a clear skip.

Example:
    with PgServer() as pg:
        url = pg.create_database("hpo")   # postgresql://antgo@127.0.0.1:<port>/hpo
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

USER = "antgo"


def _free_port() -> int:
    from antgo_mlflow.review.browser import free_port

    return free_port()


def find_bin() -> Path | None:
    """The folder with ``initdb``/``pg_ctl``/``createdb``: Debian's /usr/lib/postgresql/<v>/bin,
    else where ``pg_ctl`` on PATH points (links resolved: some images link only a few tools)."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if versions:
        return Path(versions[0]).parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


class PgServer:
    """Start with ``start()`` (or ``with``); ``stop()`` kills it and removes its folder.

    ``keep=<folder>``: the data lives there and survives ``stop()``; a later ``start()`` reopens
    it (a benchmark run in pieces).
    """

    def __init__(self, keep: str | os.PathLike | None = None):
        self.bin = find_bin()
        self.port = _free_port()
        self.root: Path | None = None
        self.keep = Path(keep).resolve() if keep else None
        self._as: list[str] = []

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=120, check=check
        )

    def start(self) -> PgServer:
        if self.bin is None:
            raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql)")
        if self.keep:
            self.keep.mkdir(parents=True, exist_ok=True)
        self.root = self.keep or Path(tempfile.mkdtemp(prefix="antgo-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        data = self.root / "data"
        try:
            if not (data / "PG_VERSION").is_file():
                self._run(
                    str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", USER,
                    "--no-sync", "-E", "UTF8",
                )  # fmt: skip
            opts = f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off -c max_connections=200"
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts,
                "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
            )  # fmt: skip
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {detail.strip()[-500:]}") from exc
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None, exist_ok: bool = False) -> str:
        """A fresh database (``exist_ok``: or the one of that name); returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        proc = self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name,
            check=not exist_ok,
        )  # fmt: skip
        if proc.returncode and "already exists" not in proc.stderr:
            raise subprocess.CalledProcessError(
                proc.returncode, proc.args, proc.stdout, proc.stderr
            )
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            mode = "fast" if self.keep else "immediate"  # kept data: a clean shutdown
            self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-m", mode, "stop",
                      check=False)  # fmt: skip
            time.sleep(0.1)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
