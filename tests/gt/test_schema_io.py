"""Standard GT format: load list and line variants, validate with index+field, atomic save, meta."""

import json
import os

import pytest

from antgo_mlflow.errors import DataError, GTFormatError
from antgo_mlflow.gt import (
    default_meta,
    load_gt,
    new_sample,
    read_meta,
    save_gt,
    validate_samples,
    write_meta,
)


def test_round_trip_keeps_unknown_fields(tmp_path):
    samples = [
        new_sample(image_file="a.png", height=4, width=5, bboxes=[[0, 0, 2, 3]], labels=[1]),
        new_sample(image_file="b.png", image_label=2, my_field={"x": [1, 2]}),
    ]
    path = save_gt(tmp_path / "annotation.json", samples)
    loaded = load_gt(path)
    assert loaded[1]["my_field"] == {"x": [1, 2]}
    assert loaded[0]["bboxes"] == [[0, 0, 2, 3]]
    assert all(s["schema_version"] == 1 for s in loaded)
    assert load_gt(tmp_path) == loaded  # a folder means its annotation.json


def test_line_variant_loads(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text("\n".join(json.dumps(new_sample(image_file=f"{i}.png")) for i in range(3)))
    assert [s["image_file"] for s in load_gt(path)] == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"image_file": "a.png"', "invalid or truncated JSON"),
        ('{"samples": []}', "expected a JSON list"),
        ("", "empty file"),
        ('[{"image_file": "a.png", "height": "10"}]', "sample 0, field 'height'"),
        (
            '[{"image_file": "a.png"}, {"image_file": "b.png", "bboxes": [[5, 0, 1, 2]]}]',
            "sample 1, field 'bboxes'",
        ),
        (
            '[{"image_file": "a.png", "bboxes": [[0, 0, 1, 1]], "labels": [1, 2]}]',
            "sample 0, field 'labels'",
        ),
        ('[{"height": 3}]', "sample 0: needs a non-empty 'image_file'"),
    ],
)
def test_bad_files_name_index_and_field(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(GTFormatError, match=message):
        load_gt(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_gt(tmp_path / "nope.json")


def test_failed_save_leaves_old_file(tmp_path):
    path = save_gt(tmp_path / "annotation.json", [new_sample(image_file="a.png")])
    before = path.read_bytes()
    with pytest.raises(GTFormatError):
        save_gt(path, [new_sample(image_file="a.png", width=-1)])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["annotation.json"]


def test_meta_round_trip_and_bad_category(tmp_path):
    meta = default_meta(total=3, category=["cat", "dog"])
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path)["meta"]["category"] == ["cat", "dog"]
    assert read_meta(tmp_path / "elsewhere") is None
    (tmp_path / "meta.json").write_text('{"meta": {"category": "cat"}}')
    with pytest.raises(GTFormatError, match="meta.category"):
        read_meta(tmp_path)


def test_validate_accepts_rle_and_polygons():
    validate_samples(
        [
            new_sample(
                image_file="a.png",
                bboxes=[[0, 0, 4, 4], [1, 1, 2, 2]],
                labels=[0, 1],
                segments=[[[0, 0], [4, 0], [4, 4]], {"size": [4, 4], "counts": "abc"}],
                joints2d=[[[1, 1], [2, 2]], []],
                joints_vis=[[1, 1], []],
            )
        ]
    )
