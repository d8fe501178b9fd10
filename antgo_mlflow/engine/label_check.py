"""Before the first step: every sample the model trains supervised on has a class label.

A GT from ``extract/images`` without ``--label-from=folder`` has ``image_label: -1`` everywhere;
trained on as is, the loss fails deep inside torch (``Target -1 is out of bounds``). The model
says which sources need labels (``labelled_sources``: the single source, or ``labeled``; an
``unlabeled`` source of a semi-supervised config is fine without), the data profile says how many
samples of each lack one (``antgo_mlflow.data.profile``), and this turns that into one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from antgo_mlflow.data.profile import profile_sets, where
from antgo_mlflow.errors import DataError
from antgo_mlflow.models.base import labelled_sources

HINT = (
    "label them (antgo tool label/start), pseudo-label them (mlflow run . -e pseudo-label), or "
    "for a <root>/<class>/ image folder extract with 'antgo tool extract/images --label-from=folder'"
)


def check_training_labels(model: Any, datasets: Mapping[str, Any]) -> None:
    """Raise DataError (one line) when a source ``model`` trains supervised on has unlabelled
    samples; sources whose labels are unknown (no profile) are not checked."""
    pick = getattr(model, "labelled_sources", None)
    names = pick(list(datasets)) if callable(pick) else labelled_sources(model, list(datasets))
    for name in names:
        sets = profile_sets(datasets[name]) or []
        known = [s for s in sets if s.unlabelled is not None]
        missing = sum(s.unlabelled for s in known)
        if not missing:
            continue
        total = sum(s.samples or 0 for s in known)
        key = "data.train" if name == "train" else f"data.train.{name}"
        lacking = [s for s in known if s.unlabelled]
        raise DataError(
            f"{key}: {missing} of {total} samples of {where(lacking)} have no class label "
            f"(image_label -1); {HINT}"
        )
