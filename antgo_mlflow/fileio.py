"""Atomic file writes: write to a temporary name beside the target, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".antgo-tmp-"
#: Inside a staging folder: the owner record (``antgo_mlflow.owner``) of the process using it.
OWNER_FILE = ".antgo-owner.json"
#: Inside a staging folder: a commit in progress that must be finished, never discarded.
JOURNAL_FILE = "commit.json"
#: A temporary whose owner cannot be checked (another host, no record) is stale after this.
STALE_AGE_S = 24 * 3600


def _default_mode() -> int:
    # mkstemp creates 0600 files; outputs should get the usual 0666 & ~umask like open() gives.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on clean exit fsync and rename it onto ``path``.

    On an exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    keeps its old content, if any.
    """
    if "w" not in mode:
        raise ValueError("atomic_open only writes")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, _default_mode())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(
    path: str | os.PathLike,
    expected: str = "JSON",
    error: type[Exception] | None = None,
    json_lines: bool = False,
) -> Any:
    """Parse a user's JSON file, or raise ``error`` (default DataError) as one line naming it.

    Args:
        path: the file.
        expected: what the file should hold, for the empty-file message ("a JSON list of samples").
        error: the AntgoError subclass to raise.
        json_lines: also accept one JSON value per line (antgo's line variant of GT files).
    """
    from antgo_mlflow.errors import DataError

    error = error or DataError
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text (is it a JSON file?)") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder (expected a file with {expected})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not text.strip():
        raise error(f"{path}: empty file (expected {expected})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if not (json_lines and exc.msg == "Extra data" and text.lstrip().startswith("{")):
            raise error(
                f"{path}:{exc.lineno}:{exc.colno}: invalid or truncated JSON: {exc.msg}"
            ) from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply (expected {expected})") from None
    values = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{lineno}: invalid JSON line: {exc.msg}") from None
            except RecursionError:
                raise error(f"{path}:{lineno}: JSON nested too deeply") from None
    return values


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as UTF-8 JSON (non-ASCII kept) and write it atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=indent)


class StagingDir:
    """A hidden folder inside ``target`` where outputs are built before being moved into place.

    Use as a context manager: on success ``commit()`` moves every staged file to the same
    relative path under ``target`` (files moved last win, so write the index file last);
    on error, Ctrl-C or SIGTERM the staging folder is deleted and ``target`` is left as it was
    (folders this run created are removed again). The folder records its owner, so the next run
    into the same ``target`` removes it if this process was killed (``remove_stale_temporaries``).
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.path = self.target / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
        self._created: Path | None = None

    def __enter__(self) -> StagingDir:
        self._created = make_output_dir(self.target)
        remove_stale_temporaries(self.target)
        try:
            self.path.mkdir()
            write_owner(self.path)
        except OSError as exc:
            self._remove_created()
            raise _output_error(self.target, exc) from None
        return self

    def commit(self, last: list[str] | tuple[str, ...] = ()) -> None:
        """Move staged files into ``target``; names in ``last`` (relative paths) move at the end."""
        staged = [
            p
            for p in sorted(self.path.rglob("*"))
            if p.is_file() and p.relative_to(self.path).as_posix() != OWNER_FILE
        ]
        last_set = {str(Path(name)) for name in last}
        ordered = [p for p in staged if str(p.relative_to(self.path)) not in last_set]
        ordered += [p for p in staged if str(p.relative_to(self.path)) in last_set]
        for src in ordered:
            dst = self.target / src.relative_to(self.path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        shutil.rmtree(self.path, ignore_errors=True)

    def _remove_created(self) -> None:
        # Only folders this run created, deepest first, and only while empty.
        if self._created is None:
            return
        for folder in (self.target, *self.target.parents):
            with contextlib.suppress(OSError):
                folder.rmdir()
            if folder == self._created:
                break

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if exc_type is not None:
            self._remove_created()


def _output_error(target: Path, exc: OSError):
    from antgo_mlflow.errors import DataError

    for folder in (target, *target.parents):
        if folder.exists() and not folder.is_dir():
            return DataError(f"{target}: cannot create the output folder: {folder} is a file")
    return DataError(f"{target}: cannot write the output folder ({exc.strerror or exc})")


def make_output_dir(target: str | os.PathLike) -> Path | None:
    """Create ``target`` (and missing parents); return the topmost folder created, None if it existed.

    Raises DataError naming ``target`` (not a temporary inside it) when a parent is a file or
    the file system refuses the write (read-only, no permission).
    """
    target = Path(target)
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise _output_error(target, PermissionError(13, "permission denied"))
        return None
    missing = None
    for folder in (target, *target.parents):
        if folder.exists() or str(folder) in ("", "."):
            break
        missing = folder
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(target, exc) from None
    return missing


def write_owner(folder: str | os.PathLike) -> None:
    """Record this process as the owner of a staging ``folder``."""
    from antgo_mlflow.owner import current_owner

    (Path(folder) / OWNER_FILE).write_text(json.dumps(current_owner()), encoding="utf-8")


def _stale(path: Path, max_age_s: float) -> bool:
    """A temporary left by a process that is gone, or older than ``max_age_s`` when unknowable."""
    from antgo_mlflow.owner import gone_reason, is_this_host

    if path.is_dir():
        if (path / JOURNAL_FILE).exists():
            return False  # a commit in progress: whoever opens the target next finishes it
        try:
            owner = json.loads((path / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            owner = None
        if isinstance(owner, dict) and owner.get("host"):
            if gone_reason(owner):
                return True
            if is_this_host(owner):
                return False  # its owner still runs
    else:
        import fcntl

        try:  # a lock file some live process holds is in use, whatever its age
            with open(path, "rb") as fh:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            pass
    try:
        return time.time() - path.stat().st_mtime > max_age_s
    except OSError:
        return False


def remove_stale_temporaries(folder: str | os.PathLike, max_age_s: float = STALE_AGE_S) -> int:
    """Delete leftovers of interrupted runs in ``folder``; return how many were removed.

    A staging folder goes when its recorded owner is provably gone (same host, pid not running
    or reused) or, when that cannot be known, once it is older than ``max_age_s``; a temporary
    file goes once it is older than that. Folders holding a commit journal are kept.
    """
    removed = 0
    try:
        candidates = list(Path(folder).glob(TMP_PREFIX + "*"))
    except OSError:
        return 0
    for p in candidates:
        if not _stale(p, max_age_s):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed
