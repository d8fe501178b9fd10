"""MixSampler: per-sample mixing ratios, distributed split, epochs; build_sampler choices."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from antgo_mlflow.data.samplers import EpochSampler, MixSampler, build_sampler
from antgo_mlflow.errors import ConfigError


def test_ratios_weight_each_sample_not_each_source():
    # 100 samples in source 0 and 1000 in source 1 with equal ratios: half the draws each.
    sampler = MixSampler([100, 1000], [1, 1], num_samples=4000, seed=3, num_replicas=1, rank=0)
    indices = np.array(list(sampler))
    from_small = (indices < 100).mean()
    assert 0.46 < from_small < 0.54
    small = indices[indices < 100]
    assert sorted(Counter(small[:100]).values()) == [1] * 100  # a full pass before repeats
    assert len(sampler) == 4000


def test_zero_ratio_source_is_never_drawn_and_default_length_is_total():
    sampler = MixSampler([10, 20, 30], [0, 1, 3], num_replicas=1, rank=0)
    indices = list(sampler)
    assert len(indices) == 60 and all(i >= 10 for i in indices)


def test_ranks_get_disjoint_equal_parts_of_the_same_epoch():
    parts = [
        list(MixSampler([7, 9], [1, 1], seed=5, num_replicas=3, rank=r, shuffle=True))
        for r in range(3)
    ]
    assert [len(p) for p in parts] == [6, 6, 6]  # 16 padded to 18
    whole = MixSampler([7, 9], [1, 1], seed=5, num_replicas=1, rank=0).epoch_indices().tolist()
    merged = [parts[r][k] for k in range(6) for r in range(3)]
    assert merged[:16] == whole


def test_set_epoch_changes_the_order_deterministically():
    a = MixSampler([50, 50], [1, 1], num_replicas=1, rank=0)
    b = MixSampler([50, 50], [1, 1], num_replicas=1, rank=0)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first


def test_bad_ratios_are_config_errors():
    with pytest.raises(ConfigError, match="2 values for 3"):
        MixSampler([1, 2, 3], [1, 1])
    with pytest.raises(ConfigError, match="positive sum"):
        MixSampler([1, 2], [0, 0])
    with pytest.raises(ConfigError, match="no samples"):
        MixSampler([0, 2], [1, 1])


class _Fake:
    def __init__(self, sizes, ratios=None):
        self.source_sizes, self.ratios = sizes, ratios

    def __len__(self):
        return sum(self.source_sizes)


def test_build_sampler_picks_the_right_sampler():
    assert isinstance(build_sampler(_Fake([5, 5], [1, 2])), MixSampler)
    shuffled = build_sampler(_Fake([10]), shuffle=True, seed=4)
    assert isinstance(shuffled, EpochSampler) and sorted(shuffled) == list(range(10))
    assert list(build_sampler(_Fake([10]), shuffle=False)) == list(range(10))
    dist = build_sampler(_Fake([10]), num_replicas=2, rank=1)
    assert isinstance(dist, EpochSampler) and len(dist) == 5
    mixed = build_sampler(_Fake([10, 10], [1, 1]), num_replicas=2, rank=0)
    assert isinstance(mixed, MixSampler) and len(mixed) == 10
    chosen = build_sampler(_Fake([10, 10]), dict(type="MixSampler", ratios=[1, 0]))
    assert isinstance(chosen, MixSampler) and max(chosen) < 10  # the config's ratios


def test_every_sampler_resumes_mid_epoch_and_reshuffles_per_epoch():
    for cfg in (None, dict(type="MixSampler", ratios=[3, 1])):
        sampler = build_sampler(_Fake([12, 12]), cfg, seed=1)
        sampler.set_epoch(2)
        full = list(sampler)
        sampler.skip(5)
        assert list(sampler) == full[5:]  # the resumed epoch replays nothing
        assert list(sampler) == full  # skip applies once
        sampler.set_epoch(3)
        assert list(sampler) != full


def test_a_registered_sampler_without_skip_is_made_resumable():
    from torch.utils.data import SequentialSampler

    from antgo_mlflow.registry import SAMPLERS

    SAMPLERS.register_module(
        name="PlainSequential", force=True, module=lambda dataset: SequentialSampler(dataset)
    )
    sampler = build_sampler(_Fake([6]), dict(type="PlainSequential"))
    sampler.skip(4)
    assert list(sampler) == [4, 5] and list(sampler) == list(range(6))


def test_unknown_sampler_or_missing_ratios_name_the_key():
    with pytest.raises(ConfigError, match="sampler.type: unknown sampler 'Mix'"):
        build_sampler(_Fake([5, 5]), dict(type="Mix"))
    with pytest.raises(ConfigError, match="ratios: needed"):
        build_sampler(_Fake([5, 5]), dict(type="MixSampler"))
