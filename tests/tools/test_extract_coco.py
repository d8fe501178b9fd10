"""extract/coco: one sample per image, xyxy boxes, category mapping, crowd, segments, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from antgo_mlflow.errors import GTFormatError, UsageError
from antgo_mlflow.gt import load_gt, read_meta
from antgo_mlflow.tools.extract_coco import extract_coco
from antgo_mlflow.tools.tags import parse_tags
from tests.helpers import assert_one_line_error
from tests.tools._extract_data import files_under, make_image, run_inprocess, write_json

RLE = {"size": [60, 80], "counts": "PPYo0"}


def coco_dict() -> dict:
    """3 images (one without annotations), 3 categories with non-contiguous ids, a crowd RLE,
    polygons, keypoints and a degenerate box."""
    return {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 80, "height": 60},
            {"id": 3, "file_name": "sub/b.jpg", "width": 50, "height": 40},
            {"id": 9, "file_name": "c.jpg"},  # no size: read from the file
        ],
        "categories": [
            {"id": 18, "name": "dog"},
            {"id": 1, "name": "person", "keypoints": ["nose", "eye"], "skeleton": [[1, 2]]},
            {"id": 3, "name": "car"},
        ],
        "annotations": [
            {
                "id": 100,
                "image_id": 7,
                "category_id": 1,
                "bbox": [10, 5, 20, 30],
                "segmentation": [[10, 5, 30, 5, 30, 35], [12, 6, 14, 6, 14, 8]],
                "keypoints": [15, 10, 2, 20, 12, 1],
                "iscrowd": 0,
            },
            {
                "id": 101,
                "image_id": 7,
                "category_id": 3,
                "bbox": [0, 0, 80, 60],
                "segmentation": RLE,
                "iscrowd": 1,
            },
            {"id": 102, "image_id": 3, "category_id": 18, "bbox": [1.5, 2.5, 3, 4], "iscrowd": 0},
            {"id": 103, "image_id": 3, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},
        ],
    }


@pytest.fixture
def coco(tmp_path) -> Path:
    root = tmp_path / "coco"
    make_image(root / "images" / "a.jpg", 80, 60)
    make_image(root / "images" / "sub" / "b.jpg", 50, 40)
    make_image(root / "images" / "c.jpg", 33, 22)
    return write_json(root / "annotations" / "instances.json", coco_dict())


def _run(coco: Path, tgt: Path, **kw):
    return extract_coco(coco, tgt, images=coco.parent.parent / "images", **kw)


def test_one_sample_per_image_with_all_its_boxes_in_xyxy(coco, tmp_path):
    summary = _run(coco, tmp_path / "out")
    samples = load_gt(tmp_path / "out" / "annotation.json")
    assert [s["image_file"] for s in samples] == [
        "images/a.jpg",
        "images/sub/b.jpg",
        "images/c.jpg",
    ]
    a, b, c = samples
    assert a["bboxes"] == [[10, 5, 30, 35], [0, 0, 80, 60]]
    assert (a["width"], a["height"]) == (80, 60)
    assert b["bboxes"] == [[1.5, 2.5, 4.5, 6.5]]  # the zero-width box is dropped
    assert c["bboxes"] == [] and (c["width"], c["height"]) == (33, 22)  # kept, size from file
    assert "Dropped 1 box(es) with zero width or height." in summary.describe()
    for s in samples:  # images are placed under tgt so image_file resolves from there
        assert (tmp_path / "out" / s["image_file"]).read_bytes() == (
            coco.parent.parent / "images" / s["image_file"].removeprefix("images/")
        ).read_bytes()


def test_default_labels_follow_sorted_category_ids_and_meta_lists_names(coco, tmp_path):
    summary = _run(coco, tmp_path / "out")
    a, b, _ = load_gt(summary.annotation)
    # ids 1 (person), 3 (car), 18 (dog) -> 0, 1, 2
    assert a["labels"] == [0, 1] and b["labels"] == [2]
    meta = read_meta(tmp_path / "out")
    assert meta["meta"]["category"] == ["person", "car", "dog"]
    assert meta["meta"]["skeleton"] == [[0, 1]]
    assert meta["extent"]["total"] == 3


def test_tags_map_names_to_indices_and_drop_other_categories(coco, tmp_path):
    summary = _run(coco, tmp_path / "out", tags="car:0,person:1")
    a, b, c = load_gt(summary.annotation)
    assert a["labels"] == [1, 0]
    assert b["bboxes"] == [] and c["bboxes"] == []  # dog dropped; images kept
    assert read_meta(tmp_path / "out")["meta"]["category"] == ["car", "person"]
    assert "Dropped 1 annotation(s) of categories not in --tags." in summary.describe()


def test_crowd_kept_with_visibility_zero_and_segments_in_coco_encoding(coco, tmp_path):
    a = load_gt(_run(coco, tmp_path / "out").annotation)[0]
    assert a["box_visibility"] == [1, 0]
    assert a["iscrowd"] == [0, 1]
    assert a["segments"] == [[[10, 5, 30, 5, 30, 35], [12, 6, 14, 6, 14, 8]], RLE]
    assert a["joints2d"] == [[[15, 10], [20, 12]], []]
    assert a["joints_vis"] == [[2, 1], []]


def test_images_default_to_the_json_folder_and_are_linked_or_copied(tmp_path):
    root = tmp_path / "flat"
    make_image(root / "a.jpg", 80, 60)
    make_image(root / "sub" / "b.jpg", 50, 40)
    make_image(root / "c.jpg", 33, 22)
    src = write_json(root / "instances.json", coco_dict())
    summary = extract_coco(src, tmp_path / "out")
    assert summary.written == 3
    placed = tmp_path / "out" / "images" / "a.jpg"
    assert placed.read_bytes() == (root / "a.jpg").read_bytes()
    assert os.stat(placed).st_ino == os.stat(root / "a.jpg").st_ino  # hard link on one disk


def test_missing_image_file_is_skipped_and_counted(coco, tmp_path):
    (coco.parent.parent / "images" / "c.jpg").unlink()
    summary = _run(coco, tmp_path / "out")
    assert summary.written == 2
    assert "skipped 1 (1 missing image file): c.jpg" in summary.describe()


def test_annotation_pointing_to_a_missing_image_id_names_the_annotation(coco, tmp_path):
    data = coco_dict()
    data["annotations"].append({"id": 555, "image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1]})
    write_json(coco, data)
    with pytest.raises(GTFormatError, match="annotation id 555 points to image_id 42"):
        _run(coco, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tags_parsing_and_errors(coco, tmp_path):
    assert parse_tags("person:0,car:1") == {"person": 0, "car": 1}
    assert parse_tags("person,car") == {"person": 0, "car": 1}
    assert parse_tags("") is None
    with pytest.raises(UsageError, match="not name:index"):
        parse_tags("person:x")
    with pytest.raises(UsageError, match="every name an index"):
        parse_tags("person:0,car")
    with pytest.raises(UsageError, match="'horse' is not a category"):
        _run(coco, tmp_path / "out", tags="horse:0")


def test_cli_missing_image_id_is_one_line_and_leaves_nothing(coco, tmp_path, run_antgo):
    data = coco_dict()
    data["annotations"][2]["image_id"] = 999
    write_json(coco, data)
    images = coco.parent.parent / "images"
    res = run_antgo(
        "tool", "extract/coco", f"--src={coco}", f"--images={images}", f"--tgt={tmp_path / 'out'}"
    )
    assert_one_line_error(res, "annotation id 102", "image_id 999")
    assert files_under(tmp_path / "out") == []


@pytest.mark.parametrize(
    "text, fragments",
    [
        ('{"images": [{"id": 1, "file_', ("instances.json:1:", "truncated JSON")),
        ("[1, 2, 3]", ("not a COCO instances file", "got list")),
    ],
)
def test_cli_truncated_or_wrong_json_is_one_line(tmp_path, capsys, text, fragments):
    src = tmp_path / "instances.json"
    src.write_text(text)
    res = run_inprocess(
        capsys, "tool", "extract/coco", "--src", str(src), "--tgt", str(tmp_path / "out")
    )
    assert_one_line_error(res, *fragments)
    assert not (tmp_path / "out").exists()


def test_cli_summary_names_classes(coco, tmp_path, capsys):
    images = coco.parent.parent / "images"
    res = run_inprocess(
        capsys,
        "tool",
        "extract/coco",
        f"--src={coco}",
        f"--images={images}",
        f"--tgt={tmp_path / 'o'}",
    )
    assert res.code == 0, res
    assert "wrote 3 samples" in res.stdout and "3 boxes; 3 classes: person, car, dog." in res.stdout
    assert json.loads((tmp_path / "o" / "meta.json").read_text())["meta"]["category"][0] == "person"


def test_boxes_are_written_with_two_decimals_not_float_noise(tmp_path):
    make_image(tmp_path / "images" / "a.jpg", 200, 100)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [120.11, 30.1, 10.12, 5.3]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0.125, 1.0049, 3, 4]},
        ],
    }
    src = write_json(tmp_path / "instances.json", data)
    extract_coco(src, tmp_path / "out", images=tmp_path / "images")
    text = (tmp_path / "out" / "annotation.json").read_text()
    assert "130.23000000000002" not in text and "130.23" in text
    (sample,) = load_gt(tmp_path / "out" / "annotation.json")
    assert sample["bboxes"] == [[120.11, 30.1, 130.23, 35.4], [0.12, 1.0, 3.12, 5.0]]
