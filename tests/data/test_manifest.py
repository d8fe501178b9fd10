"""The manifest: written last, sha256 per shard, verify detects changes, digest is stable."""

from __future__ import annotations

import json

import pytest

from antgo_mlflow.data.manifest import digest, read_manifest, verify_shards
from antgo_mlflow.errors import ShardError
from antgo_mlflow.tools.package_tfrecord import package_tfrecord
from tests.data.gtfactory import make_dataset


@pytest.fixture
def packed(tmp_path):
    gt = make_dataset(tmp_path / "ds", n=7, missing=(2,), classes=["a", "b", "c"])
    summary = package_tfrecord(str(gt), tmp_path / "out", "train", num=3)
    return summary


def test_manifest_lists_counts_sha256_classes_and_sources(packed):
    manifest = read_manifest(packed.manifest)
    assert manifest["format"] == "tfrecord" and manifest["schema_version"] == 1
    assert manifest["total"] == 6 and manifest["dropped"] == 1
    assert [s["count"] for s in manifest["shards"]] == [3, 3]
    assert [s["file"] for s in manifest["shards"]] == [
        "train-00000-of-00002-tfrecord",
        "train-00001-of-00002-tfrecord",
    ]
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert manifest["class_names"] == ["a", "b", "c"]
    assert manifest["sources"][0]["path"].endswith("annotation.json")
    assert manifest["sources"][0]["samples"] == 7 and manifest["sources"][0]["kept"] == 6
    assert verify_shards(packed.manifest)["digest"] == manifest["digest"]
    assert digest(packed.manifest) == manifest["digest"]
    assert all(len(s["index_sha256"]) == 64 for s in manifest["shards"])


def test_verify_detects_a_changed_shard(packed):
    shard = packed.shards[1]
    data = bytearray(shard.read_bytes())
    data[30] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="train-00001-of-00002-tfrecord: sha256 differs"):
        verify_shards(packed.manifest)
    shard.unlink()
    with pytest.raises(ShardError, match="is missing"):
        verify_shards(packed.manifest)


def test_digest_is_stable_and_follows_content(tmp_path, packed):
    again = package_tfrecord(
        str(tmp_path / "ds" / "annotation.json"), tmp_path / "out2", "train", num=3
    )
    assert read_manifest(again.manifest)["digest"] == read_manifest(packed.manifest)["digest"]
    other = package_tfrecord(
        str(tmp_path / "ds" / "annotation.json"), tmp_path / "out3", "train", num=4
    )
    assert read_manifest(other.manifest)["digest"] != read_manifest(packed.manifest)["digest"]


def test_bad_manifest_is_a_clear_error(tmp_path):
    bad = tmp_path / "x-manifest.json"
    bad.write_text("{not json")
    with pytest.raises(ShardError, match="not a valid manifest"):
        read_manifest(bad)
    bad.write_text(json.dumps({"shards": [], "manifest_version": 99}))
    with pytest.raises(ShardError, match="manifest_version"):
        read_manifest(bad)
    with pytest.raises(ShardError, match="no such manifest"):
        read_manifest(tmp_path / "missing")
