"""Acquisition strategies on hand-made probabilities and embeddings (no models involved)."""

from __future__ import annotations

import numpy as np
import pytest

from antgo_mlflow.active.strategies import Pool, terms
from antgo_mlflow.active.strategies.kcenter import kcenter_greedy
from antgo_mlflow.errors import AntgoError, DataError
from antgo_mlflow.registry import ACQUISITIONS

RNG = np.random.default_rng


def _probs(rows) -> np.ndarray:
    p = np.asarray(rows, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


# sample 2 is the least confident (top 0.36), sample 4 has the smallest margin (0.40 vs 0.39)
HAND = _probs(
    [
        [0.98, 0.01, 0.01],
        [0.70, 0.20, 0.10],
        [0.36, 0.32, 0.32],
        [0.90, 0.05, 0.05],
        [0.40, 0.39, 0.21],
    ]
)


def _select(name, pool, budget=2, seed=0, **kwargs):
    return ACQUISITIONS.build(dict(type=name, **kwargs)).select(pool, budget, RNG(seed))


@pytest.mark.parametrize(
    "name, first", [("least_confidence", 2), ("entropy", 2), ("margin", 4), ("activelab", 2)]
)
def test_uncertainty_strategies_put_the_known_most_uncertain_sample_first(name, first):
    sel = _select(name, Pool(HAND))
    assert sel.order[0] == first
    assert sel.order[-1] == 0  # the 0.98 prediction is the surest
    assert sorted(sel.order.tolist()) == list(range(5))
    assert sel.ranks()[first] == 1


def test_margin_and_least_confidence_disagree_where_they_should():
    lc = _select("least_confidence", Pool(HAND)).order.tolist()
    mg = _select("margin", Pool(HAND)).order.tolist()
    assert lc[:2] == [2, 4] and mg[:2] == [4, 2]


def test_terms_match_hand_computations():
    p = HAND
    assert np.allclose(terms.least_confidence(p), 1 - p.max(1))
    top = np.sort(p, axis=1)
    assert np.allclose(terms.margin(p), 1 - (top[:, -1] - top[:, -2]))
    assert np.allclose(terms.entropy(p), [-(r * np.log(r)).sum() for r in p])


def test_ensemble_disagreement_ranks_the_sample_the_models_split_on_first():
    a = _probs([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]])
    b = _probs([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])  # the models split on sample 1 only
    pool = Pool(np.stack([a, b]))
    for measure in ("kl", "vote_entropy"):
        sel = _select("disagreement", pool, measure=measure)
        assert sel.order[0] == 1
        assert sel.scores[0] == pytest.approx(0) and sel.scores[2] == pytest.approx(0)
    # KL to the mean by hand: both models are 0.8 nats... from the mean (0.5, 0.5)
    kl = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert terms.kl_to_mean(pool.probs)[1] == pytest.approx(kl)
    assert terms.vote_entropy(pool.probs)[1] == pytest.approx(np.log(2))


def test_random_is_reproducible_by_seed_and_differs_across_seeds():
    pool = Pool(_probs(RNG(0).random((50, 4)) + 0.1))
    a = _select("random", pool, budget=10, seed=1).order
    assert np.array_equal(a, _select("random", pool, budget=10, seed=1).order)
    assert not np.array_equal(a, _select("random", pool, budget=10, seed=2).order)


def test_activelab_with_a_single_annotator_label_array_matches_cleanlab():
    from cleanlab.multiannotator import get_active_learning_scores

    rng = RNG(3)
    pool_p = _probs(rng.random((40, 3)) ** 3 + 0.01)
    lab_p = _probs(rng.random((25, 3)) ** 3 + 0.01)
    labels = lab_p.argmax(1)
    labels[:5] = (labels[:5] + 1) % 3  # a few labels the model disagrees with
    pool = Pool(pool_p, labeled_probs=lab_p, labeled_labels=labels)
    sel = _select("activelab", pool)
    _, want = get_active_learning_scores(labels.reshape(-1, 1), lab_p, pool_p)
    assert np.allclose(sel.scores, 1 - want)
    assert sel.order[0] == int(np.argmin(want))


def test_activelab_ensemble_leaves_the_callers_arrays_untouched():
    rng = RNG(4)
    probs = np.stack([_probs(rng.random((30, 3)) + 0.05) for _ in range(3)])
    lab = np.stack([_probs(rng.random((10, 3)) + 0.05) for _ in range(3)])
    labels = lab.mean(0).argmax(1)
    pool = Pool(probs, labeled_probs=lab, labeled_labels=labels)
    before = pool.probs.copy(), pool.labeled_probs.copy()
    sel = _select("activelab", pool)
    assert np.array_equal(pool.probs, before[0]) and np.array_equal(pool.labeled_probs, before[1])
    assert np.isfinite(sel.scores).all() and len(set(sel.order.tolist())) == 30


def _clusters():
    """Four tight clusters at the corners of a square, 20 points each."""
    rng = RNG(0)
    corners = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    pts = np.concatenate([c + rng.normal(0, 0.1, (20, 2)) for c in corners]).astype(np.float32)
    return pts, np.repeat(np.arange(4), 20)


def test_kcenter_picks_one_point_per_far_apart_cluster():
    pts, cluster = _clusters()
    picked, gains, final = kcenter_greedy(pts, 4)
    assert sorted(cluster[picked].tolist()) == [0, 1, 2, 3]
    assert final.max() < 1.0  # every point is now within its cluster's radius of a center
    assert gains[1] > 9  # the second pick is a corner away from the first


def test_kcenter_starts_from_the_labelled_centers():
    pts, cluster = _clusters()
    labelled = np.array([[0, 0], [10, 10]], dtype=np.float32)
    picked, _, _ = kcenter_greedy(pts, 2, centers=labelled)
    assert sorted(cluster[picked].tolist()) == [1, 2]  # the two uncovered corners


def test_kcenter_strategy_orders_picks_first_and_uses_embeddings():
    pts, cluster = _clusters()
    pool = Pool(np.full((80, 2), 0.5), embeddings=pts)
    sel = _select("kcenter", pool, budget=4, metric="euclidean")
    assert sorted(cluster[sel.order[:4]].tolist()) == [0, 1, 2, 3]
    assert sorted(sel.order.tolist()) == list(range(80))


def test_kcenter_matches_a_plain_numpy_reference():
    x = RNG(5).normal(size=(300, 16)).astype(np.float32)
    picked, _, _ = kcenter_greedy(x, 25)
    ref = [int(((x - x.mean(0)) ** 2).sum(1).argmax())]
    mind = np.linalg.norm(x - x[ref[0]], axis=1)
    for _ in range(24):
        ref.append(int(mind.argmax()))
        mind = np.minimum(mind, np.linalg.norm(x - x[ref[-1]], axis=1))
    assert picked.tolist() == ref


def test_hybrid_never_picks_outside_its_uncertain_pool():
    rng = RNG(7)
    n, budget, factor = 200, 10, 3
    probs = _probs(rng.random((n, 5)) ** 4 + 1e-3)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[:5] *= 50  # far-away outliers that plain k-center would grab first
    probs[:5] = _probs(np.tile([[100, 1, 1, 1, 1]], (5, 1)))  # ... but they are confident
    pool = Pool(probs, embeddings=emb)
    strategy = ACQUISITIONS.build(dict(type="hybrid", pool_factor=factor, metric="euclidean"))
    sel = strategy.select(pool, budget, RNG(0))
    uncertain = set(np.argsort(-terms.margin(probs), kind="stable")[: budget * factor].tolist())
    assert set(sel.order[:budget].tolist()) <= uncertain
    assert not set(range(5)) & set(sel.order[:budget].tolist())
    assert sel.terms["candidate"][sel.order[:budget]].all()
    kcenter = _select("kcenter", pool, budget=budget, metric="euclidean")
    assert len(set(kcenter.order[:budget].tolist()) & set(range(5))) >= 3  # what hybrid avoided


def test_hybrid_spreads_its_picks_where_uncertainty_alone_repeats_one_case():
    # 30 near-identical uncertain copies and 10 slightly less uncertain, distinct samples
    rng = RNG(8)
    copies = np.tile([[0.5, 0.49, 0.01]], (30, 1))
    distinct = np.tile([[0.55, 0.44, 0.01]], (10, 1))
    probs = _probs(np.concatenate([copies, distinct]))
    emb = np.concatenate(
        [np.ones((30, 4)) + rng.normal(0, 1e-3, (30, 4)), rng.normal(0, 5, (10, 4))]
    ).astype(np.float32)
    pool = Pool(probs, embeddings=emb)
    margin_pick = _select("margin", pool, budget=5).order[:5]
    hybrid_pick = _select("hybrid", pool, budget=5, pool_factor=8).order[:5]
    assert (margin_pick < 30).all()  # all copies
    assert (hybrid_pick < 30).sum() <= 1  # one copy at most


@pytest.mark.parametrize("name", sorted(ACQUISITIONS))
def test_every_registered_strategy_returns_a_full_permutation(name):
    rng = RNG(1)
    probs = np.stack([_probs(rng.random((60, 4)) + 0.01) for _ in range(2)])
    pool = Pool(probs, embeddings=rng.normal(size=(60, 6)).astype(np.float32))
    sel = ACQUISITIONS.build(dict(type=name)).select(pool, 7, RNG(0))
    assert sorted(sel.order.tolist()) == list(range(60))
    assert sel.scores.shape == (60,) and sel.terms
    assert all(v.shape == (60,) for v in sel.terms.values())


def test_bad_strategy_arguments_name_the_key():
    with pytest.raises(AntgoError, match="pool_factor"):
        ACQUISITIONS.build(dict(type="hybrid", pool_factor=0.5), path="strategy")
    with pytest.raises(AntgoError, match="uncertainty='random'"):
        ACQUISITIONS.build(dict(type="hybrid", uncertainty="random"), path="strategy")
    with pytest.raises(AntgoError, match="strategy.type: unknown acquisition 'marginn'.*margin"):
        ACQUISITIONS.build(dict(type="marginn"), path="strategy")


@pytest.mark.parametrize(
    "probs, fragment",
    [
        (np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN"),
        (np.array([[2.0, -1.0], [0.5, 0.5]]), "outside [0, 1]"),
        (np.array([[0.2, 0.2], [0.5, 0.5]]), "do not sum to 1"),
        (np.zeros((1, 0, 3)), "expected (models, samples"),
    ],
)
def test_broken_probabilities_are_refused(probs, fragment):
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        Pool(probs)
