"""Batched inference on numpy images, one predictor class per task (``PREDICTORS``).

A predictor holds a runtime (ONNX Runtime or a torch module, see ``runtime.py``), the model's
training preprocessing and what is known about its classes. ``predict(images)`` returns the model
contract's per-image prediction dicts; each task's class adds what its consumers need
(classification: ``predict_proba`` and ``extract_features``). A new task registers its class::

    @PREDICTORS.register_module("detection")
    class DetectionPredictor(Predictor):
        def predict_batch(self, batch, image_meta):   # -> [{"bboxes", "scores", "labels"}, ...]
            ...

``image_meta`` carries each image's original and network sizes (``ori_shape``, ``img_shape``,
``scale_factor``), so a detector can return boxes in the original image's pixels.

Example:
    >>> predictor = load_model("models:/digits@champion")       # see inference.loader
    >>> probs = predictor.predict_proba(images)                  # (N, C) float64
    >>> predictor.num_classes, predictor.class_names             # 10, ['0', '1', ...]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.inference.preprocess import Preprocess
from antgo_mlflow.registry import Registry

PREDICTORS = Registry("predictor")
DEFAULT_TASK = "classification"
DEFAULT_BATCH = 64


@dataclass
class ModelInfo:
    """Where a loaded model came from (for messages, logs and consumers that need the run)."""

    uri: str  # as the user gave it
    kind: str  # "onnx-file", "checkpoint", "mlflow-onnx", "mlflow-pytorch"
    run_id: str | None = None  # the training run, when known
    checkpoint: str | None = None  # the .pth file used, if any
    metadata: dict[str, Any] = field(default_factory=dict)


def as_probabilities(out: np.ndarray) -> np.ndarray:
    """Rows that already are probability distributions are kept; anything else gets a softmax."""
    out = np.asarray(out, dtype=np.float64)
    if out.ndim != 2:
        raise DataError(f"a model returned shape {out.shape}; expected (batch, classes)")
    if (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return out
    shifted = out - out.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def chunks(images: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Lists of at most ``size`` images, read lazily from ``images``."""
    chunk: list[np.ndarray] = []
    for image in images:
        chunk.append(image)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Predictor:
    """A loaded model that runs batched on HWC uint8 RGB images (base of the per-task classes).

    Attributes:
        info: where the model came from (``ModelInfo``).
        runtime: ``OnnxRuntime`` or ``TorchRuntime``.
        preprocess: the training preprocessing (``Preprocess``).
        task: the registered task name.
        batch_size: images per inference batch.
    """

    task = DEFAULT_TASK

    def __init__(
        self,
        info: ModelInfo,
        runtime,
        preprocess: Preprocess,
        class_names: Sequence[str] = (),
        num_classes: int | None = None,
        batch_size: int = DEFAULT_BATCH,
    ):
        self.info = info
        self.runtime = runtime
        self.preprocess = preprocess
        self._class_names = [str(n) for n in class_names]
        self._num_classes = num_classes
        self.batch_size = int(batch_size)

    # -- what the model is -------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return self.info.uri

    @property
    def flavor(self) -> str:
        """``"onnx"`` or ``"pytorch"``."""
        return self.runtime.flavor

    @property
    def module(self):
        """The in-process torch module (None for ONNX models)."""
        return self.runtime.module

    @property
    def num_classes(self) -> int:
        """The number of classes the model scores (read from the model, else one probe image)."""
        if self._num_classes is None:
            self._num_classes = self._probe_classes()
        return self._num_classes

    @property
    def class_names(self) -> list[str]:
        """Class names in index order when the model records them (else ``[]``)."""
        names = self._class_names
        return names if names and len(names) == self.num_classes else []

    def _probe_classes(self) -> int:
        out = self.predict_batch(self._blank(), self._meta([self.preprocess.size] * 2))
        return _width(out)

    def _blank(self) -> np.ndarray:
        # two rows: a torch.export (pt2) model may not accept a batch of one
        h, w = self.preprocess.size
        return np.zeros((2, 3, h, w), dtype=np.float32)

    def _meta(self, shapes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        h, w = self.preprocess.size
        return [
            {
                "ori_shape": (int(oh), int(ow)),
                "img_shape": (h, w),
                "scale_factor": (w / max(1, ow), h / max(1, oh)),
            }
            for oh, ow in shapes
        ]

    # -- running it ----------------------------------------------------------------------------
    def batches(
        self, images: Iterable[np.ndarray], batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
        """``(preprocessed NCHW batch, image_meta)`` per chunk of ``images``."""
        for chunk in chunks(images, int(batch_size or self.batch_size)):
            yield self.preprocess(chunk), self._meta([im.shape[:2] for im in chunk])

    def predict_batch(self, batch: np.ndarray, image_meta: list[dict[str, Any]]) -> list[dict]:
        """Per-image prediction dicts for one preprocessed batch (each task defines them)."""
        raise NotImplementedError

    def predict(self, images: Iterable[np.ndarray], batch_size: int | None = None) -> list[dict]:
        """The model contract's prediction dict for each HWC uint8 RGB image."""
        out: list[dict] = []
        for batch, meta in self.batches(images, batch_size):
            out.extend(self.predict_batch(batch, meta))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, {self.flavor}, task={self.task!r})"


def _width(out) -> int:
    if isinstance(out, np.ndarray):
        return int(out.shape[1])
    first = out[0] if out else {}
    score = first.get("pred_score") if isinstance(first, dict) else None
    if score is None:
        raise DataError("the model's predictions carry no class scores")
    return int(np.asarray(score).shape[-1])


@PREDICTORS.register_module(DEFAULT_TASK)
class ClassificationPredictor(Predictor):
    """Class probabilities, labels and embeddings for images.

    Predictions: ``{"pred_score": ndarray (C,) probabilities, "pred_label": int}``.
    """

    task = DEFAULT_TASK

    def predict_proba_batch(self, batch: np.ndarray, image_meta=None) -> np.ndarray:
        """(N, C) float64 probabilities for one preprocessed NCHW batch."""
        runtime = self.runtime
        probs = None
        if runtime.flavor == "pytorch":
            probs = runtime.probabilities(batch, image_meta)
        if probs is None:
            probs = runtime.outputs(batch)
        return as_probabilities(probs)

    def predict_proba(
        self, images: Iterable[np.ndarray], batch_size: int | None = None
    ) -> np.ndarray:
        """(N, C) float64 class probabilities for HWC uint8 RGB images, batched."""
        parts = [self.predict_proba_batch(b, m) for b, m in self.batches(images, batch_size)]
        if not parts:
            return np.zeros((0, self.num_classes))
        return np.concatenate(parts)

    def predict_batch(self, batch: np.ndarray, image_meta) -> list[dict]:
        probs = self.predict_proba_batch(batch, image_meta)
        return [{"pred_score": p, "pred_label": int(p.argmax())} for p in probs]

    def _probe_classes(self) -> int:
        width = self.runtime.output_width
        return int(width) if width else int(self.predict_proba_batch(self._blank()).shape[1])

    @property
    def has_features(self) -> bool:
        """Whether :meth:`extract_features` works (an in-process model that provides them)."""
        module = self.runtime.module
        return module is not None and any(
            callable(getattr(module, name, None)) for name in ("extract_features", "extract_feat")
        )

    def extract_features_batch(self, batch: np.ndarray, image_meta=None) -> np.ndarray:
        """(N, D) float32 embeddings for one preprocessed batch (the model's extract_features)."""
        out = self.runtime.features(batch, image_meta) if self.has_features else None
        if out is None:
            raise UsageError(
                f"{self.uri}: a {self.info.kind} model gives its outputs only, not embeddings; "
                "load the model itself: its training run (runs:/<run id>), a .pth checkpoint, "
                "or this URI with from_checkpoint=True"
            )
        return out

    def extract_features(
        self, images: Iterable[np.ndarray], batch_size: int | None = None
    ) -> np.ndarray:
        """(N, D) float32 embeddings (``extract_features``) for HWC uint8 RGB images, batched."""
        parts = [self.extract_features_batch(b, m) for b, m in self.batches(images, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def proba_and_features(
        self, images: Iterable[np.ndarray], batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, C) and embeddings (N, D) in one pass over ``images``."""
        if not self.has_features:
            self.extract_features_batch(self._blank())  # the one-line error, before any work
        probs, feats = [], []
        for batch, meta in self.batches(images, batch_size):
            probs.append(self.predict_proba_batch(batch, meta))
            feats.append(self.extract_features_batch(batch, meta))
        if not probs:
            return np.zeros((0, self.num_classes)), np.zeros((0, 0), np.float32)
        return np.concatenate(probs), np.concatenate(feats)


def check_same_classes(predictors: Sequence[Predictor]) -> int:
    """The class count shared by ``predictors``; DataError (one line) naming each if they differ."""
    counts = [(p.uri, p.num_classes) for p in predictors]
    if len({c for _, c in counts}) > 1:
        listed = ", ".join(f"{uri} has {c}" for uri, c in counts)
        raise DataError(f"the models disagree on the number of classes: {listed}")
    return counts[0][1] if counts else 0


def predictor_class(task: str | None) -> type[Predictor]:
    """The registered predictor class for ``task``; UsageError naming the known tasks."""
    name = task or DEFAULT_TASK
    cls = PREDICTORS.get(name)
    if cls is None:
        from antgo_mlflow.registry import did_you_mean

        raise UsageError(
            f"task {name!r}: no predictor for it (known: {', '.join(PREDICTORS)})"
            f"{did_you_mean(name, list(PREDICTORS))}"
        )
    return cls
