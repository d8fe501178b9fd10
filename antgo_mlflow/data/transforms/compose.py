"""Pipelines: ``build_pipeline(cfgs)`` and the containers Compose, RandomApply, RandomChoice, RandomOrder.

Example:
    >>> pipeline = build_pipeline([dict(type='DecodeImage'), dict(type='ToTensor')],
    ...                           path='data.train.pipeline')
    >>> sample = pipeline(sample)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from antgo_mlflow.errors import RegistryError
from antgo_mlflow.registry import TRANSFORMS, current_build

Transform = Callable[[dict], dict]


def _build_list(transforms: Sequence[Any] | None, path: str) -> list[Transform]:
    if transforms is None:
        return []
    if isinstance(transforms, Mapping) or not isinstance(transforms, Sequence):
        raise RegistryError(f"{path}: expected a list of transform configs, got {transforms!r:.80}")
    built = []
    for i, t in enumerate(transforms):
        if isinstance(t, Mapping):
            built.append(TRANSFORMS.build(t, path=f"{path}.{i}"))
        elif callable(t):
            built.append(t)
        else:
            raise RegistryError(f"{path}.{i}: expected a transform config dict, got {t!r:.80}")
    return built


def _nested_path(default: str) -> str:
    # When built from a config, the registry knows where this container sits.
    current = current_build()
    return f"{current[0]}.transforms" if current else default


@TRANSFORMS.register_module()
class Compose:
    """Apply transforms in order to a sample dict; a transform returning None drops the sample.

    Args:
        transforms: transform config dicts (``dict(type=..., ...)``) or callables.
        path: the config path used in error messages (``data.train.pipeline``).
    """

    def __init__(self, transforms: Sequence[Any] = (), path: str | None = None):
        self.transforms = _build_list(transforms, path or _nested_path("pipeline"))

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        for t in self.transforms:
            sample = t(sample)
            if sample is None:
                return None
        return sample

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


@TRANSFORMS.register_module()
class RandomApply(Compose):
    """Apply all ``transforms`` (in order) with probability ``p``, else none."""

    def __init__(self, transforms: Sequence[Any] = (), p: float = 0.5):
        super().__init__(transforms)
        self.p = p

    def __call__(self, sample):
        if random.random() >= self.p:
            return sample
        return super().__call__(sample)


@TRANSFORMS.register_module()
class RandomChoice(Compose):
    """Apply one of ``transforms``, picked with probabilities ``p`` (uniform by default)."""

    def __init__(self, transforms: Sequence[Any] = (), p: Sequence[float] | None = None):
        super().__init__(transforms)
        if p is not None and len(p) != len(self.transforms):
            raise ValueError(f"p has {len(p)} values for {len(self.transforms)} transforms")
        self.p = list(p) if p is not None else None

    def __call__(self, sample):
        if not self.transforms:
            return sample
        t = random.choices(self.transforms, weights=self.p)[0]
        return t(sample)


@TRANSFORMS.register_module()
class RandomOrder(Compose):
    """Apply all ``transforms`` in a random order."""

    def __call__(self, sample):
        order = list(self.transforms)
        random.shuffle(order)
        for t in order:
            sample = t(sample)
            if sample is None:
                return None
        return sample


def build_pipeline(
    cfgs: Sequence[Any] | None, path: str | None = None, field: str = "pipeline"
) -> Compose:
    """Build a Compose from a list of transform configs; errors name ``path.N.key``.

    Args:
        cfgs: the ``pipeline=[...]`` list of a dataset config (dicts or callables); None is empty.
        path: config path of that list, e.g. ``data.train.pipeline``. Default: when called inside
            a constructor that a registry is building (a dataset built from ``data.train``), that
            object's path plus ``.{field}``; otherwise ``field``.
        field: the config key holding the list (``pipeline``, ``weak_pipeline``, ...).
    """
    if path is None:
        current = current_build()
        path = f"{current[0]}.{field}" if current else field
    return Compose(cfgs or [], path=path)
