"""label/studio: Label Studio JSON export <-> GT, on fixtures in Label Studio's export format.

The fixture follows the JSON export documented by Label Studio ("Export annotations", JSON):
a list of tasks with ``id``, ``data``, ``annotations[].result[]`` (``id``, ``type``,
``from_name``, ``to_name``, ``original_width``, ``original_height``, ``image_rotation``,
``value`` in percent, ``parentID`` for related regions), ``file_upload``, ``predictions``...
"""

from __future__ import annotations

import copy
import json

import pytest

from antgo_mlflow.gt import load_gt, read_meta
from antgo_mlflow.tools import label_studio
from tests.helpers import assert_one_line_error


def _result(rid, rtype, value, w=640, h=480, **extra):
    return {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": value,
        "id": rid,
        "from_name": {"choices": "choice"}.get(rtype, "label"),
        "to_name": "image",
        "type": rtype,
        "origin": "manual",
        **extra,
    }


def _task(tid, image, results, cancelled=False):
    return {
        "id": tid,
        "annotations": [
            {
                "id": 1000 + tid,
                "completed_by": 1,
                "result": results,
                "was_cancelled": cancelled,
                "ground_truth": False,
                "created_at": "2024-03-11T02:17:00.118247Z",
                "updated_at": "2024-03-11T02:17:00.118247Z",
                "draft_created_at": None,
                "lead_time": 12.5,
                "prediction": {},
                "result_count": 0,
                "unique_id": f"u-{tid}",
                "import_id": None,
                "last_action": None,
                "task": tid,
                "project": 1,
                "updated_by": 1,
                "parent_prediction": None,
                "parent_annotation": None,
                "last_created_by": None,
            }
        ],
        "file_upload": image.rsplit("/", 1)[-1],
        "drafts": [],
        "predictions": [],
        "data": {"image": image},
        "meta": {},
        "created_at": "2024-03-11T02:16:00.000000Z",
        "updated_at": "2024-03-11T02:17:00.000000Z",
        "inner_id": tid,
        "total_annotations": 1,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 1,
        "updated_by": 1,
        "comment_authors": [],
    }


def export_tasks():
    rect = _result(
        "bb1",
        "rectanglelabels",
        {"x": 10, "y": 20, "width": 25, "height": 50, "rotation": 0, "rectanglelabels": ["Car"]},
    )
    kp1 = _result(
        "kp1",
        "keypointlabels",
        {"x": 12.5, "y": 25, "width": 0.6, "keypointlabels": ["nose"]},
        parentID="bb1",
    )
    kp2 = _result(
        "kp2",
        "keypointlabels",
        {"x": 20, "y": 30, "width": 0.6, "keypointlabels": ["eye"]},
        parentID="bb1",
    )
    poly = _result(
        "pg1",
        "polygonlabels",
        {"points": [[50, 50], [75, 50], [75, 100]], "closed": True, "polygonlabels": ["Train"]},
    )
    choice = _result("ch1", "choices", {"choices": ["Street"]})
    choice.pop("original_width"), choice.pop("original_height"), choice.pop("image_rotation")
    free_root = _result(
        "f1", "keypointlabels", {"x": 1, "y": 2, "width": 0.6, "keypointlabels": ["nose"]}
    )
    free_child = _result(
        "f2",
        "keypointlabels",
        {"x": 3, "y": 4, "width": 0.6, "keypointlabels": ["eye"]},
        parentID="f1",
    )
    return [
        _task(1, "/data/upload/1/8a3f2b1c-street.png", [rect, kp1, kp2, poly, choice]),
        _task(
            2,
            "/data/local-files/?d=images/b.jpg",
            [free_root, free_child],
        ),
        {**_task(3, "/data/upload/1/0badf00d-none.png", []), "annotations": []},
        _task(4, "/data/upload/1/12345678-cancel.png", [rect], cancelled=True),
    ]


TAGS = "Car:0,Train:1,nose:2,eye:3,Street:4"


@pytest.fixture
def export_file(tmp_path):
    path = tmp_path / "project-1-at-2024-03-11.json"
    path.write_text(json.dumps(export_tasks()))
    return path


def test_from_converts_percent_to_pixels_and_groups_keypoints(export_file, tmp_path):
    r = label_studio.from_studio(export_file, tmp_path / "out", TAGS)
    assert r["samples"] == 2 and r["skipped"] == 2
    samples = load_gt(r["gt"])
    a, b = samples
    assert a["image_file"] == "street.png" and (a["width"], a["height"]) == (640, 480)
    assert a["bboxes"][0] == [64, 96, 224, 336] and a["labels"][0] == 0
    assert (
        a["bboxes"][1] == [320, 240, 480, 480] and a["labels"][1] == 1
    )  # polygon -> enclosing box
    assert a["segments"] == [[], [[320, 240], [480, 240], [480, 480]]]
    assert (
        a["joints2d"][0][2:] == [[80, 120], [128, 144]]
        and a["joints_vis"][0] == [0, 0, 1, 1, 0][:4]
    )
    assert a["image_label"] == 4 and a["image_label_name"] == "Street"
    assert b["image_file"] == "images/b.jpg"
    assert b["joints2d"] == [[[0, 0], [0, 0], [6.4, 9.6], [19.2, 19.2]]]
    assert read_meta(tmp_path / "out")["meta"]["category"] == [
        "Car",
        "Train",
        "nose",
        "eye",
        "Street",
    ]


def test_gt_to_studio_to_gt_is_exact(export_file, tmp_path):
    first = load_gt(label_studio.from_studio(export_file, tmp_path / "a", TAGS)["gt"])
    ls = label_studio.to_studio(tmp_path / "a" / f"{export_file.stem}_label.json", tmp_path / "b")
    tasks = json.loads(open(ls["json"]).read())
    assert tasks[0]["annotations"][0]["result"][0]["type"] == "rectanglelabels"
    assert tasks[0]["annotations"][0]["result"][0]["value"]["x"] == pytest.approx(10)
    again = load_gt(label_studio.from_studio(ls["json"], tmp_path / "c", TAGS)["gt"])
    for x, y in zip(first, again):
        for field in (
            "bboxes",
            "labels",
            "segments",
            "joints2d",
            "joints_vis",
            "image_label",
            "image_label_name",
            "width",
            "height",
            "image_file",
        ):
            assert x[field] == y[field], field


def test_gt_with_odd_sizes_round_trips(tmp_path):
    from antgo_mlflow.gt import new_sample, save_gt

    s = new_sample(
        image_file="x/y.png",
        width=333,
        height=217,
        bboxes=[[1.5, 2.25, 100.125, 217]],
        labels=[1],
        segments=[[[1, 1, 50, 1, 50, 50], [60, 60, 70, 60, 70, 70]]],
    )
    save_gt(tmp_path / "gt.json", [s])
    ls = label_studio.to_studio(tmp_path / "gt.json", tmp_path / "ls", "a:0,b:1")
    back = load_gt(label_studio.from_studio(ls["json"], tmp_path / "back", "a:0,b:1")["gt"])[0]
    assert back["bboxes"] == s["bboxes"] and back["labels"] == [1]
    assert back["segments"] == s["segments"]


def test_rotation_refused_unless_allowed(tmp_path, run_antgo):
    tasks = export_tasks()[:1]
    tasks[0]["annotations"][0]["result"][0]["value"]["rotation"] = 90
    src = tmp_path / "rot.json"
    src.write_text(json.dumps(tasks))
    res = run_antgo(
        "tool",
        "label/studio",
        "--from",
        f"--src={src}",
        f"--tgt={tmp_path / 'o'}",
        f"--tags={TAGS}",
    )
    assert_one_line_error(res, "rotation=90", "--allow-rotation")
    assert not (tmp_path / "o" / "rot_label.json").exists()
    r = label_studio.from_studio(src, tmp_path / "o", TAGS, allow_rotation=True)
    # 160x240 px box rotated 90 deg clockwise around (64, 96): x in [-176, 64], clipped at 0
    assert load_gt(r["gt"])[0]["bboxes"][0] == [0, 96, 64, 256]


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (
            lambda t: t[0]["annotations"][0]["result"].append(
                _result("br", "brushlabels", {"format": "rle", "rle": [1], "brushlabels": ["Car"]})
            ),
            ["unknown result type 'brushlabels'", "task 1"],
        ),
        (
            lambda t: t[0]["annotations"][0]["result"][0]["value"].update(x=120),
            ["x=120", "[0, 100]"],
        ),
        (
            lambda t: t[0]["annotations"][0]["result"][0]["value"].update(rectanglelabels=["Bus"]),
            ["label 'Bus' is not in --tags"],
        ),
    ],
)
def test_bad_exports_fail_with_one_line(tmp_path, run_antgo, mutate, fragments):
    tasks = copy.deepcopy(export_tasks())
    mutate(tasks)
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(tasks))
    res = run_antgo(
        "tool",
        "label/studio",
        "--from",
        f"--src={src}",
        f"--tgt={tmp_path / 'o'}",
        f"--tags={TAGS}",
    )
    assert_one_line_error(res, *fragments)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_from_and_to(export_file, tmp_path, run_antgo):
    res = run_antgo(
        "tool",
        "label/studio",
        "--from",
        "--src",
        str(export_file),
        "--tgt",
        str(tmp_path / "g"),
        f"--tags={TAGS}",
    )
    assert res.code == 0, res
    assert "2 samples" in res.stdout and "2 tasks without annotation skipped" in res.stdout
    gt = tmp_path / "g" / f"{export_file.stem}_label.json"
    res = run_antgo("tool", "label/studio", "--to", f"--src={gt}", f"--tgt={tmp_path / 'l'}")
    assert res.code == 0, res
    assert (
        json.loads((tmp_path / "l" / f"{gt.stem}_label_studio.json").read_text())[1]["data"][
            "image"
        ]
        == "images/b.jpg"
    )
    res = run_antgo("tool", "label/studio", f"--src={gt}")
    assert_one_line_error(res, "--from or --to")


def test_to_on_a_coco_gt_exports_crowd_boxes_drops_rle_masks_and_keeps_the_crowd_flag(
    tmp_path, run_antgo
):
    from antgo_mlflow.tools.extract_coco import extract_coco
    from tests.tools._extract_data import make_image, write_json

    make_image(tmp_path / "images" / "a.jpg", 80, 60)
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 5, 20, 30],
                "segmentation": [[10, 5, 30, 5, 30, 35]],
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 80, 60],
                "segmentation": {"size": [60, 80], "counts": "PPYo0"},
                "iscrowd": 1,
            },
        ],
    }
    src = write_json(tmp_path / "instances.json", coco)
    extract_coco(src, tmp_path / "gt", images=tmp_path / "images")
    gt = tmp_path / "gt" / "annotation.json"
    res = run_antgo("tool", "label/studio", "--to", f"--src={gt}", f"--tgt={tmp_path / 'ls'}")
    assert res.code == 0, res
    assert "1 tasks" in res.stdout and "1 RLE masks dropped" in res.stdout
    exported = tmp_path / "ls" / "annotation_label_studio.json"
    results = json.loads(exported.read_text())[0]["annotations"][0]["result"]
    crowd = [r for r in results if r["from_name"] == "crowd"]
    assert [r["value"]["choices"] for r in crowd] == [["crowd"]]
    (region,) = [r for r in results if r["id"] == crowd[0]["id"] and r["type"] != "choices"]
    assert region["type"] == "rectanglelabels" and region["value"]["width"] == 100.0

    back = load_gt(label_studio.from_studio(exported, tmp_path / "back", "person:0")["gt"])[0]
    first = load_gt(gt)[0]
    assert back["bboxes"] == first["bboxes"] == [[10.0, 5.0, 30.0, 35.0], [0.0, 0.0, 80.0, 60.0]]
    assert back["iscrowd"] == [0, 1] and back["box_visibility"] == [1, 0]
    assert back["segments"][1] == []  # the RLE mask is what Label Studio cannot carry


def test_from_without_crowd_choices_writes_no_crowd_fields(export_file, tmp_path):
    for sample in load_gt(label_studio.from_studio(export_file, tmp_path / "o", TAGS)["gt"]):
        assert "iscrowd" not in sample or not any(sample["iscrowd"])
