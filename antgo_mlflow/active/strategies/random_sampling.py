"""``random``: uniform sampling, the baseline every other strategy has to beat."""

from __future__ import annotations

import numpy as np

from antgo_mlflow.active.strategies.base import Pool, ScoreAcquisition
from antgo_mlflow.registry import ACQUISITIONS


@ACQUISITIONS.register_module("random")
class RandomSampling(ScoreAcquisition):
    """Every sample equally likely; reproducible through the caller's seeded ``rng``."""

    term = "random"

    def score(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return rng.random(pool.size)
