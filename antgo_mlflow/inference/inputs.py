"""Images to run a model on: a GT JSON (or its folder) or TFRecord shards, images read lazily.

Example:
    >>> data = read_input("unlabeled/annotation.json")
    >>> len(data), data.class_names          # (359, ['0', '1', ...])
    >>> probs = predictor.predict_proba(data.iter_images())
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError, UsageError


@dataclass
class InputSet:
    """Samples to label, their images (read lazily), and the class names if known."""

    source: str
    samples: list[dict[str, Any]]
    images: Callable[[int], np.ndarray]
    image_bytes: Callable[[int], tuple[bytes, str]] | None = None  # shard input: bytes + extension
    class_names: list[str] = field(default_factory=list)
    base: Path | None = None  # the folder image_file is relative to (GT input)

    def __len__(self) -> int:
        return len(self.samples)

    def iter_images(self, indices: Iterable[int] | None = None) -> Iterator[np.ndarray]:
        """HWC uint8 RGB images, one at a time (all samples, or ``indices``)."""
        for i in range(len(self.samples)) if indices is None else indices:
            yield self.images(i)


def _rgb(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where}: not a readable image ({exc})") from None


def _ext_of(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    return ".img"


def read_input(path: str | os.PathLike) -> InputSet:
    """A GT JSON (or a folder with ``annotation.json``), or shards (a ``-manifest.json`` or ``-tfrecord``)."""
    from antgo_mlflow.gt import load_gt, read_meta, resolve_image_path

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--input: {path} does not exist")
    name = path.name
    if name.endswith("-manifest.json") or name.endswith("-tfrecord"):
        return _read_shards(path)
    if path.is_dir():
        manifests = sorted(path.glob("*-manifest.json"))
        if not (path / "annotation.json").exists() and manifests:
            if len(manifests) > 1:
                raise UsageError(f"--input: {path} holds several manifests; name one of them")
            return _read_shards(manifests[0])
    samples = load_gt(path)
    gt_file = path / "annotation.json" if path.is_dir() else path
    meta = read_meta(gt_file.parent) or {}

    def image(i: int) -> np.ndarray:
        file = resolve_image_path(gt_file, samples[i])
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise DataError(
                f"{gt_file}: sample {i}, image_file {samples[i]['image_file']!r}: {exc.strerror}"
            ) from None
        return _rgb(data, str(file))

    names = list((meta.get("meta") or {}).get("category") or [])
    return InputSet(str(path), samples, image, None, names, gt_file.parent)


def _read_shards(path: Path) -> InputSet:
    from antgo_mlflow.data.manifest import read_manifest, shard_files
    from antgo_mlflow.data.records import decode_sample
    from antgo_mlflow.data.tfrecord import TFRecordShardReader

    if path.name.endswith("-manifest.json"):
        manifest = read_manifest(path)
        if manifest.get("format") != "tfrecord":
            raise UsageError(
                f"--input: {path} lists {manifest.get('format')} shards; pseudo-label reads TFRecord"
            )
        files = shard_files(path, manifest)
        names = list(manifest.get("class_names") or [])
    else:
        files, names = [path], []
    readers = [TFRecordShardReader(f) for f in files]
    where = [(r, i) for r in readers for i in range(len(r))]
    samples: list[dict[str, Any]] = []
    from antgo_mlflow.gt import new_sample

    # One pass for the fields (kept in memory); images are read again, one record at a time.
    for k, (reader, i) in enumerate(where):
        record = decode_sample(reader.read(i))
        data = record.pop("image", None)
        if not isinstance(data, bytes):
            raise DataError(f"{reader.path}: record {i} has no encoded image")
        fields = {key: _plain(v) for key, v in record.items() if key in _GT_FIELDS}
        fields["image_file"] = f"images/{k:06d}{_ext_of(data)}"
        samples.append(new_sample(**fields))

    def image_bytes(k: int) -> tuple[bytes, str]:
        reader, i = where[k]
        data = decode_sample(reader.read(i))["image"]
        return data, _ext_of(data)

    def image(k: int) -> np.ndarray:
        return _rgb(image_bytes(k)[0], f"{where[k][0].path}: record {where[k][1]}")

    return InputSet(str(path), samples, image, image_bytes, names, None)


_GT_FIELDS = {"height", "width", "tag", "image_label", "image_label_name", "bboxes", "labels"}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
