"""Sampler seeds across workers and continued studies (Optuna's samplers, an in-memory study)."""

from __future__ import annotations

import optuna
import pytest

from antgo_mlflow.hpo.samplers import worker_seed


def _draws(study, sampler, n):
    study.sampler = sampler
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1.0, log=True), n_trials=n)
    return [t.params["lr"] for t in study.trials[-n:]]


@pytest.mark.parametrize("cls", [optuna.samplers.RandomSampler, optuna.samplers.TPESampler])
def test_a_continued_study_with_the_same_seed_does_not_repeat_its_first_draws(cls):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    plain = optuna.create_study()
    first = _draws(plain, cls(seed=0), 3)
    assert _draws(plain, cls(seed=0), 3) == first  # why: the bare seed repeats the first run

    study = optuna.create_study()
    first = _draws(study, cls(seed=worker_seed(0, 0, 0)), 3)
    again = _draws(study, cls(seed=worker_seed(0, 0, len(first))), 3)
    assert len(set(first + again)) == 6


def test_each_worker_has_its_own_seed_and_no_seed_stays_none():
    seeds = {worker_seed(7, i, n) for i in range(4) for n in (0, 16, 32)}
    assert len(seeds) == 12 and all(0 <= s < 2**32 for s in seeds)
    assert worker_seed(7, 0, 0) == 7 and worker_seed(None, 1, 5) is None
