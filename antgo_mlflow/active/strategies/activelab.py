"""``activelab``: cleanlab's ActiveLab scores (``cleanlab.multiannotator``), lowest first.

With one model it calls ``get_active_learning_scores``, with several
``get_active_learning_scores_ensemble`` (which modifies its unlabelled input in place, so it gets
a copy). The labelled set, when given, enters as a single-annotator ``(L, 1)`` label array with the
models' probabilities on it; without it the pool's scores depend on the predictions alone.
"""

from __future__ import annotations

import numpy as np

from antgo_mlflow.active.strategies.base import Pool, ScoreAcquisition
from antgo_mlflow.errors import require
from antgo_mlflow.registry import ACQUISITIONS


def activelab_scores(pool: Pool) -> np.ndarray:
    """cleanlab's ActiveLab score of each pool sample (in [0, 1]; lower = label sooner)."""
    multi = require("cleanlab.multiannotator", "active")
    labels = probs = None
    if pool.labeled_labels is not None and pool.labeled_probs is not None:
        if len(pool.labeled_labels):
            labels = pool.labeled_labels.reshape(-1, 1)
            probs = pool.labeled_probs
    if pool.num_models == 1:
        _, unlabeled = multi.get_active_learning_scores(
            labels, None if probs is None else probs[0], pool.probs[0]
        )
    else:
        _, unlabeled = multi.get_active_learning_scores_ensemble(
            labels, None if probs is None else probs.copy(), pool.probs.copy()
        )
    return np.asarray(unlabeled, dtype=np.float64)


@ACQUISITIONS.register_module("activelab")
class ActiveLab(ScoreAcquisition):
    """Score 1 − cleanlab's ActiveLab score (so higher = label sooner, like every strategy)."""

    term = "activelab"

    def score(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return 1.0 - activelab_scores(pool)
