"""Data stays inside its dataset: every tool that reads images refuses image_file outside it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from antgo_mlflow.gt import new_sample, save_gt
from tests.helpers import assert_one_line_error
from tests.tools._extract_data import files_under, make_image, run_inprocess

CONSUMERS = {
    "package/tfrecord": lambda src, out: ["tool", "package/tfrecord", f"--src={src}",
                                          f"--tgt={out}", "--prefix=p"],
    "package/kv": lambda src, out: ["tool", "package/kv", f"--src={src}", f"--tgt={out}",
                                    "--prefix=p"],
    "extract/crop": lambda src, out: ["tool", "extract/crop", f"--src={src}", f"--tgt={out}"],
}  # fmt: skip


def _dataset(tmp_path, kind: str):
    """A dataset folder whose second sample's image lies outside it (in ``kind``'s way)."""
    ds = tmp_path / "ds"
    make_image(ds / "in.png", 16, 12)
    secret = make_image(tmp_path / "private" / "secret.png", 16, 12, seed=3)
    if kind == "dotdot":
        name = "../private/secret.png"
    elif kind == "absolute":
        name = str(secret)
    else:  # a symlink inside the dataset that points out of it
        os.symlink(secret, ds / "link.png")
        name = "link.png"
    box = {"bboxes": [[1, 1, 8, 8]], "labels": [0]}
    save_gt(
        ds / "annotation.json",
        [new_sample(image_file="in.png", **box), new_sample(image_file=name, **box)],
    )
    return ds, name


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_image_file_outside_dataset_is_refused(tmp_path, capsys, consumer, kind):
    ds, name = _dataset(tmp_path, kind)
    out = tmp_path / "out"
    res = run_inprocess(capsys, *CONSUMERS[consumer](ds / "annotation.json", out))
    assert_one_line_error(res, "sample 1", "outside the dataset folder", "--data-root")
    assert files_under(out) == []


def test_data_root_opts_in_to_images_elsewhere(tmp_path, capsys, monkeypatch):
    ds, _ = _dataset(tmp_path, "dotdot")
    res = run_inprocess(
        capsys, *CONSUMERS["package/tfrecord"](ds, tmp_path / "a"), f"--data-root={tmp_path}"
    )
    assert res.code == 0, res
    assert "packed 2 samples" in res.stdout
    monkeypatch.setenv("ANTGO_DATA_ROOTS", str(tmp_path / "private"))
    res = run_inprocess(capsys, *CONSUMERS["extract/crop"](ds, tmp_path / "b"))
    assert res.code == 0, res
    assert len(files_under(tmp_path / "b" / "images")) == 2


def test_pseudo_label_refuses_image_outside_dataset(tmp_path):
    """Through the entry point: the input is read (and refused) before any model is loaded."""
    ds, _ = _dataset(tmp_path, "symlink")
    proc = subprocess.run(
        [sys.executable, "-m", "antgo_mlflow.entrypoints.pseudo_label",
         "--models", str(tmp_path / "m.onnx"), "--input", str(ds),
         "--output", str(tmp_path / "pl")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "sample 1" in lines[0] and "outside the dataset folder" in lines[0]
    assert not (tmp_path / "pl").exists()


def test_symlink_inside_the_dataset_is_fine(tmp_path, capsys):
    ds = tmp_path / "ds"
    make_image(ds / "img" / "a.png", 16, 12)
    os.symlink(ds / "img", ds / "alias")
    save_gt(ds / "annotation.json", [new_sample(image_file="alias/a.png")])
    res = run_inprocess(capsys, *CONSUMERS["package/kv"](ds, tmp_path / "kv"))
    assert res.code == 0, res
