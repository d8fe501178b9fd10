"""``entropy``: the samples with the most spread-out prediction come first."""

from __future__ import annotations

import numpy as np

from antgo_mlflow.active.strategies import terms
from antgo_mlflow.active.strategies.base import Pool, ScoreAcquisition
from antgo_mlflow.registry import ACQUISITIONS


@ACQUISITIONS.register_module("entropy")
class Entropy(ScoreAcquisition):
    """Score: Shannon entropy (nats) of the models' averaged probabilities."""

    term = "entropy"

    def score(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return terms.entropy(pool.mean_probs)
