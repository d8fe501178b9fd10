"""The embedded default dataset: scikit-learn's digits as 32x32 RGB PNGs, standard GT and shards.

scikit-learn ships 1,797 8x8 greyscale digits (10 classes) inside the installed package, so the
default recipe trains offline. They are rendered once as 32x32 RGB PNGs (so the CIFAR-shaped
pipeline applies unchanged), split deterministically into train/val/test, written as standard GT
JSON and packed as TFRecord shards under ``cache_dir()/digits-v1/<digest>/``.

The folder name carries a digest of the source bytes and every rendering/split parameter, so any
change builds a fresh folder; ``_cache.build_once`` makes the build race-safe.

Example:
    >>> data = prepare_digits()
    >>> data.shard_paths("train")  # ['.../train-00000-of-00001-tfrecord']
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
from pathlib import Path

import numpy as np

from antgo_mlflow.data.sources import PreparedData, split_from_manifest
from antgo_mlflow.data.sources._cache import READY_FILE, build_once
from antgo_mlflow.env import cache_dir
from antgo_mlflow.errors import MissingDependencyError

NAME = "digits"
# Bump when the rendering, the split or the folder layout changes.
LAYOUT_VERSION = 1
IMAGE_SIZE = 32
# Fractions of each class that go to val and test; the rest is train. Stratified, so every
# split has every class in the same proportion.
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
CLASS_NAMES = tuple(str(i) for i in range(10))
SPLITS = ("train", "val", "test")


def _source_file() -> Path | None:
    """The digits CSV inside the installed scikit-learn, found without importing sklearn (~2 s)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _load_source() -> tuple[bytes, np.ndarray, np.ndarray]:
    """(raw bytes for the digest, images (N, 8, 8) in 0..16, targets (N,))."""
    path = _source_file()
    if path is not None:
        raw = path.read_bytes()
        table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.float64)
        return raw, table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    try:  # a scikit-learn that moved its data file: fall back to the public loader
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingDependencyError(
            "the embedded digits dataset needs scikit-learn: pip install scikit-learn"
        ) from exc
    digits = load_digits()
    images = np.ascontiguousarray(digits.images, dtype=np.float64)
    return images.tobytes() + digits.target.tobytes(), images, digits.target.astype(np.int64)


def _params() -> dict:
    return {
        "name": NAME,
        "layout": LAYOUT_VERSION,
        "size": IMAGE_SIZE,
        "val": VAL_FRACTION,
        "test": TEST_FRACTION,
        "render": "L*255/16 bicubic->RGB png",
        "split": "per-class sha256 order",
    }


def digest_of(raw: bytes) -> str:
    """The content address of a build: source bytes + every parameter of this module."""
    h = hashlib.sha256(raw)
    h.update(json.dumps(_params(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def split_indices(targets: np.ndarray) -> dict[str, list[int]]:
    """Deterministic stratified split: within each class, order samples by sha256 of their index."""
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for cls in sorted(set(targets.tolist())):
        members = [int(i) for i in np.flatnonzero(targets == cls)]
        members.sort(key=lambda i: hashlib.sha256(f"digits:{i}".encode()).hexdigest())
        n_test = round(len(members) * TEST_FRACTION)
        n_val = round(len(members) * VAL_FRACTION)
        out["test"] += members[:n_test]
        out["val"] += members[n_test : n_test + n_val]
        out["train"] += members[n_test + n_val :]
    return {s: sorted(v) for s, v in out.items()}


def render(image: np.ndarray) -> bytes:
    """One 8x8 digit (0..16) as a 32x32 RGB PNG (white stroke on black)."""
    from PIL import Image

    grey = Image.fromarray(np.clip(image * (255.0 / 16.0), 0, 255).round().astype(np.uint8), "L")
    grey = grey.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    grey.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _build(tmp: Path, images: np.ndarray, targets: np.ndarray, digest: str) -> None:
    from antgo_mlflow.data.pack import pack
    from antgo_mlflow.gt import default_meta, new_sample, save_gt, write_meta

    (tmp / "images").mkdir(parents=True)
    splits = split_indices(targets)
    tag_of = {i: s for s, idx in splits.items() for i in idx}
    for i, image in enumerate(images):
        (tmp / "images" / f"{i:04d}.png").write_bytes(render(image))
    for split, indices in splits.items():
        samples = [
            new_sample(
                image_file=f"images/{i:04d}.png",
                height=IMAGE_SIZE,
                width=IMAGE_SIZE,
                tag=tag_of[i],
                image_label=int(targets[i]),
                image_label_name=CLASS_NAMES[int(targets[i])],
            )
            for i in indices
        ]
        save_gt(tmp / f"{split}.json", samples)
        # one shard per split: the whole train split is ~200 KB
        pack(str(tmp / f"{split}.json"), str(tmp / "shards"), split, num=len(samples))
    write_meta(tmp / "meta.json", {**default_meta(len(images), list(CLASS_NAMES)), "info": NAME})
    (tmp / READY_FILE).write_text(
        json.dumps(
            {
                "digest": digest,
                "params": _params(),
                "counts": {s: len(v) for s, v in splits.items()},
            }
        )
    )


def _prepared(root: Path, digest: str) -> PreparedData:
    splits = {
        s: split_from_manifest(s, root / f"{s}.json", root / "shards" / f"{s}-manifest.json")
        for s in SPLITS
    }
    return PreparedData(NAME, root, CLASS_NAMES, splits, digest)


def prepare_digits(root: str | os.PathLike | None = None) -> PreparedData:
    """Build (once) and return the embedded digits as GT + TFRecord shards.

    Args:
        root: parent folder; default ``cache_dir()`` (``$ANTGO_CACHE_DIR`` or ``~/.cache/antgo-mlflow``).

    Returns:
        PreparedData with ``train``/``val``/``test`` splits (1,259/179/359 samples).
    """
    raw, images, targets = _load_source()
    digest = digest_of(raw)
    base = Path(root) if root is not None else cache_dir()
    final = build_once(
        base / f"{NAME}-v{LAYOUT_VERSION}",
        digest,
        lambda tmp: _build(tmp, images, targets, digest),
        "the embedded digits dataset",
    )
    return _prepared(final, digest)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All digits as rendered (N, 32, 32, 3) uint8 RGB arrays and their labels (for tests/benchmarks)."""
    from PIL import Image

    _, images, targets = _load_source()
    rgb = np.stack([np.asarray(Image.open(io.BytesIO(render(im))).convert("RGB")) for im in images])
    return rgb, targets


def _subset_name(per_class: int | None, fraction: float | None, seed: int) -> str:
    if (per_class is None) == (fraction is None):
        raise ValueError("give exactly one of per_class and fraction")
    if per_class is not None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
        return f"train-{per_class}pc-s{int(seed)}"
    if not 0 < float(fraction) <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return f"train-{round(float(fraction) * 1000):04d}pm-s{int(seed)}"


def subset_indices(
    labels: list[int], per_class: int | None, fraction: float | None, seed: int
) -> list[int]:
    """Stratified labelled subset of ``labels``' positions: per class, the first ``per_class``
    (or ``round(fraction * class size)``, at least 1) in sha256 order of (seed, position)."""
    chosen: list[int] = []
    for cls in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == cls]
        members.sort(key=lambda i: hashlib.sha256(f"digits-subset:{seed}:{i}".encode()).hexdigest())
        k = per_class if per_class is not None else max(1, round(float(fraction) * len(members)))
        chosen += members[:k]
    return sorted(chosen)


def _build_subset(tmp: Path, prepared: PreparedData, indices: list[int], name: str) -> None:
    from antgo_mlflow.data.pack import pack
    from antgo_mlflow.gt import load_gt, save_gt

    train = prepared.splits["train"]
    samples = load_gt(train.gt, validate=False)
    keep = set(indices)
    tmp.mkdir(parents=True)
    for part, picked in (
        ("labeled", [s for i, s in enumerate(samples) if i in keep]),
        ("unlabeled", [s for i, s in enumerate(samples) if i not in keep]),
    ):
        for s in picked:  # relative to the subset folder, which sits beside the tmp folder
            s["image_file"] = os.path.relpath(train.gt.parent / s["image_file"], tmp)
        save_gt(tmp / f"{part}.json", picked)
        # the images stay in the digits folder: allow it as the subset GT's data root
        pack(
            str(tmp / f"{part}.json"),
            str(tmp / "shards"),
            part,
            num=max(1, len(picked)),
            data_roots=[str(prepared.root)],
        )
    (tmp / READY_FILE).write_text(json.dumps({"name": name, "labeled": len(indices)}))


def prepare_digits_subset(
    per_class: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> PreparedData:
    """Split the digits' train split into a small labelled part and the rest (built once).

    The ``labeled`` split holds ``per_class`` samples of each class (or ``fraction`` of each
    class), chosen deterministically from ``seed``; ``unlabeled`` holds every other train
    sample, its labels kept (semi-supervised methods ignore them; they only measure the
    pseudo-labels' accuracy). Both as GT JSON + TFRecord shards; val/test stay the digits'.

    Example:
        >>> data = prepare_digits_subset(per_class=4)        # 40 labelled, 1,219 unlabelled
        >>> data.shard_paths("labeled"), data.shard_paths("unlabeled")
    """
    name = _subset_name(per_class, fraction, seed)
    prepared = prepare_digits(root)
    final = prepared.root / "subsets" / name
    if not (final / READY_FILE).is_file():
        from antgo_mlflow.gt import load_gt

        labels = [int(s["image_label"]) for s in load_gt(prepared.splits["train"].gt, False)]
        indices = subset_indices(labels, per_class, fraction, seed)
        build_once(
            final.parent,
            final.name,
            lambda tmp: _build_subset(tmp, prepared, indices, name),
            name,
            quiet=True,
        )
    splits = {
        part: split_from_manifest(
            part, final / f"{part}.json", final / "shards" / f"{part}-manifest.json"
        )
        for part in ("labeled", "unlabeled")
    }
    splits.update({s: prepared.splits[s] for s in ("val", "test")})
    return PreparedData(f"{NAME}-{name}", final, CLASS_NAMES, splits, prepared.digest)
