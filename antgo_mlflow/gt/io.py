"""Read and write standard GT files: a JSON list, or antgo's one-sample-per-line variant.

Data stays inside its dataset: ``load_gt`` refuses a sample whose ``image_file`` resolves outside
the dataset folder (the folder of the GT JSON) - ``../../x.png``, an absolute path elsewhere, or a
symlink pointing out - with one line naming the sample. Datasets whose images really live
elsewhere are allowed explicitly: ``--data-root DIR`` on the commands that read images, or the
``ANTGO_DATA_ROOTS`` environment variable (folders separated by ``os.pathsep``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from antgo_mlflow import env
from antgo_mlflow.errors import DataError, GTFormatError
from antgo_mlflow.fileio import atomic_write_json, read_json
from antgo_mlflow.gt.schema import SCHEMA_VERSION, validate_samples

ANNOTATION_FILE = "annotation.json"
#: Extra folders GT images may live in besides the dataset folder (``os.pathsep``-separated).
DATA_ROOTS_ENV = env.ANTGO_DATA_ROOTS


class OutsideDatasetError(DataError):
    """A sample's ``image_file`` resolves outside the dataset folder (and any allowed root)."""


def _gt_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / ANNOTATION_FILE
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    return path


def load_gt(
    path: str | os.PathLike,
    validate: bool = True,
    inside: bool = True,
    data_roots: Sequence[str | os.PathLike] | str | None = None,
) -> list[dict[str, Any]]:
    """Load a GT file (or a folder's ``annotation.json``) as a list of sample dicts.

    Accepts a JSON list or one JSON object per line. With ``validate`` every sample is checked
    against schema 1; errors name the file, the sample index and the field. With ``inside``
    (the default; tools that only rewrite JSON pass False) every local ``image_file`` must
    resolve inside the dataset folder or one of ``data_roots`` / ``$ANTGO_DATA_ROOTS``,
    else OutsideDatasetError names the sample.
    """
    path = _gt_path(path)
    data = read_json(path, "a JSON list of samples", GTFormatError, json_lines=True)
    if isinstance(data, dict):
        # a single object on one line is the line variant with one sample
        data = [data] if "image_file" in data or "image_url" in data else data
    if not isinstance(data, list):
        raise GTFormatError(f"{path}: expected a JSON list of samples, got {type(data).__name__}")
    if validate:
        validate_samples(data, str(path))
    if inside:
        check_inside(data, path, data_roots)
    return data


def save_gt(
    path: str | os.PathLike, samples: list[dict[str, Any]], validate: bool = True, indent=None
) -> Path:
    """Write samples as a JSON list atomically (temp + rename); stamps ``schema_version``."""
    path = Path(path)
    if validate:
        validate_samples(samples, str(path))
    for sample in samples:
        sample.setdefault("schema_version", SCHEMA_VERSION)
    atomic_write_json(path, samples, indent=indent)
    return path


def _folder_of(gt_path: str | os.PathLike) -> Path:
    base = Path(gt_path)
    return base if base.is_dir() else base.parent


def data_roots(
    gt_path: str | os.PathLike, extra: Sequence[str | os.PathLike] | str | None = None
) -> list[Path]:
    """Folders images of the GT at ``gt_path`` may be in: its folder, ``extra``, $ANTGO_DATA_ROOTS."""
    if isinstance(extra, (str, os.PathLike)):
        extra = [extra]
    items: list[str | os.PathLike] = [_folder_of(gt_path), *(extra or [])]
    items += env.data_roots()
    return [Path(r).expanduser().resolve() for r in items]


class _InsideCheck:
    """Resolves image paths against allowed roots; folders are resolved once each (cached)."""

    def __init__(self, base: Path, roots: list[Path]):
        self.base = base
        self.roots = roots
        self._dirs: dict[str, Path] = {}

    def resolve(self, name: str) -> Path:
        path = self.base / name
        if path.name in ("", ".", ".."):
            return Path(os.path.realpath(path))
        parent = str(path.parent)
        real_parent = self._dirs.get(parent)
        if real_parent is None:
            real_parent = self._dirs[parent] = Path(os.path.realpath(parent))
        real = real_parent / path.name
        if os.path.islink(real):
            real = Path(os.path.realpath(real))
        return real

    def inside(self, name: str) -> bool:
        real = self.resolve(name)
        return any(real == root or real.is_relative_to(root) for root in self.roots)


def check_inside(
    samples: Iterable[Any],
    gt_path: str | os.PathLike,
    extra_roots: Sequence[str | os.PathLike] | str | None = None,
) -> None:
    """Raise OutsideDatasetError for the first sample whose ``image_file`` leaves the dataset."""
    roots = data_roots(gt_path, extra_roots)
    check = _InsideCheck(_folder_of(gt_path), roots)
    for i, sample in enumerate(samples):
        name = sample.get("image_file") if isinstance(sample, dict) else None
        if isinstance(name, str) and name and not check.inside(name):
            raise _outside(gt_path, f"sample {i}", name, roots[0])


def _outside(gt_path, which: str, name: str, root: Path) -> OutsideDatasetError:
    return OutsideDatasetError(
        f"{gt_path}: {which}: image_file {name!r} is outside the dataset folder {root} "
        f"(allow its folder with --data-root or ${DATA_ROOTS_ENV})"
    )


def inside_root(root: str | os.PathLike, name: str) -> bool:
    """True when ``root/name`` (symlinks followed) lies inside ``root``."""
    root = Path(root).resolve()
    return _InsideCheck(root, [root]).inside(name)


def resolve_image_path(
    gt_path: str | os.PathLike,
    sample: dict[str, Any],
    index: int | None = None,
    extra_roots: Sequence[str | os.PathLike] | str | None = None,
) -> Path:
    """The image file of ``sample`` (``image_file`` relative to the GT JSON's folder), checked to
    lie inside the dataset folder or an allowed root (OutsideDatasetError otherwise)."""
    roots = data_roots(gt_path, extra_roots)
    name = sample["image_file"]
    if not _InsideCheck(_folder_of(gt_path), roots).inside(name):
        raise _outside(gt_path, "sample" if index is None else f"sample {index}", name, roots[0])
    return _folder_of(gt_path) / name
