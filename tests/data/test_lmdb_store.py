"""LMDB shards: keys <prefix>-<index>, values are the serialized records, map size grows."""

from __future__ import annotations

import lmdb
import pytest

from antgo_mlflow.data import lmdb_store
from antgo_mlflow.data.lmdb_store import LMDBShardReader, LMDBShardWriter
from antgo_mlflow.data.records import decode_sample, serialize_sample
from antgo_mlflow.errors import ShardError


def _write(path, n=20, start=0, size=100):
    writer = LMDBShardWriter(path, "ds", start, batch=7)
    for i in range(n):
        writer.write(serialize_sample({"i": start + i, "image": bytes([i % 256]) * size}))
    writer.close()


def test_keys_are_prefix_index_and_values_are_records_not_pickle(tmp_path):
    path = tmp_path / "ds-00001-of-00002-kvrecord"
    _write(path, n=5, start=10)
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        keys = sorted(k.decode() for k, _ in txn.cursor())
        value = txn.get(b"ds-12")
    env.close()
    assert keys == ["__antgo_mlflow_meta__"] + [f"ds-{i}" for i in range(10, 15)]
    assert decode_sample(value)["i"] == 12  # a tf.train.Example, parsed without pickle
    reader = LMDBShardReader(path)
    assert len(reader) == 5 and decode_sample(reader.read(4))["i"] == 14
    assert reader.keys()[0] == "ds-10"


def test_map_size_grows_as_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(lmdb_store, "_INITIAL_MAP_SIZE", 256 << 10)
    path = tmp_path / "big-00000-of-00001-kvrecord"
    _write(path, n=60, size=50_000)  # ~3 MB into a 256 KB initial map
    reader = LMDBShardReader(path)
    assert len(reader) == 60 and len(decode_sample(reader.read(59))["image"]) == 50_000


def test_same_records_give_identical_files(tmp_path):
    _write(tmp_path / "a-00000-of-00001-kvrecord")
    _write(tmp_path / "b-00000-of-00001-kvrecord")
    a = (tmp_path / "a-00000-of-00001-kvrecord").read_bytes()
    assert a == (tmp_path / "b-00000-of-00001-kvrecord").read_bytes()
    assert not list(tmp_path.glob("*.work*"))  # working environment removed


def test_missing_or_foreign_file_is_a_shard_error(tmp_path):
    with pytest.raises(ShardError, match="no such KV shard"):
        LMDBShardReader(tmp_path / "nope-kvrecord")
    env = lmdb.open(str(tmp_path / "x-kvrecord"), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(ShardError, match="not an antgo-mlflow KV shard"):
        LMDBShardReader(tmp_path / "x-kvrecord")
