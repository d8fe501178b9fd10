"""Samplers over shard datasets: per-sample mixing ratios across sources, DistributedSampler-style.

``MixSampler`` draws every sample of an epoch from source ``s`` with probability ``ratios[s]``
(antgo weighted whole files; here the weight is per sample), walking each source through its own
shuffled order without replacement (a source that runs out starts a new permutation). With
``num_replicas > 1`` every rank builds the same epoch list and takes every ``num_replicas``-th
index, padded like ``torch.utils.data.DistributedSampler``; call ``set_epoch`` each epoch.

``build_sampler`` is what the Runner calls to pick a sampler for a dataset and its config.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from antgo_mlflow.errors import ConfigError


def _dist_info(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None or rank is None:
        import torch.distributed as dist

        initialized = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialized else 1
        if rank is None:
            rank = dist.get_rank() if initialized else 0
    if not 0 <= rank < num_replicas:
        raise ConfigError(f"sampler: rank {rank} is outside [0, {num_replicas})")
    return num_replicas, rank


class MixSampler(Sampler[int]):
    """Sample indices of a concatenation of sources with per-sample mixing ratios.

    Args:
        sizes: number of samples in each source (in dataset order).
        ratios: relative weight of each source (normalised; need not sum to 1).
        num_samples: indices per epoch over all ranks (default: the total size).
        shuffle: shuffle within each source (otherwise sources are walked in order).
        seed: base seed; the epoch list depends only on (seed, epoch).
        num_replicas, rank: distributed split (default: from torch.distributed, else 1 and 0).
        drop_last: drop the tail instead of padding so every rank gets the same count.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        ratios: Sequence[float],
        num_samples: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ):
        sizes = [int(s) for s in sizes]
        if len(ratios) != len(sizes):
            raise ConfigError(
                f"ratios: {len(ratios)} values for {len(sizes)} data sources (one per source)"
            )
        weights = np.asarray(ratios, dtype=np.float64)
        if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ConfigError(f"ratios: {list(ratios)} must be >= 0 with a positive sum")
        for s, (size, w) in enumerate(zip(sizes, weights, strict=True)):
            if w > 0 and size == 0:
                raise ConfigError(f"ratios: source {s} has weight {w} but no samples")
        self.sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.p = weights / weights.sum()
        self.total = int(num_samples) if num_samples is not None else int(sum(sizes))
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.num_replicas, self.rank = _dist_info(num_replicas, rank)
        if drop_last:
            self.per_rank = self.total // self.num_replicas
        else:
            self.per_rank = math.ceil(self.total / self.num_replicas)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use a different (deterministic) order for each epoch."""
        self.epoch = int(epoch)

    def epoch_indices(self) -> np.ndarray:
        """The full epoch list (all ranks) as global dataset indices."""
        rng = np.random.default_rng([self.seed, self.epoch])
        choice = rng.choice(len(self.sizes), size=self.total, p=self.p)
        out = np.empty(self.total, dtype=np.int64)
        for s, size in enumerate(self.sizes):
            where = np.flatnonzero(choice == s)
            if not len(where):
                continue
            rounds = -(-len(where) // size)
            if self.shuffle:
                local = np.concatenate([rng.permutation(size) for _ in range(rounds)])
            else:
                local = np.tile(np.arange(size), rounds)
            out[where] = self.offsets[s] + local[: len(where)]
        return out

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()
        size = self.per_rank * self.num_replicas
        if size > len(indices):  # pad by repeating from the start, like DistributedSampler
            reps = -(-size // max(1, len(indices)))
            indices = np.tile(indices, reps)
        indices = indices[:size][self.rank :: self.num_replicas]
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.per_rank


def _auto_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def build_sampler(
    dataset,
    shuffle: bool = True,
    seed: int = 0,
    ratios: Sequence[float] | None = None,
    distributed: bool | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
    drop_last: bool = False,
) -> Sampler:
    """The sampler for ``dataset``: ``MixSampler`` when ratios are set, else the standard ones.

    ``ratios`` defaults to ``dataset.ratios`` (one per data source, ``dataset.source_sizes``).
    ``distributed`` defaults to whether torch.distributed runs with more than one process.
    Pass the result as ``DataLoader(sampler=...)`` (with ``shuffle=False``) and call
    ``sampler.set_epoch(epoch)`` where it exists.
    """
    from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

    ratios = ratios if ratios is not None else getattr(dataset, "ratios", None)
    if distributed is None:
        distributed = _auto_distributed() or (num_replicas or 1) > 1
    if ratios is not None:
        sizes = getattr(dataset, "source_sizes", None)
        if sizes is None:
            raise ConfigError("ratios: the dataset has no data sources to mix (source_sizes)")
        if not distributed:
            num_replicas, rank = 1, 0
        return MixSampler(
            sizes,
            ratios,
            shuffle=shuffle,
            seed=seed,
            num_replicas=num_replicas,
            rank=rank,
            drop_last=drop_last,
        )
    if distributed:
        return DistributedSampler(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
    if shuffle:
        return RandomSampler(dataset, generator=torch.Generator().manual_seed(int(seed)))
    return SequentialSampler(dataset)
