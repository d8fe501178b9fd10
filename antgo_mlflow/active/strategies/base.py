"""What an acquisition strategy sees (``Pool``), what it returns (``Selection``), its base classes.

Scores follow one convention everywhere: **higher = label sooner**. ``Selection.order`` lists every
pool index once, label-next first; ``order[:budget]`` is the batch to send to labelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from antgo_mlflow.errors import DataError


@dataclass
class Pool:
    """The models' view of the unlabelled pool and, optionally, of the labelled set.

    Args:
        probs: (P, N, C) class probabilities of P models on the N pool samples.
        embeddings: (N, D) features of the pool (the first model's), for diversity strategies.
        labeled_probs: (P, L, C) probabilities on the labelled set (ActiveLab's labelled term).
        labeled_labels: (L,) the labelled set's class indices.
        labeled_embeddings: (L, D) features of the labelled set (k-center starts from them).
    """

    probs: np.ndarray
    embeddings: np.ndarray | None = None
    labeled_probs: np.ndarray | None = None
    labeled_labels: np.ndarray | None = None
    labeled_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        probs = np.asarray(self.probs, dtype=np.float64)
        if probs.ndim == 2:
            probs = probs[None]
        if probs.ndim != 3 or probs.shape[1] == 0 or probs.shape[2] < 2:
            raise DataError(
                f"pool probabilities: expected (models, samples, classes >= 2), got {probs.shape}"
            )
        check_probabilities(probs, "pool probabilities")
        self.probs = probs
        if self.embeddings is not None:
            self.embeddings = _features(self.embeddings, probs.shape[1], "pool embeddings")
        if self.labeled_probs is not None:
            lp = np.asarray(self.labeled_probs, dtype=np.float64)
            lp = lp[None] if lp.ndim == 2 else lp
            if lp.ndim != 3 or lp.shape[0] != probs.shape[0] or lp.shape[2] != probs.shape[2]:
                raise DataError(
                    f"labelled probabilities: shape {lp.shape} does not fit the pool's {probs.shape}"
                )
            check_probabilities(lp, "labelled probabilities")
            self.labeled_probs = lp
        if self.labeled_labels is not None:
            labels = np.asarray(self.labeled_labels)
            n_lab = None if self.labeled_probs is None else self.labeled_probs.shape[1]
            if labels.ndim != 1 or (n_lab is not None and len(labels) != n_lab):
                raise DataError(f"labelled labels: expected ({n_lab},), got {labels.shape}")
            if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[2]):
                raise DataError(
                    f"labelled labels: class indices must be in 0..{probs.shape[2] - 1}"
                )
            self.labeled_labels = labels.astype(np.int64)
        if self.labeled_embeddings is not None:
            self.labeled_embeddings = _features(
                self.labeled_embeddings, None, "labelled embeddings"
            )
            if self.embeddings is not None and (
                self.labeled_embeddings.shape[1] != self.embeddings.shape[1]
            ):
                raise DataError(
                    f"labelled embeddings have {self.labeled_embeddings.shape[1]} dimensions, "
                    f"the pool's {self.embeddings.shape[1]}"
                )

    @property
    def size(self) -> int:
        """Number of pool samples (N)."""
        return int(self.probs.shape[1])

    @property
    def num_models(self) -> int:
        return int(self.probs.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[2])

    @cached_property
    def mean_probs(self) -> np.ndarray:
        """(N, C): the models' probabilities averaged (the ensemble's prediction)."""
        return self.probs[0] if self.num_models == 1 else self.probs.mean(axis=0)


def check_probabilities(probs: np.ndarray, what: str) -> None:
    """DataError unless every value is finite, in [0, 1], and each row sums to 1 (± 1e-3)."""
    if not np.isfinite(probs).all():
        raise DataError(f"{what}: NaN or infinite values (a broken model?)")
    if probs.min() < -1e-6 or probs.max() > 1 + 1e-6:
        raise DataError(f"{what}: values outside [0, 1] (logits instead of probabilities?)")
    sums = probs.sum(axis=-1)
    if np.abs(sums - 1.0).max() > 1e-3:
        raise DataError(
            f"{what}: rows do not sum to 1 (max deviation {np.abs(sums - 1).max():.3g})"
        )


def _features(x, n: int | None, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or (n is not None and x.shape[0] != n):
        raise DataError(f"{what}: expected ({n or 'L'}, D), got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: NaN or infinite values (a broken model?)")
    return x


@dataclass
class Selection:
    """A strategy's answer.

    Attributes:
        order: (N,) every pool index once, label-next first.
        scores: (N,) the strategy's score per sample (higher = label sooner).
        terms: named per-sample columns that explain the score (written to ``scores.csv``).
    """

    order: np.ndarray
    scores: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)

    def ranks(self) -> np.ndarray:
        """(N,) 1-based position of each pool index in ``order``."""
        ranks = np.empty(len(self.order), dtype=np.int64)
        ranks[self.order] = np.arange(1, len(self.order) + 1)
        return ranks


def order_by(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep the pool order (deterministic)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


class Acquisition:
    """Base of every registered strategy: ``select(pool, budget, rng) -> Selection``.

    Class attributes say what a strategy needs, so callers can check before running models:
    ``needs_embeddings`` (diversity), ``min_models`` (ensemble terms).
    """

    needs_embeddings = False
    min_models = 1

    def select(self, pool: Pool, budget: int, rng: np.random.Generator) -> Selection:
        raise NotImplementedError


class ScoreAcquisition(Acquisition):
    """A strategy that scores each sample on its own and takes the top ``budget``."""

    term = "score"

    def score(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        """(N,) higher = label sooner."""
        raise NotImplementedError

    def select(self, pool: Pool, budget: int, rng: np.random.Generator) -> Selection:
        scores = np.asarray(self.score(pool, rng), dtype=np.float64)
        return Selection(order_by(scores), scores, {self.term: scores})
