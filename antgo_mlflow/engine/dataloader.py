"""Datasets and DataLoaders from ``data.<split>`` / ``data.<split>_dataloader`` (validated).

``data.train`` is one dataset config, or several named ones — ``dict(labeled=dict(type=...),
unlabeled=dict(type=...))`` — each read through its own loader: ``data.<name>_dataloader``
over the defaults in ``data.train_dataloader`` (``samples_per_gpu``, ``workers_per_gpu``,
``sampler``, ``collate_fn``, ...). Every loader gets a sampler from SAMPLERS
(``data.samplers.build_sampler``: seeded per epoch, sharded by rank, resumable mid-epoch) and a
collate function from COLLATE (``DefaultCollate`` unless ``collate_fn=dict(type=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from antgo_mlflow.data.samplers import build_sampler
from antgo_mlflow.errors import AntgoError, ConfigError, DataError
from antgo_mlflow.registry import COLLATE, DATASETS

DATALOADER_KEYS = (
    "samples_per_gpu",
    "workers_per_gpu",
    "drop_last",
    "shuffle",
    "pin_memory",
    "persistent_workers",
    "prefetch_factor",
    "iters_per_epoch",
    "sampler",
    "collate_fn",
)
#: Seeds of the sources of one run are this far apart (source 0 keeps the run's seed).
SOURCE_SEED_STRIDE = 1000


def is_named_sources(cfg: Any) -> bool:
    """True for ``data.train=dict(labeled=dict(type=...), ...)`` (several named datasets)."""
    return (
        isinstance(cfg, Mapping)
        and "type" not in cfg
        and bool(cfg)
        and all(isinstance(v, Mapping) for v in cfg.values())
    )


def build_dataset(cfg: Any, path: str):
    """Build one dataset config from DATASETS; errors name ``path`` (``data.train.unlabeled``)."""
    try:
        return DATASETS.build(cfg, path=path)
    except AntgoError as exc:
        if str(exc).startswith(path):
            raise
        raise type(exc)(f"{path}: {exc}") from exc
    except OSError as exc:
        raise DataError(f"{path}: {exc}") from exc


def loader_options(data: Mapping, name: str, default: str | None = None) -> tuple[dict, str]:
    """``data.<name>_dataloader`` over ``data.<default>_dataloader``, checked; and its key."""
    key = f"data.{name}_dataloader"
    opts = dict((data.get(f"{default}_dataloader") or {}) if default else {})
    opts.update(data.get(f"{name}_dataloader") or {})
    for option in opts:
        if option not in DATALOADER_KEYS:
            raise ConfigError(
                f"{key}.{option}: unknown option (allowed: {', '.join(DATALOADER_KEYS)})"
            )
    batch = opts.get("samples_per_gpu", 32)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"{key}.samples_per_gpu: must be a positive integer, got {batch!r}")
    workers = opts.get("workers_per_gpu", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"{key}.workers_per_gpu: must be an integer >= 0, got {workers!r}")
    return opts, key


def _collate(spec: Any, key: str):
    if spec is None:
        spec = {"type": "DefaultCollate"}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}.collate_fn: expected dict(type=...), got {spec!r}")
    fn = COLLATE.build(spec, path=f"{key}.collate_fn")
    if not callable(fn):
        raise ConfigError(f"{key}.collate_fn.type: {spec.get('type')} is not callable")
    return fn


def build_dataloader(
    dataset,
    opts: Mapping,
    key: str,
    train: bool,
    seed: int,
    rank: int = 0,
    device: torch.device | None = None,
    path: str | None = None,
) -> DataLoader:
    """A DataLoader for ``dataset`` (config key ``path``) from checked ``opts`` (``loader_options``)."""
    workers = opts.get("workers_per_gpu", 0)
    shuffle = bool(opts.get("shuffle", train))
    cuda = device is not None and device.type == "cuda"
    kwargs: dict[str, Any] = dict(
        batch_size=opts.get("samples_per_gpu", 32),
        num_workers=workers,
        collate_fn=_collate(opts.get("collate_fn"), key),
        drop_last=bool(opts.get("drop_last", False)) if train else False,
        # Pinning pays off only when worker processes prepare batches ahead of the GPU.
        pin_memory=bool(opts.get("pin_memory", cuda and workers > 0)),
    )
    if workers > 0:
        kwargs["persistent_workers"] = bool(opts.get("persistent_workers", True))
        if opts.get("prefetch_factor"):
            kwargs["prefetch_factor"] = int(opts["prefetch_factor"])
        kwargs["generator"] = torch.Generator().manual_seed(seed + rank)
    path = path or key[: -len("_dataloader")]
    if not isinstance(dataset, IterableDataset):
        try:
            n = len(dataset)
        except TypeError:
            raise ConfigError(f"{path}: the dataset has no length") from None
        if n == 0:
            raise DataError(f"{path}: the dataset is empty")
        kwargs["sampler"] = build_sampler(
            dataset, opts.get("sampler"), shuffle, seed, pad=train, path=f"{key}.sampler"
        )
    elif opts.get("sampler"):
        raise ConfigError(f"{key}.sampler: a stream dataset (no length) takes no sampler")
    loader = DataLoader(dataset, **kwargs)
    loader.iters_per_epoch = opts.get("iters_per_epoch")
    return loader


def build_split(cfg: Mapping, split: str, seed: int, rank: int, device, train: bool = False):
    """``(dataset, loader)`` for ``data.<split>`` (val, test)."""
    data = cfg.get("data") or {}
    if not data.get(split):
        raise ConfigError(f"data.{split}: missing from {cfg.filename or 'the config'}")
    dataset = build_dataset(data[split], f"data.{split}")
    opts, key = loader_options(data, split)
    return dataset, build_dataloader(dataset, opts, key, train, seed, rank, device)


def build_train_sources(cfg: Mapping, seed: int, rank: int, device) -> dict[str, tuple]:
    """``{name: (dataset, loader)}`` for ``data.train`` (one source is named ``train``)."""
    data = cfg.get("data") or {}
    train = data.get("train")
    if not train:
        raise ConfigError(f"data.train: missing from {cfg.filename or 'the config'}")
    if not is_named_sources(train):
        dataset = build_dataset(train, "data.train")
        opts, key = loader_options(data, "train")
        return {"train": (dataset, build_dataloader(dataset, opts, key, True, seed, rank, device))}
    sources = {}
    for i, (name, sub) in enumerate(train.items()):
        if name == "train" or f"{name}_dataloader" in ("val_dataloader", "test_dataloader"):
            raise ConfigError(f"data.train.{name}: pick another source name")
        dataset = build_dataset(sub, f"data.train.{name}")
        opts, key = loader_options(data, name, default="train")
        src_seed = seed + SOURCE_SEED_STRIDE * i
        loader = build_dataloader(
            dataset, opts, key, True, src_seed, rank, device, path=f"data.train.{name}"
        )
        sources[name] = (dataset, loader)
    return sources
