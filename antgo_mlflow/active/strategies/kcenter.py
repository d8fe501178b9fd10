"""``kcenter``: greedy k-center (core-set) on the models' embeddings, vectorised in torch.

Each step takes the pool sample farthest from everything chosen so far (the labelled set, when
its embeddings are given, counts as chosen), so a batch covers the embedding space instead of
repeating one hard case. One step is a matrix-vector product over the pool: picking k from N
points of dimension D costs O(k·N·D) and no N×N matrix is ever built.
"""

from __future__ import annotations

import numpy as np

from antgo_mlflow.active.strategies.base import Acquisition, Pool, Selection
from antgo_mlflow.registry import ACQUISITIONS

METRICS = ("euclidean", "cosine")
_CHUNK = 4096  # rows of the labelled set per distance block (bounds memory at N × 4096 floats)


def _prepare(x: np.ndarray, metric: str):
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    if metric == "cosine":
        t = torch.nn.functional.normalize(t, dim=1)
    return t


def kcenter_greedy(
    embeddings: np.ndarray,
    k: int,
    centers: np.ndarray | None = None,
    metric: str = "euclidean",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick ``k`` rows of ``embeddings`` by greedy k-center.

    Args:
        embeddings: (N, D) the candidates.
        k: how many to pick (at most N).
        centers: (L, D) points already covered (the labelled set); without them the first pick
            is the candidate farthest from the candidates' mean (deterministic; its recorded
            distance is the distance to that mean).
        metric: ``'euclidean'``, or ``'cosine'`` (Euclidean on L2-normalised rows).

    Returns:
        (picked indices in pick order (k,), each pick's distance to the nearest earlier
        center (k,), every candidate's distance to its nearest center after picking (N,)).
    """
    import torch

    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} must be one of {', '.join(METRICS)}")
    x = _prepare(embeddings, metric)
    n = x.shape[0]
    k = min(int(k), n)
    sq = (x * x).sum(1)
    min_d2 = torch.full((n,), float("inf"))
    if centers is not None and len(centers):
        c = _prepare(centers, metric)
        for start in range(0, c.shape[0], _CHUNK):
            block = c[start : start + _CHUNK]
            d2 = sq[:, None] + (block * block).sum(1)[None, :] - 2.0 * (x @ block.T)
            min_d2 = torch.minimum(min_d2, d2.min(dim=1).values)
        first = None
    else:
        to_mean = ((x - x.mean(0)) ** 2).sum(1)
        first = int(to_mean.argmax())
    picked = torch.empty(k, dtype=torch.long)
    gains = torch.empty(k)
    for i in range(k):
        j = first if (i == 0 and first is not None) else int(min_d2.argmax())
        picked[i] = j
        # the first pick without centers is "infinitely" far: record its distance to the mean
        gains[i] = to_mean[j] if (i == 0 and first is not None) else min_d2[j]
        # ||x - x_j||² = ||x||² + ||x_j||² − 2 x·x_j, one matrix-vector product per pick
        d2 = torch.addmv(sq + sq[j], x, x[j], alpha=-2.0)
        torch.minimum(min_d2, d2, out=min_d2)
        min_d2[j] = 0.0
    dist = min_d2.clamp_min_(0).sqrt_()
    gains = gains.clamp_min_(0).sqrt_()
    return picked.numpy(), gains.numpy().astype(np.float64), dist.numpy().astype(np.float64)


def diversity_selection(
    embeddings: np.ndarray,
    candidates: np.ndarray,
    budget: int,
    centers: np.ndarray | None,
    metric: str,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """k-center over ``candidates`` (pool indices): (picked pool indices, (n,) distance column).

    The distance column holds each pick's distance at pick time and every other candidate's
    final distance to its nearest center; samples outside ``candidates`` get NaN.
    """
    picked, gains, final = kcenter_greedy(embeddings[candidates], budget, centers, metric)
    dist = np.full(n, np.nan)
    dist[candidates] = final
    dist[candidates[picked]] = gains
    return candidates[picked], dist


@ACQUISITIONS.register_module("kcenter")
class KCenter(Acquisition):
    """Greedy k-center on the pool's embeddings (the first model's features).

    Args:
        metric: ``'euclidean'`` or ``'cosine'`` (default: CNN features differ more in direction
            than in length).

    The ``budget`` picks come first in pick order; the rest follow by distance to the chosen
    set (farthest first).
    """

    needs_embeddings = True

    def __init__(self, metric: str = "cosine"):
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r} must be one of {', '.join(METRICS)}")
        self.metric = metric

    def select(self, pool: Pool, budget: int, rng: np.random.Generator) -> Selection:
        n = pool.size
        picked, dist = diversity_selection(
            pool.embeddings, np.arange(n), budget, pool.labeled_embeddings, self.metric, n
        )
        return Selection(_picked_first(picked, dist), dist, {"kcenter_distance": dist})


def _picked_first(picked: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``picked`` in its order, then every other index by descending ``key`` (NaN last)."""
    rest = np.setdiff1d(np.arange(len(key)), picked, assume_unique=True)
    rest_key = np.nan_to_num(key[rest], nan=-np.inf)
    return np.concatenate([picked, rest[np.argsort(-rest_key, kind="stable")]])
