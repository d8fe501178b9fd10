"""Shared parts of the extract tools: the summary they return, input checks and folder walking."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.fileio import TMP_PREFIX

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".ts", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv")


@dataclass
class ExtractSummary:
    """What an extract tool did: counts, skip reasons and the files it wrote.

    Attributes:
        written: number of samples written to ``annotation``.
        annotation: path of the GT JSON written.
        tgt: the output folder.
        skipped: reason -> count of inputs that were skipped.
        skipped_files: (path, reason) for each skipped input, in input order.
        outputs: every file written (images first, the GT JSON last).
        notes: remarks worth telling the user (e.g. ``--num`` larger than what was available).
        warnings: one line per problem that did not stop the run.
        extra: tool-specific values (e.g. category names, sample keys).
    """

    written: int = 0
    annotation: Path | None = None
    tgt: Path | None = None
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def skip(self, path: str | os.PathLike, reason: str) -> None:
        """Count one skipped input; ``reason`` is a singular noun phrase ("corrupt image")."""
        self.skipped[reason] += 1
        self.skipped_files.append((str(path), reason))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def skipped_text(self, files: bool = False) -> str:
        """'skipped 3 (2 corrupt images, 1 non-image file)' or 'nothing skipped'; with ``files``
        the first three skipped inputs are named too."""
        if not self.n_skipped:
            return "nothing skipped"
        # reasons are singular nouns ("corrupt image"); counts above one take a plural "s"
        parts = ", ".join(
            f"{n} {reason}{'s' if n > 1 else ''}" for reason, n in sorted(self.skipped.items())
        )
        text = f"skipped {self.n_skipped} ({parts})"
        if files and self.skipped_files:
            shown = ", ".join(f"{p} ({r})" for p, r in self.skipped_files[:3])
            more = len(self.skipped_files) - 3
            text += f": {shown}" + (f" and {more} more" if more > 0 else "")
        return text

    def describe(self, what: str = "samples") -> str:
        """One paragraph for the CLI: what was written where, what was skipped, and notes."""
        text = f"wrote {self.written} {what} to {self.annotation}; {self.skipped_text(True)}."
        for note in self.notes:
            text += f" {note}"
        return text


def check_dir(path: str | os.PathLike, flag: str = "--src") -> Path:
    """``path`` as an existing folder, or a one-line error naming ``flag``."""
    if path is None or str(path) == "":
        raise UsageError(f"{flag} is required")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{flag} {p}: no such file or folder")
    if not p.is_dir():
        raise DataError(f"{flag} {p}: not a folder")
    return p


def check_file(path: str | os.PathLike, flag: str = "--src") -> Path:
    """``path`` as an existing file, or a one-line error naming ``flag``."""
    if path is None or str(path) == "":
        raise UsageError(f"{flag} is required")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{flag} {p}: no such file or folder")
    if not p.is_file():
        raise DataError(f"{flag} {p}: not a file")
    return p


def check_tgt(tgt: str | os.PathLike | None, src: Path) -> Path:
    """The output folder; refuses to write into the input folder itself."""
    if tgt is None or str(tgt) == "":
        raise UsageError("--tgt is required")
    t = Path(tgt).expanduser()
    if t.exists() and not t.is_dir():
        raise UsageError(f"--tgt {t}: exists and is not a folder")
    if src.is_dir() and t.resolve() == src.resolve():
        raise UsageError(f"--tgt {t}: must differ from --src (it would overwrite the inputs)")
    return t


def parse_exts(ext: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    """'jpg,.PNG' -> ('.jpg', '.png'); None or '' -> None (no filter)."""
    if not ext:
        return None
    items = ext.split(",") if isinstance(ext, str) else list(ext)
    out = tuple("." + e.strip().lower().lstrip(".") for e in items if e.strip())
    return out or None


def walk_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every regular file under ``root`` as a path relative to it, sorted; skips hidden staging
    folders of interrupted runs and ``exclude`` (an output folder inside the input folder)."""
    excluded = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        keep = []
        for d in dirnames:
            if d.startswith(TMP_PREFIX):
                continue
            if excluded is not None and (here / d).resolve() == excluded:
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if name.startswith(TMP_PREFIX):
                continue
            full = here / name
            if full.is_file():
                found.append(full.relative_to(root))
    found.sort(key=lambda p: p.as_posix())
    return found


def default_workers(workers: int | None) -> int:
    """``workers`` or the number of usable cores; at least 1."""
    if workers is not None:
        if workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_max_size(max_size: int | None) -> int | None:
    """``max_size`` as a positive int, or None (no resizing)."""
    if max_size is None or max_size == 0:
        return None
    if max_size < 0:
        raise UsageError(f"--max-size must be > 0, got {max_size}")
    return int(max_size)


def fit_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(w, h) scaled so the long side is at most ``max_size``, aspect kept; never upscaled."""
    if not max_size or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
