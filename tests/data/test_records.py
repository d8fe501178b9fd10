"""antgo's record encoding: every field survives a round trip; antgo's own records decode."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from antgo_mlflow.data.records import decode_sample, parse_example, serialize_sample
from antgo_mlflow.errors import DataError
from tests.data.gtfactory import image_bytes, rich_sample


def test_round_trip_keeps_every_field_with_dtype_and_shape():
    sample = rich_sample(4) | {"image": image_bytes(4), "none": None, "empty": [], "f": 0.25}
    out = decode_sample(serialize_sample(sample))

    assert out["image"] == sample["image"]  # original encoded bytes, not decoded
    assert out["bboxes"].dtype == np.float32 and out["bboxes"].shape == (2, 4)
    np.testing.assert_array_equal(out["bboxes"], sample["bboxes"])
    assert out["labels"].dtype == np.int64 and out["labels"].tolist() == [1, 1]
    assert out["joints2d"].dtype == np.float32 and out["joints2d"].shape == (2, 3, 2)
    assert out["joints_vis"].dtype == np.int64 and out["joints_vis"].shape == (2, 3)
    assert out["segments"] == sample["segments"]  # ragged polygons come back exactly
    assert out["predictions"] == sample["predictions"]
    assert out["label_names"] == ["cat", "dog"]  # antgo dropped string lists
    assert out["image_label"] == 1 and isinstance(out["image_label"], int)
    assert out["image_label_name"] == "dog" and out["tag"] == "tag0"
    assert out["has_bboxes3d"] == 0  # bool -> int, as antgo
    assert out["timestamp"] == "" and out["view_id"] == "-1"
    assert out["none"] is None and out["f"] == 0.25
    assert out["empty"].dtype == np.float32 and out["empty"].shape == (0,)


def test_arrays_use_antgo_shape_and_type_features():
    raw = parse_example(
        serialize_sample({"bboxes": [[1, 2, 3, 4]], "vis": [True], "m": np.ones((2, 2), np.uint8)})
    )
    assert list(raw["__bboxes_shape"]) == [1, 4] and list(raw["__bboxes_type"]) == [2]
    assert np.frombuffer(raw["bboxes"][0], np.int64).tolist() == [1, 2, 3, 4]
    assert list(raw["__vis_type"]) == [3]  # bool -> int8
    assert list(raw["__m_type"]) == [4] and list(raw["__m_shape"]) == [2, 2]


def test_ragged_list_keeps_a_padded_array_for_antgo():
    raw = parse_example(serialize_sample({"segments": [[1, 2, 3, 4], [5, 6]]}))
    padded = np.frombuffer(raw["segments"][0], np.int64).reshape(list(raw["__segments_shape"]))
    assert padded.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert decode_sample(serialize_sample({"segments": [[1, 2, 3, 4], [5, 6]]}))["segments"] == [
        [1, 2, 3, 4],
        [5, 6],
    ]


def test_record_written_the_antgo_way_decodes():
    from tfrecord.writer import TFRecordWriter

    boxes = np.array([[1, 2, 3, 4]], dtype=np.float32)
    datum = {  # what antgo's TFDataWriter builds
        "image": (b"\x89PNGdata", "byte"),
        "image_file": (b"a.png", "byte"),
        "image_label": (2, "int"),
        "bboxes": (boxes.tobytes(), "byte"),
        "__bboxes_shape": ([1, 4], "int"),
        "__bboxes_type": (0, "int"),
        "predictions": (b'{"p": 1}', "byte"),
    }
    out = decode_sample(TFRecordWriter.serialize_tf_example(datum))
    assert out["image"] == b"\x89PNGdata" and out["image_file"] == "a.png"
    assert out["image_label"] == 2 and out["predictions"] == {"p": 1}
    np.testing.assert_array_equal(out["bboxes"], boxes)


def test_serialization_is_identical_in_another_process():
    sample = rich_sample(1) | {"image": b"xyz"}
    code = (
        "import sys; from tests.data.gtfactory import rich_sample;"
        "from antgo_mlflow.data.records import serialize_sample;"
        "sys.stdout.buffer.write(serialize_sample(rich_sample(1) | {'image': b'xyz'}))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert other == serialize_sample(sample)


def test_unencodable_value_names_the_field():
    with pytest.raises(DataError, match="'weird'"):
        serialize_sample({"weird": {1, 2}})


def test_bytes_equal_protobufs_deterministic_serialization():
    from antgo_mlflow.data.records import encode_features, example_pb2, with_antgo_defaults

    kinds = {"bytes": "bytes_list", "int": "int64_list", "float": "float_list"}
    samples = [
        {"b": 1, "a": "x", "aa": 2, "B": 3, "a_b": -7, "big": 2**40, "f": [0.5, -1.25]},
        with_antgo_defaults(rich_sample(2) | {"image": b"\x00" * 300, "scalar": np.zeros(())}),
    ]
    for sample in samples:
        example = example_pb2().Example()
        for key, (kind, values) in encode_features(sample).items():
            getattr(example.features.feature[key], kinds[kind]).value.extend(values)
        assert serialize_sample(sample) == example.SerializeToString(deterministic=True)
