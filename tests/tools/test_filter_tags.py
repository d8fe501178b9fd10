"""filter/tags: keep samples with ALL --tags and NONE of --no-tags, from a browser result JSON."""

from __future__ import annotations

import json

import pytest

from antgo_mlflow.gt import load_gt, new_sample, save_gt
from tests.helpers import assert_one_line_error


@pytest.fixture
def gt_and_record(tmp_path):
    samples = [new_sample(image_file=f"img{i}.png", width=8, height=8) for i in range(4)]
    save_gt(tmp_path / "annotation.json", samples)
    record = {
        "dataset": "antgo-annotation",
        "tags": ["valid", "invalid", "night"],
        "samples": [
            {"index": 0, "image_file": "img0.png", "tags": ["valid"]},
            {"index": 1, "image_file": "img1.png", "tags": ["valid", "night"]},
            {"index": 2, "image_file": "img2.png", "tags": ["invalid"]},
            {"index": 3, "image_file": "img3.png", "tags": []},
        ],
    }
    (tmp_path / "annotation_browser.json").write_text(json.dumps(record))
    return tmp_path


def _kept(path):
    return [s["image_file"] for s in load_gt(path)]


def test_keeps_samples_with_all_tags_and_none_of_no_tags(gt_and_record, run_antgo):
    d = gt_and_record
    res = run_antgo(
        "tool",
        "filter/tags",
        f"--src={d / 'annotation.json'}",
        f"--tgt={d / 'annotation_browser.json'}",
        "--tags=valid",
    )
    assert res.code == 0, res
    assert "kept 2 of 4" in res.stdout
    # superset tags are kept (antgo's exact-set match would drop img1)
    assert _kept(d / "annotation_filter_tags.json") == ["img0.png", "img1.png"]
    res = run_antgo(
        "tool",
        "filter/tags",
        "--src",
        str(d / "annotation.json"),
        "--tgt",
        str(d / "annotation_browser.json"),
        "--tags=valid",
        "--no-tags=night",
    )
    assert _kept(d / "annotation_filter_tags.json") == ["img0.png"]
    res = run_antgo(
        "tool",
        "filter/tags",
        f"--src={d / 'annotation.json'}",
        f"--tgt={d / 'annotation_browser.json'}",
        "--no-tags=valid,invalid",
    )
    assert _kept(d / "annotation_filter_tags.json") == ["img3.png"]


def test_reads_antgo_browser_download_format(gt_and_record):
    from antgo_mlflow.tools.filter_tags import filter_by_tags

    d = gt_and_record
    antgo_record = {"a": [{"id": 2, "tag": ["invalid"]}], "b": [{"id": 0, "tag": ["valid"]}]}
    (d / "old.json").write_text(json.dumps(antgo_record))
    r = filter_by_tags(d / "annotation.json", d / "old.json", tags="invalid")
    assert r["kept"] == 1 and _kept(r["out"]) == ["img2.png"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--tags=valid", "--no-tags=valid"], ["--tags and --no-tags both name"]),
        ([], ["give --tags and/or --no-tags"]),
        (["--tags=vaild"], ["tag 'vaild' is not one of the review tags", "valid, invalid, night"]),
    ],
)
def test_bad_flags_fail_with_one_line(gt_and_record, run_antgo, args, fragments):
    d = gt_and_record
    res = run_antgo(
        "tool",
        "filter/tags",
        f"--src={d / 'annotation.json'}",
        f"--tgt={d / 'annotation_browser.json'}",
        *args,
    )
    assert_one_line_error(res, *fragments)
    assert not (d / "annotation_filter_tags.json").exists()


def test_record_naming_unknown_image_fails(gt_and_record, run_antgo):
    d = gt_and_record
    (d / "bad.json").write_text(
        json.dumps({"samples": [{"image_file": "nope.png", "tags": ["valid"]}]})
    )
    res = run_antgo(
        "tool",
        "filter/tags",
        f"--src={d / 'annotation.json'}",
        f"--tgt={d / 'bad.json'}",
        "--tags=valid",
    )
    assert_one_line_error(res, "nope.png", "not in the GT file")


def test_cli_and_tools_modules_do_not_import_fiftyone():
    import subprocess
    import sys

    code = (
        "import sys, antgo_mlflow.cli.review, antgo_mlflow.tools.filter_tags, "
        "antgo_mlflow.tools.label_studio, antgo_mlflow.tools.label_merge, antgo_mlflow.review; "
        "assert 'fiftyone' not in sys.modules and 'mlflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
