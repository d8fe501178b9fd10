"""TFRecord shards: readable by the tfrecord package, random access by index, CRCs verified."""

from __future__ import annotations

import numpy as np
import pytest

from antgo_mlflow.data.records import decode_sample, serialize_sample
from antgo_mlflow.data.tfrecord import (
    TFRecordShardReader,
    TFRecordShardWriter,
    build_index,
    format_index,
    index_path_for,
    iter_frames,
    read_index,
)
from antgo_mlflow.errors import ShardError


def _write(tmp_path, n=5):
    path = tmp_path / "s-00000-of-00001-tfrecord"
    writer = TFRecordShardWriter(path)
    for i in range(n):
        writer.write(serialize_sample({"i": i, "image": bytes([i]) * (10 + i), "box": [[i, 1]]}))
    writer.close()
    index_path_for(path).write_bytes(format_index(writer.index))
    return path


def test_our_shard_reads_with_the_tfrecord_package_alone(tmp_path):
    from tfrecord.reader import tfrecord_loader

    path = _write(tmp_path)
    records = list(tfrecord_loader(str(path), None))
    assert [int(r["i"][0]) for r in records] == [0, 1, 2, 3, 4]
    assert records[3]["image"] == bytes([3]) * 13
    assert records[2]["__box_shape"].tolist() == [1, 2]
    # and with our index file, which has the format the package expects
    indexed = list(tfrecord_loader(str(path), str(index_path_for(path)), shard=(0, 1)))
    assert len(indexed) == 5


def test_random_access_reads_the_record_at_its_index_offset(tmp_path):
    path = _write(tmp_path)
    reader = TFRecordShardReader(path)
    assert len(reader) == 5
    assert decode_sample(reader.read(4))["i"] == 4
    assert decode_sample(reader.read(1))["box"].tolist() == [[1, 1]]
    assert read_index(index_path_for(path))[:, 1].sum() == path.stat().st_size


@pytest.mark.parametrize("where", ["data", "length"])
def test_flipped_byte_is_one_error_naming_file_and_record(tmp_path, where):
    path = _write(tmp_path)
    offset = int(read_index(index_path_for(path))[3, 0]) + (20 if where == "data" else 2)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    reader = TFRecordShardReader(path)
    assert decode_sample(reader.read(2))["i"] == 2  # the others still read
    with pytest.raises(ShardError) as err:
        reader.read(3)
    assert str(path) in str(err.value) and "record 3" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ShardError, match="record 3"):
        list(iter_frames(path))


def test_missing_index_is_a_clear_error_and_can_be_rebuilt(tmp_path):
    path = _write(tmp_path)
    original = index_path_for(path).read_bytes()
    index_path_for(path).unlink()
    with pytest.raises(ShardError, match="index file missing"):
        TFRecordShardReader(path)
    build_index(path)
    assert index_path_for(path).read_bytes() == original


def test_truncated_shard_is_reported(tmp_path):
    path = _write(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ShardError, match="record 4 is truncated"):
        list(iter_frames(path))
    with pytest.raises(ShardError, match="record 4"):
        TFRecordShardReader(path).read(4)


def test_reader_survives_pickling_without_its_descriptor(tmp_path):
    import pickle  # our own object within one test process, never data from elsewhere

    reader = TFRecordShardReader(_write(tmp_path))
    reader.read(0)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._fd is None and decode_sample(clone.read(1))["i"] == 1
    assert np.array_equal(clone.index, reader.index)
