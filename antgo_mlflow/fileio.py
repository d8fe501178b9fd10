"""Atomic file writes: write to a temporary name beside the target, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".antgo-tmp-"


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
    if not text.strip():
        raise error(f"{path}: empty file (expected {expected})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if not (json_lines and exc.msg == "Extra data" and text.lstrip().startswith("{")):
            raise error(
                f"{path}:{exc.lineno}:{exc.colno}: invalid or truncated JSON: {exc.msg}"
            ) from None
    values = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{lineno}: invalid JSON line: {exc.msg}") from None
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
    on error or Ctrl-C the staging folder is deleted and ``target`` is left as it was.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.path = self.target / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
        self._created_target = False

    def __enter__(self) -> StagingDir:
        self._created_target = not self.target.exists()
        self.path.mkdir(parents=True)
        return self

    def commit(self, last: list[str] | tuple[str, ...] = ()) -> None:
        """Move staged files into ``target``; names in ``last`` (relative paths) move at the end."""
        staged = [p for p in sorted(self.path.rglob("*")) if p.is_file()]
        last_set = {str(Path(name)) for name in last}
        ordered = [p for p in staged if str(p.relative_to(self.path)) not in last_set]
        ordered += [p for p in staged if str(p.relative_to(self.path)) in last_set]
        for src in ordered:
            dst = self.target / src.relative_to(self.path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        shutil.rmtree(self.path, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if exc_type is not None and self._created_target:
            with contextlib.suppress(OSError):
                self.target.rmdir()  # only if still empty


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete leftovers of interrupted atomic writes in ``folder``; return how many were removed."""
    removed = 0
    for p in Path(folder).glob(TMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed
