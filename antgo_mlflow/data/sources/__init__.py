"""Data sources: turn a known dataset (embedded digits, CIFAR-10 batches) into standard GT + shards.

Each source returns a :class:`PreparedData` naming the GT JSON, the TFRecord shards and the
manifest of every split, so configs and tests can point at them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SplitData:
    """One split of a prepared dataset: its GT JSON, its TFRecord shards and their manifest."""

    name: str
    gt: Path
    shards: tuple[Path, ...]
    manifest: Path
    count: int


@dataclass(frozen=True)
class PreparedData:
    """A dataset converted to standard GT + shards under ``root``."""

    name: str
    root: Path
    class_names: tuple[str, ...]
    splits: dict[str, SplitData] = field(default_factory=dict)
    digest: str = ""

    def shard_paths(self, split: str) -> list[str]:
        """The TFRecord shard paths of ``split`` as strings (what ``data_path_list`` takes)."""
        return [str(p) for p in self.splits[split].shards]


__all__ = ["PreparedData", "SplitData", "split_from_manifest"]


def split_from_manifest(name: str, gt: Path, manifest: Path) -> SplitData:
    """A SplitData read from a shard manifest (shard files and counts as the manifest lists them)."""
    from antgo_mlflow.data.manifest import read_manifest, shard_files

    info = read_manifest(manifest)
    count = sum(int(s["count"]) for s in info["shards"])
    return SplitData(name, gt, tuple(shard_files(manifest, info)), manifest, count)
