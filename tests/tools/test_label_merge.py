"""label/merge: merge by image_file, union instances, report conflicts, merge meta categories."""

from __future__ import annotations

import json

from antgo_mlflow.gt import load_gt, new_sample, read_meta, save_gt, write_meta
from antgo_mlflow.gt.meta import default_meta
from tests.helpers import assert_one_line_error


def _write(folder, samples, cats):
    save_gt(folder / "annotation.json", samples)
    write_meta(folder, default_meta(len(samples), cats))
    return folder / "annotation.json"


def test_merge_unions_instances_and_reports_conflicts(tmp_path, run_antgo):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = _write(
        tmp_path / "a",
        [
            new_sample(
                image_file="../img/x.png",
                width=10,
                height=10,
                image_label=0,
                bboxes=[[0, 0, 5, 5]],
                labels=[0],
            ),
            new_sample(image_file="../img/y.png", width=10, height=10),
        ],
        ["car", "bus"],
    )
    b = _write(
        tmp_path / "b",
        [
            new_sample(
                image_file="../img/x.png",
                width=10,
                height=10,
                image_label=1,
                bboxes=[[0, 0, 5, 5], [1, 1, 9, 9]],
                labels=[0, 2],
                joints2d=[[[1, 1]], [[2, 2]]],
                joints_vis=[[1], [1]],
            ),
            new_sample(image_file="../img/z.png", width=10, height=10),
        ],
        ["car", "bus", "train"],
    )
    res = run_antgo("tool", "label/merge", f"--src={a},{b}", f"--tgt={tmp_path / 'm'}")
    assert res.code == 0, res
    assert "1 conflicts" in res.stderr
    merged = load_gt(tmp_path / "m" / "annotation.json", inside=False)
    assert [s["image_file"] for s in merged] == ["../img/x.png", "../img/y.png", "../img/z.png"]
    x = merged[0]
    assert x["bboxes"] == [[0, 0, 5, 5], [1, 1, 9, 9]] and x["labels"] == [0, 2]
    assert x["joints2d"] == [[[1, 1]], [[2, 2]]]  # filled in from b, aligned per instance
    assert x["image_label"] == 0  # first file kept
    conflicts = json.loads((tmp_path / "m" / "merge_conflicts.json").read_text())
    assert conflicts[0]["field"] == "image_label" and conflicts[0]["other"] == 1
    meta = read_meta(tmp_path / "m")
    assert meta["meta"]["category"] == ["car", "bus", "train"] and meta["extent"]["total"] == 3


def test_conflicting_class_indices_refused_then_remapped(tmp_path, run_antgo):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = _write(
        tmp_path / "a",
        [new_sample(image_file="x.png", bboxes=[[0, 0, 1, 1]], labels=[1])],
        ["car", "bus"],
    )
    b = _write(
        tmp_path / "b",
        [new_sample(image_file="y.png", bboxes=[[0, 0, 1, 1]], labels=[0])],
        ["bus", "car"],
    )
    res = run_antgo("tool", "label/merge", f"--src={a},{b}", f"--tgt={tmp_path / 'm'}")
    assert_one_line_error(res, "class index 0 is 'bus'", "--remap")
    assert not (tmp_path / "m").exists()
    res = run_antgo("tool", "label/merge", f"--src={a},{b}", f"--tgt={tmp_path / 'm'}", "--remap")
    assert res.code == 0, res
    merged = load_gt(tmp_path / "m" / "annotation.json", inside=False)
    assert [s["labels"] for s in merged] == [[1], [1]]  # both are 'bus' in the merged list
    assert read_meta(tmp_path / "m")["meta"]["category"] == ["car", "bus"]


def test_merge_needs_two_files(tmp_path, run_antgo):
    res = run_antgo(
        "tool", "label/merge", f"--src={tmp_path / 'a.json'}", f"--tgt={tmp_path / 'm'}"
    )
    assert_one_line_error(res, "at least two")
