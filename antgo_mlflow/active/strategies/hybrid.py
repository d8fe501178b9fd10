"""``hybrid`` (the default): the most uncertain ``pool_factor × budget`` samples, then k-center.

Uncertainty alone sends many near-copies of one confusing case; k-center alone spends labels on
easy outliers. Restricting k-center to the uncertain candidates gets both: every pick is
uncertain, and the picks are spread over the embedding space.
"""

from __future__ import annotations

import math

import numpy as np

from antgo_mlflow.active.strategies.base import (
    Acquisition,
    Pool,
    ScoreAcquisition,
    Selection,
    order_by,
)
from antgo_mlflow.active.strategies.kcenter import METRICS, diversity_selection
from antgo_mlflow.registry import ACQUISITIONS


@ACQUISITIONS.register_module(["hybrid", "ac"])
class Hybrid(Acquisition):
    """Uncertainty pre-filter + greedy k-center inside it (also registered as antgo's ``ac``:
    antgo's sampler chain took a uniform subset, then k-center on features).

    Args:
        pool_factor: candidates = the ``ceil(pool_factor × budget)`` most uncertain samples (≥ 1).
        uncertainty: the registered score strategy that ranks the candidates (``margin``,
            ``least_confidence``, ``entropy``, ``disagreement``, ``activelab``).
        metric: k-center distance, ``'cosine'`` or ``'euclidean'``.

    Order: the k-center picks, then the other candidates, then the rest, each by uncertainty.
    ``al_score`` is the uncertainty score.
    """

    needs_embeddings = True

    def __init__(
        self, pool_factor: float = 3.0, uncertainty: str = "margin", metric: str = "cosine"
    ):
        if isinstance(pool_factor, bool) or not isinstance(pool_factor, (int, float)):
            raise ValueError(f"pool_factor={pool_factor!r} must be a number >= 1")
        if not pool_factor >= 1:
            raise ValueError(f"pool_factor={pool_factor!r} must be a number >= 1")
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r} must be one of {', '.join(METRICS)}")
        scorer = ACQUISITIONS.get(uncertainty) if isinstance(uncertainty, str) else None
        if scorer is None or not issubclass(scorer, ScoreAcquisition) or uncertainty == "random":
            names = [
                n
                for n in ACQUISITIONS
                if n != "random"
                and isinstance(ACQUISITIONS.get(n), type)
                and issubclass(ACQUISITIONS.get(n), ScoreAcquisition)
            ]
            raise ValueError(f"uncertainty={uncertainty!r} must be one of {', '.join(names)}")
        self.pool_factor = float(pool_factor)
        self.uncertainty = uncertainty
        self.scorer = scorer()
        self.min_models = self.scorer.min_models
        self.metric = metric

    def candidates(self, uncertainty: np.ndarray, budget: int) -> np.ndarray:
        """Pool indices of the ``ceil(pool_factor × budget)`` most uncertain samples."""
        size = min(len(uncertainty), max(budget, math.ceil(self.pool_factor * budget)))
        return order_by(uncertainty)[:size]

    def select(self, pool: Pool, budget: int, rng: np.random.Generator) -> Selection:
        n = pool.size
        unc = np.asarray(self.scorer.score(pool, rng), dtype=np.float64)
        cand = self.candidates(unc, budget)
        picked, dist = diversity_selection(
            pool.embeddings, cand, budget, pool.labeled_embeddings, self.metric, n
        )
        in_pool = np.zeros(n, dtype=bool)
        in_pool[cand] = True
        chosen = np.zeros(n, dtype=bool)
        chosen[picked] = True
        by_unc = order_by(unc)
        rest = by_unc[~chosen[by_unc]]
        order = np.concatenate([picked, rest[in_pool[rest]], rest[~in_pool[rest]]])
        terms = {
            self.scorer.term: unc,
            "candidate": in_pool.astype(np.float64),
            "kcenter_distance": dist,
        }
        return Selection(order, unc, terms)
