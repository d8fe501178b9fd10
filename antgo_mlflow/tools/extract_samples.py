"""extract/samples: a seeded random subset of a GT file (or of a text file's lines)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.fileio import atomic_write_text
from antgo_mlflow.gt import load_gt, save_gt
from antgo_mlflow.gt.io import ANNOTATION_FILE
from antgo_mlflow.tools._extract_common import ExtractSummary


def _output_path(src: Path, num: int, tgt: str | os.PathLike | None) -> Path:
    name = f"{src.stem}_samples_{num}{'.txt' if src.suffix == '.txt' else '.json'}"
    if tgt is None or str(tgt) == "":
        return src.parent / name
    t = Path(tgt).expanduser()
    if t.suffix.lower() in (".json", ".txt"):
        return t
    if t.exists() and not t.is_dir():
        raise UsageError(f"--tgt {t}: exists and is not a folder")
    return t / name


def _rebase(sample: dict, src_dir: Path, out_dir: Path) -> dict:
    """Keep ``image_file`` pointing at the same file when the JSON moves to another folder."""
    image_file = sample.get("image_file")
    if not image_file or os.path.isabs(image_file) or src_dir.resolve() == out_dir.resolve():
        return sample
    moved = dict(sample)
    moved["image_file"] = Path(os.path.relpath(src_dir / image_file, out_dir)).as_posix()
    return moved


def extract_samples(
    src: str | os.PathLike,
    num: int,
    tgt: str | os.PathLike | None = None,
    seed: int = 0,
) -> ExtractSummary:
    """Write ``num`` randomly chosen samples of ``src`` to ``<name>_samples_<num>.json``.

    Args:
        src: a GT JSON (list or one sample per line), a dataset folder (its annotation.json),
            or a ``.txt`` file (one record per line; the output is then ``.txt`` too).
        num: how many samples; more than ``src`` holds is a UsageError (the file name would
            promise samples that do not exist).
        tgt: output folder (default: beside ``src``) or an explicit ``.json``/``.txt`` path.
            ``image_file`` paths are rewritten so they stay valid from the new folder.
        seed: random seed; the same seed gives the same subset. Samples keep their order.

    Returns:
        An ExtractSummary; ``extra["keys"]`` lists the fields found, ``extra["example"]`` is
        the first chosen sample.

    Example:
        >>> extract_samples("dataset/annotation.json", 100, seed=1).annotation  # doctest: +SKIP
        PosixPath('dataset/annotation_samples_100.json')
    """
    if src is None or str(src) == "":
        raise UsageError("--src is required")
    src_path = Path(src).expanduser()
    if not src_path.exists():
        raise DataError(f"--src {src_path}: no such file or folder")
    if src_path.is_dir():
        src_path = src_path / ANNOTATION_FILE
    if num is None or num < 1:
        raise UsageError(f"--num must be >= 1, got {num}")

    is_text = src_path.suffix.lower() == ".txt"
    if is_text:
        if not src_path.is_file():
            raise DataError(f"--src {src_path}: no such file")
        records = [line for line in src_path.read_text(encoding="utf-8").splitlines() if line]
    else:
        records = load_gt(src_path, inside=False)  # JSON only: image paths are rebased
    if not records:
        raise DataError(f"--src {src_path}: holds no samples")
    if num > len(records):
        raise UsageError(f"--num={num} is larger than the {len(records)} samples in {src_path}")

    chosen = sorted(random.Random(seed).sample(range(len(records)), num))
    out_path = _output_path(src_path, num, tgt)
    if out_path.resolve() == src_path.resolve():
        raise UsageError(f"--tgt {out_path}: would overwrite --src")
    if is_text:
        picked = [records[i] for i in chosen]
        atomic_write_text(out_path, "\n".join(picked) + "\n")
        keys: list[str] = []
    else:
        picked = [_rebase(records[i], src_path.parent, out_path.parent) for i in chosen]
        save_gt(out_path, picked)
        keys = sorted({k for s in picked for k in s})

    summary = ExtractSummary(tgt=out_path.parent, written=num, annotation=out_path)
    summary.outputs.append(out_path)
    summary.extra.update(keys=keys, example=picked[0], total=len(records))
    return summary
