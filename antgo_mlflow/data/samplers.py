"""Samplers registered in SAMPLERS: seeded, epoch-aware, rank-sharded, resumable mid-epoch.

* ``DefaultSampler`` (``EpochSampler``): a global order seeded by ``(seed, epoch)``, sharded by
  rank like ``torch.utils.data.DistributedSampler`` (padded so every rank gets the same count).
* ``MixSampler``: every sample of an epoch comes from source ``s`` with probability
  ``ratios[s]`` (antgo weighted whole files; here the weight is per sample), walking each source
  through its own shuffled order without replacement (a source that runs out starts a new
  permutation). With ``num_replicas > 1`` every rank builds the same epoch list and takes every
  ``num_replicas``-th index.

Every sampler here has ``set_epoch(epoch)`` and ``skip(n)`` (start the next pass after its first
``n`` indices: a mid-epoch resume replays nothing). ``build_sampler`` picks one for a dataset:
the config's ``data.<split>_dataloader.sampler=dict(type=...)``, else ``MixSampler`` when the
dataset has ``ratios`` (``TFDataset(ratios=[3, 1])``, one per ``data_path_list`` entry), else
``DefaultSampler``. A registered sampler without ``skip`` is wrapped in ``SkipSampler``.

Example:
    >>> sampler = build_sampler(dataset, dict(type="MixSampler", ratios=[3, 1]), seed=0)
    >>> sampler.set_epoch(2); sampler.skip(128)
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import SAMPLERS


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
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Use a different (deterministic) order for each epoch."""
        self.epoch = int(epoch)

    def skip(self, n: int) -> None:
        """Skip the first ``n`` indices of this rank in the next pass only."""
        self._skip = max(0, int(n))

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
        skip, self._skip = self._skip, 0
        return iter(indices[skip:].tolist())

    def __len__(self) -> int:
        return self.per_rank


class EpochSampler(Sampler[int]):
    """A seeded, epoch-aware sampler that shards by rank and can skip the first samples of an epoch.

    With one process it yields the same global order a DistributedSampler would produce, so a
    1-process run and an N-process run with the same global batch see the same samples per step.
    ``skip(n)`` starts the current epoch after the first ``n`` samples of this rank (used to resume
    mid-epoch without replaying seen batches).

    Args:
        dataset_len: number of samples.
        shuffle: a new seeded permutation each epoch (else index order).
        seed: base seed; the order depends only on ``seed + epoch``.
        num_replicas, rank: distributed split (default: from torch.distributed, else 1 and 0).
        pad: repeat samples so every rank gets the same count (training); False for evaluation.
    """

    def __init__(
        self,
        dataset_len: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        pad: bool = True,
    ):
        self.n = int(dataset_len)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas, self.rank = _dist_info(num_replicas, rank)
        self.pad = pad
        self.epoch = 0
        self._skip = 0
        if pad:
            self.per_rank = math.ceil(self.n / self.num_replicas)
        else:
            self.per_rank = len(range(self.rank, self.n, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        """Use a different (deterministic) order for each epoch."""
        self.epoch = int(epoch)

    def skip(self, n: int) -> None:
        """Skip the first ``n`` samples of the next iteration only."""
        self._skip = max(0, int(n))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.n:
            total = self.per_rank * self.num_replicas
            order += (order * math.ceil(total / self.n))[: total - self.n]
        mine = order[self.rank :: self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(mine[skip:])

    def __len__(self) -> int:
        return self.per_rank


class SkipSampler(Sampler[int]):
    """Gives any sampler ``skip(n)`` (and passes ``set_epoch`` on) by dropping its first indices."""

    def __init__(self, sampler):
        self.sampler = sampler
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def skip(self, n: int) -> None:
        self._skip = max(0, int(n))

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.sampler), skip, None)

    def __len__(self) -> int:
        return len(self.sampler)


@SAMPLERS.register_module(name="DefaultSampler")
def default_sampler(
    dataset, shuffle: bool = True, seed: int = 0, num_replicas=None, rank=None, pad: bool = True
) -> EpochSampler:
    """``EpochSampler`` over ``dataset`` (the sampler every split gets unless told otherwise)."""
    return EpochSampler(len(dataset), shuffle, seed, num_replicas, rank, pad)


@SAMPLERS.register_module(name="MixSampler")
def mix_sampler(
    dataset,
    ratios: Sequence[float] | None = None,
    num_samples: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    num_replicas=None,
    rank=None,
    pad: bool = True,
) -> MixSampler:
    """``MixSampler`` over the sources of ``dataset`` (``source_sizes``); ``ratios`` defaults to
    ``dataset.ratios``."""
    path = _path()
    ratios = ratios if ratios is not None else getattr(dataset, "ratios", None)
    sizes = getattr(dataset, "source_sizes", None)
    if sizes is None:
        raise ConfigError(f"{path}: the dataset has no data sources to mix (source_sizes)")
    if ratios is None:
        raise ConfigError(f"{path}.ratios: needed (one weight per data source)")
    return MixSampler(
        sizes, ratios, num_samples, shuffle, seed, num_replicas, rank, drop_last=not pad
    )


def _path() -> str:
    from antgo_mlflow.registry import current_path

    return current_path("sampler")


def build_sampler(
    dataset,
    cfg: Mapping[str, Any] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    num_replicas: int | None = None,
    rank: int | None = None,
    pad: bool = True,
    path: str = "sampler",
) -> Sampler:
    """The sampler for ``dataset``: ``cfg`` (a SAMPLERS config), else ``MixSampler`` when the
    dataset has ``ratios``, else ``DefaultSampler``; always with ``set_epoch`` and ``skip``.

    ``shuffle``, ``seed``, the rank split and ``pad`` are passed to samplers that take them
    (the config's own values win).
    """
    if cfg is None:
        kind = "MixSampler" if getattr(dataset, "ratios", None) is not None else "DefaultSampler"
        cfg = {"type": kind}
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{path}: expected dict(type=...), got {cfg!r}")
    factory = SAMPLERS.get(cfg.get("type")) if isinstance(cfg.get("type"), str) else None
    offered = dict(
        dataset=dataset, shuffle=shuffle, seed=seed, num_replicas=num_replicas, rank=rank, pad=pad
    )
    defaults = {k: v for k, v in offered.items() if _accepts(factory, k)} if factory else offered
    sampler = SAMPLERS.build(cfg, path=path, default_args=defaults)
    if not isinstance(sampler, Sampler) and not hasattr(sampler, "__iter__"):
        raise ConfigError(f"{path}.type: {cfg.get('type')} did not build a sampler")
    return sampler if hasattr(sampler, "skip") else SkipSampler(sampler)


def _accepts(factory, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
