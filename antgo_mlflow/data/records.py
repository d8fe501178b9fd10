"""antgo's record encoding: a standard-GT sample (+ image bytes) <-> one serialized tf.train.Example.

The encoding is antgo's (``antgo/dataflow/datasetio.py::TFDataWriter``), so antgo's shards decode
here and ours decode in antgo:

===========================  ===============================================================
python value                 features written
===========================  ===============================================================
``str``                      ``k`` = UTF-8 bytes (bytes_list)
``bytes`` (``image``)        ``k`` = the original encoded PNG/JPEG bytes, never decoded
``bool`` / ``int``           ``k`` = int64_list [v]  (a bool becomes 0/1, as in antgo)
``float``                    ``k`` = float_list [v]  (float32 precision, as in antgo)
numeric list / ndarray       ``k`` = ``arr.tobytes()``; ``__k_shape`` = shape (int64_list);
                             ``__k_type`` = 0 f32, 1 i32, 2 i64, 3 i8, 4 u8
``dict``                     ``k`` = JSON bytes; plus ``__k_json`` = [1]
===========================  ===============================================================

Lists follow antgo's conversion: empty list -> empty float32 array; ints -> int64; floats ->
float32; bools -> int8. Where antgo lost information we add marker features that antgo ignores
(its reader only extracts the keys of its description), so antgo still reads the rest:

- ``__k_json`` = [1] (int64): ``k`` holds UTF-8 JSON. Used for dicts, string lists (antgo dropped
  them), ``None`` and lists mixing strings, dicts or numbers of different nesting depth.
- ``__k_exact`` (bytes): a ragged numeric list (polygons of different lengths, empty sub-lists
  among full ones). ``k`` is still written as the zero-padded numeric array antgo expects, and
  ``__k_exact`` holds the exact JSON, which this decoder returns.
- ``__k_bytes`` = [1] (int64): ``k`` is raw bytes other than ``image`` (kept as bytes on read).

Records are serialized with ``deterministic=True`` (sorted feature map), so the same sample gives
the same bytes in every process. Nothing is pickled.
"""

from __future__ import annotations

import functools
import json
import os
import struct
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError

#: antgo's ``__k_type`` codes.
TYPE_CODES: dict[int, np.dtype] = {
    0: np.dtype(np.float32),
    1: np.dtype(np.int32),
    2: np.dtype(np.int64),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint8),
}
_CODE_OF = {dtype: code for code, dtype in TYPE_CODES.items()}

#: antgo's per-sample template at HEAD (``antgo/resource/templates/sample_gt.json``). With
#: ``antgo_template=True`` the packers fill fields a sample lacks with these defaults, because
#: antgo's TFDataset, without an explicit ``description``, asks every record for every field.
ANTGO_TEMPLATE: dict[str, Any] = {
    "image_url": "",
    "image_file": "",
    "semantic_file": "",
    "semantic_url": "",
    "height": 0,
    "width": 0,
    "image_label": -1,
    "image_label_name": "",
    "view_num": 0,
    "view_id": "-1",
    "cam_name": "",
    "tag": "",
    "clip_tag": "",
    "timestamp": "",
    "bboxes": [],
    "box_visibility": [],
    "labels": [],
    "has_bboxes3d": False,
    "bboxes3d_trans": [],
    "bboxes3d_rotation": [],
    "bboxes3d_size": [],
    "has_joints2d": [],
    "joints2d": [],
    "joints_vis": [],
    "has_joints3d": [],
    "joints3d": [],
    "segments": [],
    "has_dof": [],
    "pose": [],
    "trans": [],
    "shape": [],
    "has_cam_param": False,
    "cam_param": {},
    "predictions": {},
}


def with_antgo_defaults(sample: dict[str, Any]) -> dict[str, Any]:
    """``sample`` plus antgo's template defaults for the fields it lacks (sample values win)."""
    out = {k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in ANTGO_TEMPLATE.items()}
    out.update(sample)
    return out


#: Fields antgo stores as JSON dicts without any marker (decoded as dicts when no marker says so).
ANTGO_DICT_FIELDS = frozenset({"cam_param", "predictions", "other"})
#: Fields that stay raw bytes on read.
BYTES_FIELDS = frozenset({"image"})
#: Fields forced to float32 on read, as antgo's reader does.
FLOAT32_FIELDS = frozenset({"bboxes"})

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def example_pb2():
    """The ``tfrecord`` package's ``example_pb2`` (tf.train.Example), loaded without the package.

    ``import tfrecord`` imports torch (~2.5 s); the proto module alone needs only protobuf. If
    ``tfrecord.example_pb2`` is already imported it is reused (same descriptor pool, same classes).
    """
    global _EXAMPLE_PB2
    if _EXAMPLE_PB2 is None:
        import importlib.util
        import sys

        module = sys.modules.get("tfrecord.example_pb2")
        if module is None:
            spec = importlib.util.find_spec("tfrecord")
            if spec is None or spec.origin is None:
                from antgo_mlflow.errors import MissingDependencyError

                raise MissingDependencyError("tfrecord is not installed: pip install tfrecord")
            path = os.path.join(os.path.dirname(spec.origin), "example_pb2.py")
            file_spec = importlib.util.spec_from_file_location("_antgo_tfrecord_example_pb2", path)
            module = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(module)
        _EXAMPLE_PB2 = module
    return _EXAMPLE_PB2


_EXAMPLE_PB2 = None


class _NotNumeric(Exception):
    pass


def _shape_and_kind(value: Any, depth_shapes: list[int], depth: int, kinds: set) -> int:
    """Walk a nested list: record the max length per depth and the leaf kinds; return leaf depth."""
    if isinstance(value, (list, tuple)):
        if len(depth_shapes) <= depth:
            depth_shapes.append(0)
        depth_shapes[depth] = max(depth_shapes[depth], len(value))
        leaf_depths = {_shape_and_kind(v, depth_shapes, depth + 1, kinds) for v in value}
        leaf_depths.discard(-1)  # empty sub-lists fit any depth (antgo pads them)
        if len(leaf_depths) > 1:
            raise _NotNumeric("mixed nesting depth")
        return leaf_depths.pop() if leaf_depths else -1
    if isinstance(value, bool):
        kinds.add("bool")
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _NotNumeric("integer outside int64")
        kinds.add("int")
    elif isinstance(value, float):
        kinds.add("float")
    else:
        raise _NotNumeric(type(value).__name__)
    return depth


def _fill(out: np.ndarray, value: list, index: tuple) -> bool:
    """Copy a nested list into the zero array ``out``; return True if anything was padded."""
    padded = False
    full = out.shape[len(index)]
    if len(value) != full:
        padded = True
    for i, v in enumerate(value):
        if isinstance(v, (list, tuple)):
            padded |= _fill(out, v, index + (i,))
        else:
            out[index + (i,)] = v
    return padded


def list_to_array(value: list) -> tuple[np.ndarray, bool]:
    """antgo's list -> ndarray conversion, generalised: returns (array, was_ragged).

    Empty sub-lists and shorter sub-lists are zero-padded to the longest sibling (antgo padded
    only empty ones and failed on the rest). Raises ``_NotNumeric`` for non-numeric content.
    """
    if len(value) == 0:
        return np.zeros((0,), dtype=np.float32), False
    shapes: list[int] = []
    kinds: set[str] = set()
    leaf_depth = _shape_and_kind(value, shapes, 0, kinds)
    if leaf_depth == -1:  # only empty lists, e.g. [[], []]
        return np.zeros(tuple(shapes), dtype=np.float32), False
    shape = tuple(shapes[:leaf_depth])
    if "float" in kinds:
        dtype = np.float32
    elif "int" in kinds:
        dtype = np.int64
    else:
        dtype = np.int8
    out = np.zeros(shape, dtype=dtype)
    ragged = _fill(out, value, ())
    return out, ragged


def _array_features(key: str, arr: np.ndarray, features: dict) -> None:
    dtype = arr.dtype
    if dtype in (np.float64, np.float16):
        arr = arr.astype(np.float32)
    elif dtype == np.bool_:
        arr = arr.astype(np.int8)
    elif dtype.kind in "iu" and dtype not in _CODE_OF:
        arr = arr.astype(np.int64)
    elif dtype.kind == "f" and dtype not in _CODE_OF:
        arr = arr.astype(np.float32)
    if arr.dtype not in _CODE_OF:  # strings, objects: keep them as a JSON list
        _json_features(key, arr.tolist(), features)
        return
    arr = np.ascontiguousarray(arr)
    features[key] = ("bytes", [arr.tobytes()])
    features[f"__{key}_shape"] = ("int", list(arr.shape))
    features[f"__{key}_type"] = ("int", [_CODE_OF[arr.dtype]])


def _json_features(key: str, value: Any, features: dict) -> None:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise DataError(f"field {key!r}: cannot be encoded as JSON ({exc})") from None
    features[key] = ("bytes", [text.encode("utf-8")])
    features[f"__{key}_json"] = ("int", [1])


def encode_features(sample: dict[str, Any]) -> dict[str, tuple[str, list]]:
    """Map a sample dict to ``{feature name: (kind, values)}``, kind in bytes/int/float."""
    features: dict[str, tuple[str, list]] = {}
    for key, value in sample.items():
        if not isinstance(key, str) or key.startswith("__"):
            raise DataError(f"field {key!r}: names must be strings not starting with '__'")
        if isinstance(value, str):
            features[key] = ("bytes", [value.encode("utf-8")])
        elif isinstance(value, (bytes, bytearray, memoryview)):
            features[key] = ("bytes", [bytes(value)])
            if key not in BYTES_FIELDS:
                features[f"__{key}_bytes"] = ("int", [1])
        elif isinstance(value, (bool, np.bool_)):
            features[key] = ("int", [int(value)])
        elif isinstance(value, (int, np.integer)):
            if _INT64_MIN <= int(value) <= _INT64_MAX:
                features[key] = ("int", [int(value)])
            else:
                _json_features(key, int(value), features)
        elif isinstance(value, (float, np.floating)):
            features[key] = ("float", [float(value)])
        elif isinstance(value, np.ndarray):
            _array_features(key, value, features)
        elif isinstance(value, (list, tuple)):
            if not value:  # antgo: an empty list is an empty float32 array (the common case)
                features[key] = ("bytes", [b""])
                features[f"__{key}_shape"] = ("int", [0])
                features[f"__{key}_type"] = ("int", [0])
                continue
            try:
                arr, ragged = list_to_array(list(value))
            except _NotNumeric:
                _json_features(key, list(value), features)
                continue
            _array_features(key, arr, features)
            if ragged:
                exact = json.dumps(value, separators=(",", ":")).encode("utf-8")
                features[f"__{key}_exact"] = ("bytes", [exact])
        elif isinstance(value, dict) or value is None:
            _json_features(key, value, features)
        else:
            raise DataError(f"field {key!r}: cannot encode a {type(value).__name__}")
    return features


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # int64 two's complement, as protobuf encodes negative numbers
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=8192)
def _entry_cached(key: str, kind: str, values: tuple) -> bytes:
    return _entry(key, kind, values)


def _entry(key: str, kind: str, values) -> bytes:
    """One ``Features.feature`` map entry: ``{1: key, 2: Feature}`` (proto3 wire format)."""
    if kind == "bytes":  # Feature.bytes_list (1) -> BytesList.value (1), repeated bytes
        feature = _field(0x0A, b"".join(_field(0x0A, bytes(v)) for v in values))
    elif kind == "int":  # Feature.int64_list (3) -> Int64List.value (1), packed varints
        packed = b"".join(_varint(int(v)) for v in values)
        feature = _field(0x1A, _field(0x0A, packed) if packed else b"")
    else:  # Feature.float_list (2) -> FloatList.value (1), packed little-endian float32
        packed = struct.pack(f"<{len(values)}f", *values)
        feature = _field(0x12, _field(0x0A, packed) if packed else b"")
    return _field(0x0A, _field(0x0A, key.encode("utf-8")) + _field(0x12, feature))


def _upb_key_order(item: tuple) -> bytes:
    # upb's deterministic map order: bytewise, but a key sorts AFTER its longer extensions
    # ("aa" before "a"). UTF-8 never contains 0xFF, so appending it gives exactly that order.
    return item[0].encode("utf-8") + b"\xff"


def serialize_sample(sample: dict[str, Any]) -> bytes:
    """Encode ``sample`` as serialized ``tf.train.Example`` bytes (deterministic).

    The bytes are what protobuf's ``SerializeToString(deterministic=True)`` gives (map entries
    sorted by key), written directly: building the message through the Python API costs ~10x
    more for antgo's 34-field samples. Small feature entries (defaults, tags, sizes) are cached.
    """
    entries = []
    for key, (kind, values) in sorted(encode_features(sample).items(), key=_upb_key_order):
        if kind != "bytes" or sum(len(v) for v in values) <= 64:
            try:
                entries.append(_entry_cached(key, kind, tuple(values)))
                continue
            except TypeError:  # unhashable values
                pass
        entries.append(_entry(key, kind, values))
    return _field(0x0A, b"".join(entries))


_MARKERS = ("shape", "type", "json", "exact", "bytes")


@functools.lru_cache(maxsize=4096)
def _marker_names(key: str) -> tuple[str, ...]:
    return tuple(f"__{key}_{x}" for x in _MARKERS)


def parse_example(data, keys=None) -> dict[str, Any]:
    """Parse serialized Example bytes into ``{name: list of values}`` (bytes, ints or floats).

    With ``keys`` only those features (and their ``__k_*`` markers) are extracted.
    """
    example = (_EXAMPLE_PB2 or example_pb2()).Example()
    try:
        example.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise DataError(f"not a tf.train.Example record ({exc})") from None
    fmap = example.features.feature
    raw: dict[str, Any] = {}
    if keys is None:
        for name in fmap.keys():
            raw[name] = _values(fmap[name])
        return raw
    # Plain loops, no generator: this runs for every record a DataLoader reads.
    for key in keys:
        if key in fmap:
            raw[key] = _values(fmap[key])
            for m in _marker_names(key):
                if m in fmap:
                    raw[m] = _values(fmap[m])
    return raw


def _values(feature):
    kind = feature.WhichOneof("kind")
    return [] if kind is None else getattr(feature, kind).value


def _text(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def decode_features(raw: dict[str, Any], description: dict[str, str] | None = None) -> dict:
    """Rebuild the sample dict from parsed features (see the module docstring for the rules).

    ``description`` (antgo's ``{'key': 'numpy'|'str'|'dict'|'int'|'float'|'byte'}``) is only a
    hint for shards written without markers; markers always win.
    """
    description = description or {}
    sample: dict[str, Any] = {}
    for key, values in raw.items():
        if key.startswith("__"):
            continue
        # cached names: cheaper than formatting up to four f-strings per field and record
        shape_key, type_key, json_key, exact_key, bytes_key = _marker_names(key)
        if shape_key in raw:
            exact = raw.get(exact_key)
            if exact:
                sample[key] = json.loads(exact[0])
                continue
            code = int(raw[type_key][0])
            if code not in TYPE_CODES:
                raise DataError(f"field {key!r}: unknown array type code {code}")
            shape = tuple(int(s) for s in raw[shape_key])
            arr = np.frombuffer(values[0] if values else b"", dtype=TYPE_CODES[code])
            arr = arr.reshape(shape).copy()  # writable, owns its memory
            if key in FLOAT32_FIELDS and arr.dtype != np.float32:
                arr = arr.astype(np.float32)
            sample[key] = arr
            continue
        if json_key in raw:
            sample[key] = json.loads(values[0])
            continue
        first = values[0] if len(values) else None
        if isinstance(first, bytes):
            hint = description.get(key)
            if len(values) != 1:
                sample[key] = list(values)
            elif key in BYTES_FIELDS or bytes_key in raw or hint == "byte":
                sample[key] = first
            elif hint == "dict" or (hint is None and key in ANTGO_DICT_FIELDS):
                sample[key] = json.loads(first)
            else:
                sample[key] = _text(first)
        elif len(values) == 1:
            sample[key] = int(first) if isinstance(first, int) else float(first)
        elif len(values) == 0:
            sample[key] = np.zeros((0,), dtype=np.float32)
        else:
            dtype = np.int64 if isinstance(first, int) else np.float32
            sample[key] = np.asarray(list(values), dtype=dtype)
    return sample


def decode_sample(data: bytes, description: dict[str, str] | None = None) -> dict[str, Any]:
    """Serialized Example bytes -> the sample dict."""
    return decode_features(parse_example(data), description)
