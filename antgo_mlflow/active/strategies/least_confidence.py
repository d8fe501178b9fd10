"""``least_confidence``: the samples whose top class probability is lowest come first."""

from __future__ import annotations

import numpy as np

from antgo_mlflow.active.strategies import terms
from antgo_mlflow.active.strategies.base import Pool, ScoreAcquisition
from antgo_mlflow.registry import ACQUISITIONS


@ACQUISITIONS.register_module("least_confidence")
class LeastConfidence(ScoreAcquisition):
    """Score 1 − max p on the models' averaged probabilities."""

    term = "least_confidence"

    def score(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return terms.least_confidence(pool.mean_probs)
