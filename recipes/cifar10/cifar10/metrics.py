"""This experiment's metrics: an example, usable from the config as
``evaluation = dict(metric=[dict(type="AccuracyEval"), dict(type="MeanClassAccuracy")], ...)``.

A metric follows the evaluator protocol: ``reset()``, ``process(predictions, batch)`` (the
model's per-sample predictions — ``pred_score`` (C,) for a classifier — and the batch's
``label``), ``compute() -> dict``; every key becomes an MLflow metric (``val/<key>``).
``ClassificationMetric`` does the accumulating: a subclass only writes ``__call__(preds, labels)``
on the whole validation set, ``preds`` (N, C) probabilities and ``labels`` (N,) class indices.
"""

import numpy as np

from antgo_mlflow.engine.metrics import ClassificationMetric
from antgo_mlflow.registry import METRICS

METRICS.import_locations()  # the library's metrics (AccuracyEval, ...) first


@METRICS.register_module(force=True)
class MeanClassAccuracy(ClassificationMetric):
    """Accuracy averaged over classes (robust to class imbalance): ``{'mean_class_acc': ...}``."""

    def __call__(self, preds, labels):
        preds, labels = np.asarray(preds), np.asarray(labels).reshape(-1)
        if labels.size == 0:
            return {"mean_class_acc": 0.0}
        hits = preds.argmax(axis=1) == labels
        per_class = [hits[labels == c].mean() for c in np.unique(labels)]
        return {"mean_class_acc": float(np.mean(per_class))}
