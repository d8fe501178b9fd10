"""Pseudo-labelling with expert models: average their class probabilities, keep the confident ones.

Models are given by URI: ``runs:/<run_id>/<path>``, ``models:/<name>@<alias>`` or
``models:/<name>/<version>`` (ONNX or PyTorch flavor), or a local ``.onnx`` file or ``.pth``
checkpoint (the checkpoint's recorded config rebuilds the model). Each model maps a batch of
images to class probabilities; the probabilities are averaged across models (weighted when
weights are given). Every input sample gets ``predictions`` (probabilities, entropy, label,
score, models); samples whose top probability reaches ``threshold`` also get ``image_label``.

Outputs in ``output`` (written together, or not at all):
``pseudo-label.json`` (every sample), ``confident.json``, ``uncertain.json``, ``meta.json`` and,
for shard input, ``images/`` (the shards' images, so the GT files stand on their own).

Example:
    >>> result = pseudo_label(["models:/digits@champion", "runs:/0a1b.../onnx_model"],
    ...                       "unlabeled/annotation.json", "out", threshold=0.9)
    >>> result.counts  # {'total': 359, 'confident': 351, 'uncertain': 8}
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError, TrackingError, UsageError

# The normalisation the recipes train with (CIFAR statistics, as in antgo's mvp config); a model
# logged with metadata ``antgo.preprocess`` = {"mean", "std", "size"} overrides it.
DEFAULT_MEAN = (0.491400, 0.482158, 0.4465231)
DEFAULT_STD = (0.247032, 0.243485, 0.2615877)
DEFAULT_SIZE = (32, 32)
ALL_FILE = "pseudo-label.json"
CONFIDENT_FILE = "confident.json"
UNCERTAIN_FILE = "uncertain.json"


@dataclass
class Preprocess:
    """How a model wants its input: resized to ``size`` (H, W), scaled to 0..1, normalised."""

    size: tuple[int, int] = DEFAULT_SIZE
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """HWC uint8 RGB images -> an NCHW float32 batch."""
        from PIL import Image

        h, w = self.size
        out = np.empty((len(images), 3, h, w), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        for i, image in enumerate(images):
            if image.shape[:2] != (h, w):
                image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
            out[i] = (image.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std
        return out

    @classmethod
    def from_metadata(
        cls, metadata: dict | None, size: tuple[int, int] | None = None
    ) -> Preprocess:
        pre = dict((metadata or {}).get("antgo.preprocess") or {})
        return cls(
            size=tuple(pre.get("size") or size or DEFAULT_SIZE),
            mean=tuple(pre.get("mean") or DEFAULT_MEAN),
            std=tuple(pre.get("std") or DEFAULT_STD),
        )


@dataclass
class LoadedModel:
    """A model ready for inference: ``predict`` maps an NCHW float32 batch to (N, C) probabilities."""

    uri: str
    flavor: str  # "onnx" or "pytorch"
    run: Callable[[np.ndarray], np.ndarray]
    preprocess: Preprocess

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities for HWC uint8 RGB images."""
        return as_probabilities(np.asarray(self.run(self.preprocess(images)), dtype=np.float64))


def as_probabilities(out: np.ndarray) -> np.ndarray:
    """Rows that already are probability distributions are kept; anything else gets a softmax."""
    if out.ndim != 2:
        raise DataError(f"a model returned shape {out.shape}; expected (batch, classes)")
    if (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return out
    shifted = out - out.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


# -- loading models --------------------------------------------------------------------------------
def _onnx_runner(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int] | None]:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types for unreadable files
        raise DataError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    inp = session.get_inputs()[0]
    shape = inp.shape
    size = (
        (shape[2], shape[3])
        if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:])
        else None
    )
    fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def run(batch: np.ndarray) -> np.ndarray:
        if (
            fixed_batch is not None and batch.shape[0] != fixed_batch
        ):  # exported without a dynamic batch
            return np.concatenate(
                [
                    session.run(None, {inp.name: batch[i : i + fixed_batch]})[0]
                    for i in range(0, len(batch), fixed_batch)
                ]
            )
        return session.run(None, {inp.name: batch})[0]

    return run, size


def _torch_runner(module) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    try:
        module.eval()
    except NotImplementedError:  # a pt2 (torch.export) model: exported in eval mode already
        pass
    predict = getattr(module, "predict", None)
    fn = predict if callable(predict) else module

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = fn(torch.from_numpy(batch))
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.detach().float().cpu().numpy()

    return run


def _from_checkpoint(path: Path, config: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """Rebuild the model of a ``.pth`` checkpoint from ``config`` or the config text it records."""
    from antgo_mlflow.config import Config
    from antgo_mlflow.engine.checkpoint import load_checkpoint, load_weights
    from antgo_mlflow.registry import MODELS

    ckpt = load_checkpoint(path, "--models")
    if config is None:
        text = (ckpt.get("meta") or {}).get("config")
        if not text:
            raise UsageError(f"--models: {path} records no config; pass --config")
        with tempfile.TemporaryDirectory() as tmp:
            cfg_file = Path(tmp) / "config.py"
            cfg_file.write_text(text, encoding="utf-8")
            cfg = Config.fromfile(cfg_file)
    else:
        cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model, path="model")
    load_weights(model, path, "--models")
    return _torch_runner(model)


def _model_info(uri: str):
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.models.get_model_info(uri)
    except MlflowException as exc:
        raise TrackingError(
            f"model URI {uri!r} does not resolve: {exc.message.splitlines()[0]}"
        ) from None
    except OSError as exc:
        raise TrackingError(f"model URI {uri!r} does not resolve: {exc}") from None


def load_model(uri: str, config: str | None = None) -> LoadedModel:
    """Load one model URI or local file for inference (see the module docstring for the forms)."""
    uri = str(uri).strip()
    if not uri:
        raise UsageError("--models: an empty model URI")
    if "://" not in uri and ":/" not in uri:
        path = Path(uri).expanduser()
        if not path.is_file():
            raise UsageError(
                f"--models: {uri} is neither a model URI (runs:/, models:/) nor a file"
            )
        if path.suffix == ".onnx":
            run, size = _onnx_runner(path)
            return LoadedModel(uri, "onnx", run, Preprocess.from_metadata(None, size))
        if path.suffix in (".pth", ".pt"):
            return LoadedModel(uri, "pytorch", _from_checkpoint(path, config), Preprocess())
        raise UsageError(f"--models: {uri}: expected a .onnx or .pth file")
    info = _model_info(uri)
    flavors = info.flavors or {}
    metadata = info.metadata or {}
    import mlflow

    if "onnx" in flavors:
        local = Path(mlflow.artifacts.download_artifacts(uri))
        files = [local] if local.is_file() else sorted(local.rglob("*.onnx"))
        if not files:
            raise TrackingError(f"model URI {uri!r}: the ONNX flavor has no .onnx file")
        run, size = _onnx_runner(files[0])
        return LoadedModel(uri, "onnx", run, Preprocess.from_metadata(metadata, size))
    if "pytorch" in flavors:
        module = mlflow.pytorch.load_model(uri, map_location="cpu")
        return LoadedModel(
            uri, "pytorch", _torch_runner(module), Preprocess.from_metadata(metadata)
        )
    raise UsageError(
        f"--models: {uri} is a {'/'.join(sorted(flavors)) or 'unknown'} model; "
        "pseudo-label needs an ONNX or PyTorch model"
    )


# -- reading input ---------------------------------------------------------------------------------
@dataclass
class InputSet:
    """Samples to label, their images (read lazily), and the class names if known."""

    source: str
    samples: list[dict[str, Any]]
    images: Callable[[int], np.ndarray]
    image_bytes: Callable[[int], tuple[bytes, str]] | None = None  # shard input: bytes + extension
    class_names: list[str] = field(default_factory=list)
    base: Path | None = None  # the folder image_file is relative to (GT input)


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


# -- the job ---------------------------------------------------------------------------------------
@dataclass
class PseudoLabelResult:
    """What :func:`pseudo_label` wrote."""

    output: Path
    files: dict[str, Path]
    counts: dict[str, int]
    probabilities: np.ndarray
    models: list[str]
    weights: list[float]
    mean_entropy: float


def check_arguments(
    models: Sequence[str], threshold: float, weights: Sequence[float] | None, batch_size: int
) -> list[float]:
    """Validate the job's parameters (one-line UsageError); return the normalised weights."""
    if not models:
        raise UsageError("--models: give at least one model URI or file")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0.0 <= float(threshold) <= 1.0
        or math.isnan(threshold)
    ):
        raise UsageError(f"--threshold must be between 0 and 1, got {threshold}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if weights is None or len(weights) == 0:
        return [1.0 / len(models)] * len(models)
    if len(weights) != len(models):
        raise UsageError(f"--weights: {len(weights)} weights for {len(models)} models")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise UsageError(f"--weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def average_probabilities(per_model: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of per-model (N, C) probability arrays (weights sum to 1)."""
    shapes = {p.shape for p in per_model}
    if len(shapes) != 1:
        raise DataError(
            f"the models disagree on the number of classes: {sorted(s[1] for s in shapes)}"
        )
    return sum(w * p for w, p in zip(weights, per_model))


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(probs * np.log(p)).sum(axis=1)


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def pseudo_label(
    models: Sequence[str],
    input: str | os.PathLike,
    output: str | os.PathLike,
    threshold: float = 0.9,
    weights: Sequence[float] | None = None,
    batch_size: int = 64,
    config: str | None = None,
) -> PseudoLabelResult:
    """Label ``input`` with the averaged probabilities of ``models``; write the GT files to ``output``.

    Args:
        models: model URIs or local ``.onnx``/``.pth`` files.
        input: a GT JSON (or folder), or TFRecord shards (manifest or shard file).
        output: the folder for ``pseudo-label.json``, ``confident.json``, ``uncertain.json``.
        threshold: a sample is confident when its top averaged probability is >= this.
        weights: one weight per model (normalised); default equal weights.
        batch_size: images per inference batch.
        config: the config that builds ``.pth`` checkpoints without a recorded config.

    Returns:
        PseudoLabelResult with the files written and the counts.
    """
    from antgo_mlflow.fileio import StagingDir
    from antgo_mlflow.gt import default_meta, save_gt, write_meta
    from antgo_mlflow.progress import progress

    norm_weights = check_arguments(models, threshold, weights, batch_size)
    output = Path(output).expanduser()
    if output.exists() and (output / ALL_FILE).exists():
        raise UsageError(f"--output: {output} already holds {ALL_FILE}; choose another folder")
    data = read_input(input)
    if not data.samples:
        raise DataError(f"--input: {input} has no samples")
    loaded = [load_model(uri, config) for uri in models]
    n = len(data.samples)
    per_model = [[] for _ in loaded]
    for idx in progress(
        _batches(n, batch_size), total=math.ceil(n / batch_size), desc="pseudo-label", unit="batch"
    ):
        images = [data.images(i) for i in idx]
        for k, model in enumerate(loaded):
            per_model[k].append(model.predict(images))
    probs_per_model = [np.concatenate(chunks) for chunks in per_model]
    probs = average_probabilities(probs_per_model, norm_weights)
    ent = entropy(probs)
    labels = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    names = data.class_names if len(data.class_names) == probs.shape[1] else []
    uris = [m.uri for m in loaded]

    everything, confident, uncertain = [], [], []
    for i, sample in enumerate(data.samples):
        out = dict(sample)
        if data.base is not None and out.get("image_file"):
            out["image_file"] = os.path.relpath(data.base / out["image_file"], output)
        sure = bool(scores[i] >= threshold)
        out["predictions"] = {
            **(sample.get("predictions") or {}),
            "probabilities": [round(float(p), 6) for p in probs[i]],
            "entropy": round(float(ent[i]), 6),
            "label": int(labels[i]),
            "score": round(float(scores[i]), 6),
            "confident": sure,
            "models": uris,
            "weights": norm_weights,
        }
        if sure:
            out["image_label"] = int(labels[i])
            if names:
                out["image_label_name"] = names[int(labels[i])]
        everything.append(out)
        (confident if sure else uncertain).append(out)

    files = {
        "all": ALL_FILE,
        "confident": CONFIDENT_FILE,
        "uncertain": UNCERTAIN_FILE,
        "meta": "meta.json",
    }
    with StagingDir(output) as stage:
        if data.image_bytes is not None:
            (stage.path / "images").mkdir()
            for i, sample in enumerate(everything):
                blob, _ = data.image_bytes(i)
                (stage.path / sample["image_file"]).write_bytes(blob)
        save_gt(stage.path / CONFIDENT_FILE, confident)
        save_gt(stage.path / UNCERTAIN_FILE, uncertain)
        write_meta(stage.path / "meta.json", default_meta(len(everything), names))
        save_gt(stage.path / ALL_FILE, everything)
        stage.commit(last=[ALL_FILE])
    counts = {"total": n, "confident": len(confident), "uncertain": len(uncertain)}
    return PseudoLabelResult(
        output,
        {k: output / v for k, v in files.items()},
        counts,
        probs,
        uris,
        norm_weights,
        float(ent.mean()),
    )


def log_to_mlflow(result: PseudoLabelResult, threshold: float, input: str) -> str:
    """Log counts, parameters and the written files to the active run (or a new one); return its id."""
    import mlflow

    active = mlflow.active_run()
    run = active or mlflow.start_run(run_name="pseudo-label")
    try:
        mlflow.set_tags({"antgo.process": "pseudo-label"})
        mlflow.log_params(
            {
                "pseudo_label.models": ",".join(result.models)[:6000],
                "pseudo_label.weights": ",".join(f"{w:.4g}" for w in result.weights),
                "pseudo_label.threshold": threshold,
                "pseudo_label.input": str(input)[:6000],
            }
        )
        total = max(1, result.counts["total"])
        mlflow.log_metrics(
            {
                "pseudo_label/total": result.counts["total"],
                "pseudo_label/confident": result.counts["confident"],
                "pseudo_label/uncertain": result.counts["uncertain"],
                "pseudo_label/confident_ratio": result.counts["confident"] / total,
                "pseudo_label/mean_entropy": result.mean_entropy,
            }
        )
        for key in ("all", "confident", "uncertain", "meta"):
            mlflow.log_artifact(str(result.files[key]), artifact_path="pseudo_label")
        return run.info.run_id
    finally:
        if active is None:
            mlflow.end_run()


__all__ = [
    "LoadedModel",
    "Preprocess",
    "PseudoLabelResult",
    "average_probabilities",
    "check_arguments",
    "entropy",
    "load_model",
    "log_to_mlflow",
    "pseudo_label",
    "read_input",
]
