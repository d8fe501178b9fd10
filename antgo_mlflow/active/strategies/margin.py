"""``margin``: the samples whose two most likely classes are closest come first."""

from __future__ import annotations

import numpy as np

from antgo_mlflow.active.strategies import terms
from antgo_mlflow.active.strategies.base import Pool, ScoreAcquisition
from antgo_mlflow.registry import ACQUISITIONS


@ACQUISITIONS.register_module("margin")
class Margin(ScoreAcquisition):
    """Score 1 − (p₁ − p₂) on the models' averaged probabilities."""

    term = "margin"

    def score(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return terms.margin(pool.mean_probs)
