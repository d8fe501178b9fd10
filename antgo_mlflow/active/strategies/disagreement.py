"""``disagreement``: the samples the ensemble's models disagree on most come first."""

from __future__ import annotations

import numpy as np

from antgo_mlflow.active.strategies import terms
from antgo_mlflow.active.strategies.base import Pool, ScoreAcquisition
from antgo_mlflow.registry import ACQUISITIONS

MEASURES = {"kl": terms.kl_to_mean, "vote_entropy": terms.vote_entropy}


@ACQUISITIONS.register_module("disagreement")
class Disagreement(ScoreAcquisition):
    """Ensemble disagreement over two or more models.

    Args:
        measure: ``'kl'`` (mean over models of KL to the mean prediction; soft) or
            ``'vote_entropy'`` (entropy of the hard votes).
    """

    min_models = 2

    def __init__(self, measure: str = "kl"):
        if measure not in MEASURES:
            raise ValueError(f"measure={measure!r} must be one of {', '.join(MEASURES)}")
        self.measure = measure
        self.term = f"disagreement_{measure}"

    def score(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return MEASURES[self.measure](pool.probs)
