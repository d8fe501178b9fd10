"""DefaultCollate: stacked images and labels, boxes as lists, weak/strong views, the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from antgo_mlflow.data.collate import DefaultCollate, collate
from antgo_mlflow.errors import DataError
from antgo_mlflow.registry import COLLATE


def test_images_stack_labels_become_a_tensor_and_meta_stays_a_list():
    batch = collate(
        [
            {"image": np.zeros((3, 4, 4), np.float32), "label": 2, "image_meta": {"f": "a"}},
            {"image": np.ones((3, 4, 4), np.float32), "label": 0, "image_meta": {"f": "b"}},
        ]
    )
    assert batch["image"].shape == (2, 3, 4, 4) and batch["label"].tolist() == [2, 0]
    assert batch["image_meta"] == [{"f": "a"}, {"f": "b"}]


def test_boxes_are_lists_even_when_every_sample_has_the_same_count():
    same = collate([{"bboxes": torch.zeros(2, 4), "labels": torch.zeros(2)}] * 3)
    ragged = collate([{"bboxes": np.zeros((k, 4), np.float32)} for k in (0, 1, 3)])
    assert isinstance(same["bboxes"], list) and len(same["bboxes"]) == 3
    assert [tuple(b.shape) for b in ragged["bboxes"]] == [(0, 4), (1, 4), (3, 4)]
    assert all(isinstance(b, torch.Tensor) for b in ragged["bboxes"])


def test_weak_strong_pairs_become_two_tensors_of_one_batch_size():
    from antgo_mlflow.data.datasets import _SampleMixin

    class Views(_SampleMixin):
        pass

    views = Views()
    views._setup_sample(
        None,
        None,
        None,
        weak_pipeline=[lambda s: {**s, "image": s["image"] + 1}],
        strong_pipeline=[lambda s: {**s, "image": s["image"] * 10}],
    )
    samples = [
        views._finish_sample({"image": torch.full((1, 2, 2), float(i))}, i) for i in range(3)
    ]
    batch = COLLATE.build(dict(type="DefaultCollate"))(samples)
    assert batch["image_weak"].shape == batch["image_strong"].shape == (3, 1, 2, 2)
    assert batch["image_strong"][2].flatten().tolist() == [30.0] * 4  # strong runs on weak
    assert "image" not in batch


def test_non_dict_samples_are_a_data_error():
    with pytest.raises(DataError, match="collate: samples must be dicts"):
        DefaultCollate()([1, 2])
