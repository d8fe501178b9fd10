"""extract/samples: seeded subsets, output naming, path rebasing, --feedback, bad GT files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from antgo_mlflow.errors import UsageError
from antgo_mlflow.gt import load_gt, new_sample, resolve_image_path, save_gt
from antgo_mlflow.tools.extract_samples import extract_samples
from tests.helpers import assert_one_line_error
from tests.tools._extract_data import files_under, run_inprocess


@pytest.fixture
def gt(tmp_path) -> Path:
    samples = [
        new_sample(image_file=f"imgs/{i:03d}.jpg", height=10, width=10, tag=str(i))
        for i in range(50)
    ]
    return save_gt(tmp_path / "ds" / "annotation.json", samples)


def test_same_seed_same_subset_written_beside_src(gt):
    one = extract_samples(gt, 10, seed=3)
    assert one.annotation == gt.parent / "annotation_samples_10.json"
    first = [s["tag"] for s in load_gt(one.annotation)]
    again = [s["tag"] for s in load_gt(extract_samples(gt, 10, seed=3).annotation)]
    other = [s["tag"] for s in load_gt(extract_samples(gt, 10, seed=4).annotation)]
    assert first == again and first != other
    assert len(set(first)) == 10
    assert [int(t) for t in first] == sorted(int(t) for t in first)  # source order kept


def test_output_in_another_folder_keeps_image_paths_valid(gt, tmp_path):
    summary = extract_samples(gt, 5, tgt=tmp_path / "subsets")
    assert summary.annotation == tmp_path / "subsets" / "annotation_samples_5.json"
    for s in load_gt(summary.annotation, inside=False):
        assert s["image_file"].startswith("../ds/imgs/")
        assert (
            resolve_image_path(summary.annotation, s, extra_roots=gt.parent).resolve()
            == (gt.parent / "imgs" / f"{int(s['tag']):03d}.jpg").resolve()
        )


def test_text_files_are_sampled_by_line(tmp_path):
    src = tmp_path / "list.txt"
    src.write_text("\n".join(f"line{i}" for i in range(20)) + "\n")
    summary = extract_samples(src, 4, seed=1)
    lines = (tmp_path / "list_samples_4.txt").read_text().splitlines()
    assert summary.annotation.name == "list_samples_4.txt" and len(lines) == 4
    assert all(line.startswith("line") for line in lines)


def test_num_larger_than_available_is_a_usage_error(gt):
    with pytest.raises(UsageError, match="--num=51 is larger than the 50 samples"):
        extract_samples(gt, 51)
    assert files_under(gt.parent) == ["annotation.json"]


def test_cli_feedback_prints_keys_and_one_sample(gt, capsys):
    res = run_inprocess(
        capsys, "tool", "extract/samples", f"--src={gt}", "--num", "3", "--feedback"
    )
    assert res.code == 0, res
    assert (
        f"wrote 3 of 50 samples (seed 0) to {gt.parent / 'annotation_samples_3.json'}" in res.stdout
    )
    assert "keys: bboxes, box_visibility, height, image_file" in res.stdout
    example = json.loads(res.stdout.split("sample:\n", 1)[1])
    assert example["image_file"].startswith("imgs/")


def test_cli_num_larger_than_available_is_one_line(gt, run_antgo):
    res = run_antgo("tool", "extract/samples", f"--src={gt}", "--num=500")
    assert_one_line_error(res, "--num=500", "50 samples")
    assert files_under(gt.parent) == ["annotation.json"]


@pytest.mark.parametrize(
    "text, fragments",
    [
        ('[{"image_file": "a.jpg", "height": 1', ("bad.json:1:", "truncated JSON")),
        ('{"samples": []}', ("bad.json", "expected a JSON list of samples")),
        ('[{"image_file": "a.jpg", "height": "tall"}]', ("bad.json", "sample 0, field 'height'")),
    ],
    ids=["truncated", "not-a-list", "wrong-field-type"],
)
def test_cli_bad_gt_files_are_one_line_and_write_nothing(tmp_path, capsys, text, fragments):
    src = tmp_path / "bad.json"
    src.write_text(text)
    res = run_inprocess(capsys, "tool", "extract/samples", f"--src={src}", "--num=1")
    assert_one_line_error(res, *fragments)
    assert files_under(tmp_path) == ["bad.json"]


def test_cli_missing_src_path_is_one_line(tmp_path, capsys):
    res = run_inprocess(
        capsys, "tool", "extract/samples", f"--src={tmp_path / 'nope.json'}", "--num=1"
    )
    assert_one_line_error(res, "nope.json", "no such file or folder")
