"""extract/crop: one crop per instance, clipped expanded box, shifted joints/segments, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from antgo_mlflow.errors import DataError, GTFormatError
from antgo_mlflow.gt import load_gt, new_sample, read_meta, save_gt, write_meta
from antgo_mlflow.gt.meta import default_meta
from antgo_mlflow.tools.extract_crop import crop_box, extract_crop, shift_segment
from tests.tools._extract_data import files_under, make_image, run_inprocess, write_json


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Two images; three instances with joints and both polygon encodings; meta with names."""
    root = tmp_path / "ds"
    make_image(root / "imgs" / "street.png", 100, 80)
    make_image(root / "imgs" / "park.jpg", 60, 40)
    samples = [
        new_sample(
            image_file="imgs/street.png",
            height=80,
            width=100,
            bboxes=[[20, 20, 40, 60], [90, 70, 100, 80]],
            labels=[1, 0],
            box_visibility=[1, 1],
            joints2d=[[[25, 30], [35, 50]], [[95, 75], [99, 79]]],
            joints_vis=[[1, 1], [1, 0]],
            segments=[[[20, 20], [40, 20], [40, 60]], [[90, 70, 100, 70, 100, 80]]],
        ),
        new_sample(
            image_file="imgs/park.jpg", height=40, width=60, bboxes=[[10, 10, 20, 20]], labels=[1]
        ),
        new_sample(image_file="imgs/park.jpg", height=40, width=60),  # no instances
    ]
    save_gt(root / "annotation.json", samples)
    write_meta(root, default_meta(3, ["cat", "dog"]))
    return root


def test_crop_box_grows_by_ratio_and_clips_to_the_image():
    assert crop_box([20, 20, 40, 60], 100, 80, 0.5) == (15, 10, 45, 70)
    assert crop_box([90, 70, 100, 80], 100, 80, 0.5) == (87, 67, 100, 80)  # clipped at the border
    assert crop_box([20, 20, 40, 60], 100, 80, 0.0, square=True) == (10, 20, 50, 60)
    assert crop_box([200, 200, 210, 210], 100, 80, 0.3) is None


def test_one_crop_per_instance_with_label_and_name(dataset, tmp_path):
    summary = extract_crop(dataset, tmp_path / "out", ext_ratio=0.5)
    crops = load_gt(summary.annotation)
    assert [c["image_file"] for c in crops] == [
        "images/1/street_0.png",
        "images/0/street_1.png",
        "images/1/park_0.png",
    ]
    assert [(c["image_label"], c["image_label_name"]) for c in crops] == [
        (1, "dog"),
        (0, "cat"),
        (1, "dog"),
    ]
    assert crops[0]["tag"] == "imgs/street.png" and crops[0]["crop_box"] == [15, 10, 45, 70]
    assert (crops[1]["width"], crops[1]["height"]) == (13, 13)
    assert read_meta(tmp_path / "out")["meta"]["category"] == ["cat", "dog"]
    source = np.asarray(Image.open(dataset / "imgs" / "street.png"))
    for c in crops[:2]:
        x0, y0, x1, y1 = c["crop_box"]
        pixels = np.asarray(Image.open(tmp_path / "out" / c["image_file"]))
        assert pixels.shape[:2] == (c["height"], c["width"])
        assert np.array_equal(pixels, source[y0:y1, x0:x1])


def test_box_joints_and_segments_move_into_crop_coordinates(dataset, tmp_path):
    first, second, _ = load_gt(extract_crop(dataset, tmp_path / "out", ext_ratio=0.5).annotation)
    # crop 0 starts at (15, 10)
    assert first["bboxes"] == [[5, 10, 25, 50]]
    assert first["joints2d"] == [[[10, 20], [20, 40]]]
    assert first["joints_vis"] == [[1, 1]]
    assert first["segments"] == [[[5, 10], [25, 10], [25, 50]]]
    # crop 1 starts at (87, 67); COCO flat polygons are shifted too
    assert second["segments"] == [[[3, 3, 13, 3, 13, 13]]]
    assert second["joints2d"] == [[[8, 8], [12, 12]]]
    assert shift_segment({"size": [1, 1], "counts": "x"}, 1, 1) is None


def test_same_stem_in_two_folders_does_not_collide(tmp_path):
    root = tmp_path / "ds"
    make_image(root / "a" / "x.png", 30, 30)
    make_image(root / "b" / "x.png", 30, 30)
    box = {"bboxes": [[5, 5, 10, 10]], "labels": [0], "height": 30, "width": 30}
    save_gt(
        root / "gt.json",
        [new_sample(image_file="a/x.png", **box), new_sample(image_file="b/x.png", **box)],
    )
    summary = extract_crop(root / "gt.json", tmp_path / "out")
    assert files_under(tmp_path / "out") == [
        "annotation.json",
        "images/0/x_0.png",
        "images/0/x_s1_0.png",
    ]
    assert summary.written == 2


def test_missing_image_is_skipped_and_no_instance_at_all_is_an_error(dataset, tmp_path):
    (dataset / "imgs" / "park.jpg").unlink()
    summary = extract_crop(dataset, tmp_path / "out")
    assert summary.written == 2 and summary.skipped == {"missing image file": 1}
    save_gt(dataset / "empty.json", [new_sample(image_file="imgs/street.png")])
    with pytest.raises(DataError, match="nothing to crop"):
        extract_crop(dataset / "empty.json", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_wrong_field_type_names_sample_and_field(tmp_path):
    src = write_json(
        tmp_path / "gt.json", [{"image_file": "a.png", "bboxes": [[0, 0, 1, 1]], "labels": ["cat"]}]
    )
    with pytest.raises(GTFormatError, match=r"sample 0, field 'labels'"):
        extract_crop(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_crop_prints_summary(dataset, tmp_path, capsys):
    res = run_inprocess(
        capsys,
        "tool",
        "extract/crop",
        f"--src={dataset / 'annotation.json'}",
        "--tgt",
        str(tmp_path / "c"),
    )
    assert res.code == 0, res
    assert "wrote 3 crops" in res.stdout and "nothing skipped" in res.stdout
