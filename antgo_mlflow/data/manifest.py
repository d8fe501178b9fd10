"""``<prefix>-manifest.json``: the sidecar written last by the packers (counts, sha256 per shard).

A shard set is complete only when its manifest exists: the packers write it after every shard
file has been renamed into place. Content (no timestamps, so packing twice gives the same file)::

    {"manifest_version": 1, "schema_version": 1, "format": "tfrecord" | "kv",
     "prefix": "hand", "total": 12, "dropped": 1,
     "shards": [{"file": "hand-00000-of-00002-tfrecord", "index": "hand-00000-of-00002-index",
                 "count": 10, "start": 0, "bytes": 12345, "sha256": "...",
                 "index_sha256": "...", "label_counts": {"-1": 2, "0": 5, "1": 3}}, ...],
     "class_names": ["cat", "dog"],
     "sources": [{"path": "/data/a/annotation.json", "samples": 13, "kept": 12}],
     "digest": "<16 hex>"}

``label_counts`` (per shard: ``image_label`` -> samples, -1 = no class label) is the profile
training runs log and check (``antgo_mlflow.data.profile``); manifests written before it have none
and their shards are scanned instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import ShardError

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = "-manifest.json"
#: antgo's shard file names: ``<prefix>-00000-of-00003-tfrecord`` / ``-index`` / ``-kvrecord``.
SHARD_RE = re.compile(
    r"^(?P<prefix>.+)-(?P<i>\d{5,})-of-(?P<n>\d{5,})-(?P<kind>tfrecord|index|kvrecord)$"
)


def shard_name(prefix: str, i: int, n: int, kind: str = "tfrecord") -> str:
    """antgo's shard file name: ``"%s-%.5d-of-%.5d-<kind>" % (prefix, i, n)``."""
    return f"{prefix}-{i:05d}-of-{n:05d}-{kind}"


def manifest_path(folder: str | os.PathLike, prefix: str) -> Path:
    """Where the manifest of ``prefix`` in ``folder`` lives."""
    return Path(folder) / f"{prefix}{MANIFEST_SUFFIX}"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def compute_digest(fmt: str, shards: list[dict[str, Any]]) -> str:
    """A short content digest of a shard set (usable as an ``mlflow.data`` dataset digest)."""
    h = hashlib.sha256(fmt.encode())
    for shard in shards:
        h.update(f"{shard['count']}:{shard['sha256']};".encode())
    return h.hexdigest()[:16]


def build_manifest(
    fmt: str,
    prefix: str,
    shards: list[dict[str, Any]],
    class_names: list[str],
    sources: list[dict[str, Any]],
    dropped: int,
    schema_version: int = 1,
) -> dict[str, Any]:
    """Assemble the manifest dict (shards need ``file``, ``count``, ``start``, ``bytes``, ``sha256``)."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "schema_version": schema_version,
        "format": fmt,
        "prefix": prefix,
        "total": sum(int(s["count"]) for s in shards),
        "dropped": dropped,
        "shards": shards,
        "class_names": list(class_names),
        "sources": sources,
        "digest": compute_digest(fmt, shards),
    }


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically; returns its path."""
    from antgo_mlflow.fileio import atomic_write_json

    path = manifest_path(folder, manifest["prefix"])
    atomic_write_json(path, manifest, indent=2)
    return path


def _manifest_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        # a packer killed inside its commit: finish it (old set or new, never a mixture)
        from antgo_mlflow.data.commit import finish_pending

        if not finish_pending(path.parent, path.name[: -len(MANIFEST_SUFFIX)]):
            raise
        return path.read_text(encoding="utf-8")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a manifest (a ``-manifest.json`` path or a shard prefix path)."""
    path = Path(path)
    if not str(path).endswith(MANIFEST_SUFFIX):
        path = Path(str(path) + MANIFEST_SUFFIX)
    try:
        manifest = json.loads(_manifest_text(path))
    except FileNotFoundError:
        raise ShardError(f"{path}: no such manifest") from None
    except RecursionError:
        raise ShardError(f"{path}: not a valid manifest (nested too deeply)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path}: not a valid manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise ShardError(f"{path}: not a shard manifest (no 'shards' list)")
    version = manifest.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise ShardError(f"{path}: unsupported manifest_version {version!r}")
    if manifest.get("format") not in ("tfrecord", "kv"):
        raise ShardError(f"{path}: unknown format {manifest.get('format')!r}")
    for i, shard in enumerate(manifest["shards"]):
        if not isinstance(shard, dict) or not {"file", "count", "sha256"} <= set(shard):
            raise ShardError(f"{path}: shard entry {i} lacks file/count/sha256")
    return manifest


def digest(path: str | os.PathLike) -> str:
    """The manifest's content digest (16 hex chars), e.g. for ``mlflow.data`` dataset digests."""
    return read_manifest(path)["digest"]


def shard_files(manifest_file: str | os.PathLike, manifest: dict[str, Any]) -> list[Path]:
    """Absolute paths of the shard files a manifest lists (beside the manifest)."""
    folder = Path(manifest_file).parent
    return [folder / s["file"] for s in manifest["shards"]]


def verify_shards(path: str | os.PathLike) -> dict[str, Any]:
    """Check every shard file listed in a manifest exists with its recorded size and sha256.

    Returns the manifest; raises ShardError naming the first bad file.
    """
    path = Path(path)
    if not str(path).endswith(MANIFEST_SUFFIX):
        path = Path(str(path) + MANIFEST_SUFFIX)
    manifest = read_manifest(path)
    for shard, file in zip(manifest["shards"], shard_files(path, manifest), strict=True):
        if not file.is_file():
            raise ShardError(f"{file}: shard listed in {path.name} is missing")
        if "bytes" in shard and file.stat().st_size != int(shard["bytes"]):
            raise ShardError(
                f"{file}: size {file.stat().st_size} differs from the manifest ({shard['bytes']})"
            )
        if sha256_file(file) != shard["sha256"]:
            raise ShardError(f"{file}: sha256 differs from {path.name} (file changed or corrupt)")
        index = shard.get("index")
        if index and not (path.parent / index).is_file():
            raise ShardError(f"{path.parent / index}: index listed in {path.name} is missing")
        if index and "index_sha256" in shard:
            if sha256_file(path.parent / index) != shard["index_sha256"]:
                raise ShardError(f"{path.parent / index}: sha256 differs from {path.name}")
    return manifest
