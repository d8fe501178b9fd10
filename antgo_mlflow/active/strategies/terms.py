"""Per-sample uncertainty and ensemble-disagreement terms, vectorised over (N, C) probabilities.

Every term is oriented like the strategies' scores: higher = more uncertain = label sooner.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 − the top class probability."""
    return 1.0 - probs.max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 − (top probability − second probability): 1 for a tie, 0 for a one-hot prediction."""
    top2 = np.partition(probs, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats."""
    return -(probs * np.log(np.clip(probs, _EPS, 1.0))).sum(axis=1)


def kl_to_mean(probs: np.ndarray) -> np.ndarray:
    """Mean over models of KL(p_m ‖ p̄) for (P, N, C) probabilities (0 for a single model).

    This is the mutual information between prediction and model (BALD's term over an ensemble).
    """
    if probs.shape[0] < 2:
        return np.zeros(probs.shape[1])
    mean = probs.mean(axis=0)
    log_ratio = np.log(np.clip(probs, _EPS, 1.0)) - np.log(np.clip(mean, _EPS, 1.0))[None]
    return (probs * log_ratio).sum(axis=2).mean(axis=0)


def vote_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of the models' hard votes for (P, N, C) probabilities (0 when all agree)."""
    p, n, c = probs.shape
    votes = probs.argmax(axis=2)  # (P, N)
    flat = (np.arange(n)[None, :] * c + votes).ravel()
    counts = np.bincount(flat, minlength=n * c).reshape(n, c)
    return entropy(counts / p)
