"""Checks of the training sources every semi-supervised algorithm runs before its first step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.models.semi.common import check_sources, pseudo_label_logs


class Samples(torch.utils.data.Dataset):
    def __init__(self, labels, views=False):
        self.labels = labels
        self.weak_pipeline = (lambda s: s) if views else None
        self.strong_pipeline = self.weak_pipeline

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": torch.zeros(3, 2, 2), "label": self.labels[i]}


def loaders(n_l=4, n_u=28):
    return {
        "labeled": SimpleNamespace(batch_size=n_l),
        "unlabeled": SimpleNamespace(batch_size=n_u),
    }


def test_a_good_setup_passes():
    sources = {"labeled": Samples([0, 1]), "unlabeled": Samples([-1, -1], views=True)}
    check_sources(sources, loaders(), "FixMatch", views=True, mu=7)


@pytest.mark.parametrize(
    "sources, kwargs, error, fragment",
    [
        (
            {"labeled": Samples([0, 1])},
            {},
            ConfigError,
            "data.train.unlabeled: FixMatch needs an unlabelled source",
        ),
        ({"train": Samples([0, 1])}, {}, ConfigError, "data.train.unlabeled"),
        (
            {"labeled": Samples([-1, -1]), "unlabeled": Samples([-1], True)},
            {},
            DataError,
            "data.train.labeled: no sample has a label",
        ),
        (
            {"labeled": Samples([0]), "unlabeled": Samples([-1])},
            dict(views=True),
            ConfigError,
            "strong_pipeline",
        ),
        (
            {"labeled": Samples([0]), "unlabeled": Samples([-1], True)},
            dict(views=True, mu=3),
            ConfigError,
            "unlabeled_dataloader.samples_per_gpu: 28 is not mu=3",
        ),
        ({"a": Samples([0]), "b": Samples([1])}, {}, ConfigError, "needs a source named 'labeled'"),
    ],
)
def test_bad_sources_are_one_line_naming_the_key(sources, kwargs, error, fragment):
    with pytest.raises(error) as info:
        check_sources(sources, loaders(), "FixMatch", **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_pseudo_label_accuracy_only_when_the_unlabelled_data_has_labels():
    classes = torch.tensor([0, 1, 2, 2])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    logs = pseudo_label_logs(classes, mask, {"label": torch.tensor([0, 2, 2, 2])})
    assert logs["mask_ratio"].item() == 0.75
    assert logs["pseudo_acc"].item() == pytest.approx(2 / 3)  # accepted: 0 ok, 1 wrong, 3 ok
    assert logs["pseudo_acc_all"].item() == 0.75
    assert set(pseudo_label_logs(classes, mask, {"label": torch.full((4,), -1)})) == {"mask_ratio"}
    assert set(pseudo_label_logs(classes, mask, {})) == {"mask_ratio"}
