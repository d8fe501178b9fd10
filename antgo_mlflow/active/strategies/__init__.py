"""Acquisition strategies (ACQUISITIONS): importing this package registers every one of them.

``random``, ``least_confidence``, ``margin``, ``entropy``, ``disagreement`` (ensembles),
``activelab`` (cleanlab), ``kcenter`` (diversity) and ``hybrid`` (uncertainty, then k-center: the
default; antgo's setting name ``ac`` is the same strategy). Build one with ``ACQUISITIONS.build(dict(type="hybrid", pool_factor=3))``.
"""

from antgo_mlflow.active.strategies import (  # noqa: F401  (registers them)
    activelab,
    disagreement,
    entropy,
    hybrid,
    kcenter,
    least_confidence,
    margin,
    random_sampling,
)
from antgo_mlflow.active.strategies.base import (
    Acquisition,
    Pool,
    ScoreAcquisition,
    Selection,
    check_probabilities,
)

DEFAULT_STRATEGY = "hybrid"

__all__ = [
    "DEFAULT_STRATEGY",
    "Acquisition",
    "Pool",
    "ScoreAcquisition",
    "Selection",
    "check_probabilities",
]
