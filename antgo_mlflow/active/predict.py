"""Run the models of an active-learning step over images: class probabilities and embeddings.

Models load through the shared loader (``antgo_mlflow.inference``: ``runs:/``, ``models:/name@alias``,
``.onnx``, ``.pth``). Each image is decoded once per chunk and handed to every model. Embeddings
(for k-center) come from the first model's ``extract_features``; a registered MLflow model is then
rebuilt from its training run's checkpoint, because the logged inference model gives outputs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from antgo_mlflow.errors import DataError, UsageError

CHUNK = 256  # images decoded at a time (each model batches inside the chunk)


@dataclass
class Predictions:
    """Per-model probabilities (P, N, C) and the first model's embeddings (N, D) or None."""

    uris: list[str]
    probs: np.ndarray
    embeddings: np.ndarray | None
    class_names: list[str]


def _mlflow_uri(uri: str) -> bool:
    return uri.startswith(("models:/", "runs:/"))


def load_predictors(
    uris: Sequence[str],
    need_features: bool,
    batch_size: int,
    config: str | None = None,
    trust_checkpoint_config: bool = False,
) -> list:
    """Load every model (one-line errors for unresolvable URIs and differing class counts)."""
    from antgo_mlflow.inference import check_same_classes, load_model

    predictors = [
        load_model(
            uri,
            config=config,
            trust_checkpoint_config=trust_checkpoint_config,
            batch_size=batch_size,
            from_checkpoint=need_features and i == 0 and _mlflow_uri(uri),
        )
        for i, uri in enumerate(uris)
    ]
    for p in predictors:
        if not callable(getattr(p, "predict_proba", None)):
            raise UsageError(
                f"--models: {p.uri} is a {getattr(p, 'task', 'non-classification')} model; "
                "active learning ranks with classifiers (detection ranking needs the detection "
                "predictor)"
            )
    check_same_classes(predictors)
    if need_features and not predictors[0].has_features:
        predictors[0].extract_features_batch(predictors[0]._blank())  # its one-line error
    return predictors


def predict(
    predictors: Sequence, data, need_features: bool = False, desc: str = "predict"
) -> Predictions:
    """Probabilities of every model (and the first one's embeddings) on every sample of ``data``."""
    from antgo_mlflow.progress import progress

    n = len(data.samples)
    probs: list[list[np.ndarray]] = [[] for _ in predictors]
    feats: list[np.ndarray] = []
    starts = range(0, n, CHUNK)
    for start in progress(starts, total=len(starts), desc=desc, unit="chunk"):
        images = [data.images(i) for i in range(start, min(n, start + CHUNK))]
        for k, model in enumerate(predictors):
            if k == 0 and need_features:
                p, f = model.proba_and_features(images)
                feats.append(np.asarray(f, dtype=np.float32))
            else:
                p = model.predict_proba(images)
            probs[k].append(np.asarray(p, dtype=np.float64))
    stacked = []
    for model, parts in zip(predictors, probs):
        p = np.concatenate(parts) if parts else np.zeros((0, model.num_classes))
        bad = ~np.isfinite(p).all(axis=1)
        if bad.any():
            raise DataError(
                f"--models: {model.uri} returned NaN or infinite probabilities for "
                f"{int(bad.sum())} of {n} samples (first: sample {int(np.argmax(bad))}); "
                "is the model broken?"
            )
        stacked.append(p)
    embeddings = np.concatenate(feats) if feats else None
    if embeddings is not None and not np.isfinite(embeddings).all():
        raise DataError(f"--models: {predictors[0].uri} returned NaN or infinite embeddings")
    names = list(getattr(data, "class_names", None) or predictors[0].class_names or [])
    return Predictions([m.uri for m in predictors], np.stack(stacked), embeddings, names)
