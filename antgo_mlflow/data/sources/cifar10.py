"""CIFAR-10 from its python batches (a local folder) to standard GT + TFRecord shards.

The CIFAR-10 "python version" is a set of pickle files. Pickle can run arbitrary code, so the
batches are read with a restricted unpickler that only rebuilds builtin containers and numpy
arrays (``numpy.ndarray``, ``numpy.dtype`` and numpy's array reconstructor); any other global in
the file is refused with a one-line error. Nothing is downloaded unless ``download=True`` (the
user's ``--download``); the archive's MD5 is checked before it is unpacked.

Example:
    >>> data = prepare_cifar10("~/data/cifar-10-batches-py", "./dataset/cifar10")
    >>> data.shard_paths("train")
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle  # noqa: S403 - used only through _ArrayUnpickler below
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from antgo_mlflow.data.sources import PreparedData, split_from_manifest
from antgo_mlflow.errors import DataError, UsageError

NAME = "cifar10"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# (module, name) pairs a CIFAR batch needs: numpy arrays pickled by numpy 1.x or 2.x, and the
# helper Python 3 uses to pickle bytes at protocol 2.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds builtin containers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, list[int], list[str]]:
    """Read one CIFAR-10 python batch safely: (images (N, 32, 32, 3) uint8 RGB, labels, filenames)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: CIFAR-10 batch not found")
    try:
        with path.open("rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (expected a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: field 'data' must be an (N, 3072) uint8 array")
    if not isinstance(labels, list) or len(labels) != len(data):
        raise DataError(f"{path}: field 'labels' must be a list with one label per image")
    if any(not isinstance(v, int) or not 0 <= v < len(CLASS_NAMES) for v in labels):
        raise DataError(f"{path}: field 'labels' must hold class indices 0..9")
    names = batch.get("filenames") or [f"{path.name}_{i:05d}.png" for i in range(len(data))]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), [int(v) for v in labels], names


def find_batches(src: str | os.PathLike) -> Path:
    """The folder holding ``data_batch_1..5`` and ``test_batch`` (``src`` or ``src/cifar-10-batches-py``)."""
    src = Path(src).expanduser()
    for folder in (src, src / FOLDER):
        if (folder / TEST_BATCH).is_file() or (folder / TRAIN_BATCHES[0]).is_file():
            return folder
    raise DataError(
        f"{src}: no CIFAR-10 python batches (data_batch_1..5, test_batch); "
        "pass --download to fetch them"
    )


def download(src: str | os.PathLike) -> Path:
    """Download and unpack the CIFAR-10 python archive into ``src`` (only on the user's request)."""
    import urllib.request

    src = Path(src).expanduser()
    src.mkdir(parents=True, exist_ok=True)
    archive = src / "cifar-10-python.tar.gz"
    if not archive.is_file():
        tmp = archive.with_name(archive.name + ".part")
        try:
            with urllib.request.urlopen(URL, timeout=60) as resp, tmp.open("wb") as out:  # noqa: S310
                shutil.copyfileobj(resp, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DataError(f"downloading {URL} failed: {exc}") from None
        os.replace(tmp, archive)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()  # noqa: S324 - the published checksum
    if digest != MD5:
        raise DataError(f"{archive}: MD5 {digest} does not match CIFAR-10's {MD5}; delete it")
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    return src / FOLDER


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _existing(tgt: Path) -> PreparedData:
    splits = {
        s: split_from_manifest(s, tgt / f"{s}.json", tgt / "shards" / f"{s}-manifest.json")
        for s in ("train", "test")
        if (tgt / "shards" / f"{s}-manifest.json").is_file()
    }
    if not splits:
        raise DataError(f"{tgt}: has meta.json but no shards/<split>-manifest.json; delete it")
    return PreparedData(NAME, tgt, CLASS_NAMES, splits)


def prepare_cifar10(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    download_missing: bool = False,
    num: int = 50000,
) -> PreparedData:
    """Convert CIFAR-10 python batches under ``src`` to GT + shards under ``tgt``.

    Args:
        src: folder with the batches (or with ``cifar-10-batches-py/``).
        tgt: output folder: ``images/``, ``train.json``, ``test.json``, ``meta.json``, ``shards/``;
            a folder converted before is returned as it is (nothing is read or written).
        download_missing: fetch the archive into ``src`` when the batches are missing.
        num: samples per TFRecord shard.

    Returns:
        PreparedData with ``train`` (the five data batches present) and ``test`` splits.
    """
    from antgo_mlflow.data.pack import pack
    from antgo_mlflow.fileio import StagingDir
    from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta
    from antgo_mlflow.progress import progress

    if num < 1:
        raise UsageError(f"--num must be >= 1, got {num}")
    tgt = Path(tgt).expanduser()
    if (tgt / "meta.json").is_file():  # converted before: meta.json is written last
        return _existing(tgt)
    try:
        folder = find_batches(src)
    except DataError:
        if not download_missing:
            raise
        folder = download(src)
    batches = {
        "train": [folder / b for b in TRAIN_BATCHES if (folder / b).is_file()],
        "test": [folder / TEST_BATCH] if (folder / TEST_BATCH).is_file() else [],
    }
    counts: dict[str, int] = {}
    with StagingDir(tgt) as stage:
        total = 0
        for split, files in batches.items():
            samples = []
            for batch_file in files:
                images, labels, names = read_batch(batch_file)
                for image, label, name in progress(
                    zip(images, labels, names), total=len(labels), desc=f"{batch_file.name}"
                ):
                    rel = f"images/{split}/{Path(name).stem}.png"
                    out = stage.path / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(_png(image))
                    samples.append(
                        new_sample(
                            image_file=rel,
                            height=32,
                            width=32,
                            tag=split,
                            image_label=label,
                            image_label_name=CLASS_NAMES[label],
                        )
                    )
            if not samples:
                continue
            counts[split] = len(samples)
            total += len(samples)
            save_gt(stage.path / f"{split}.json", samples)
            pack(str(stage.path / f"{split}.json"), str(stage.path / "shards"), split, num=num)
        if not counts:
            raise DataError(f"{folder}: no CIFAR-10 batches to convert")
        write_meta(
            stage.path / "meta.json", {**default_meta(total, list(CLASS_NAMES)), "info": NAME}
        )
        stage.commit(last=["meta.json"])
    splits = {
        s: split_from_manifest(s, tgt / f"{s}.json", tgt / "shards" / f"{s}-manifest.json")
        for s in counts
    }
    return PreparedData(NAME, tgt, CLASS_NAMES, splits)
