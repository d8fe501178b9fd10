"""Data registrations: checked on add (GT JSON or shards + index + manifest), listed, removed by tag,
and logged as mlflow.data inputs of a training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from antgo_mlflow.errors import AntgoError
from antgo_mlflow.project import data_registry as dr
from antgo_mlflow.project.projects import get_client
from tests.project.conftest import registry_state


def _gt(folder: Path, n: int = 3) -> Path:
    from PIL import Image

    from antgo_mlflow.gt import new_sample, save_gt

    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
        samples.append(new_sample(image_file=f"{i}.png", height=8, width=8, image_label=i % 2))
    return save_gt(folder / "annotation.json", samples)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """Real TFRecord shards (2 shards + index + manifest) packed from a 5-sample GT."""
    from antgo_mlflow.tools.package_tfrecord import package_tfrecord

    root = tmp_path_factory.mktemp("shards")
    package_tfrecord(str(_gt(root / "gt", 5)), root / "out", "train", num=3, workers=1)
    return str(root / "out" / "train")


def test_gt_json_is_checked_and_recorded_with_its_digest(project, tmp_path):
    gt = _gt(tmp_path / "d")
    record = dr.add_data(project, "train/label", str(gt), "batch1", num=3)
    assert record["kind"] == "gt" and record["num"] == 3 and len(record["digest"]) == 64
    dr.add_data(project, "train/label", str(gt.parent), "batch2")  # a folder with annotation.json
    listed = dr.list_data(project)
    assert [r["tag"] for r in listed["train/label"]] == ["batch1", "batch2"]
    assert listed["val"] == [] and listed["train/unlabel"] == []
    tags = get_client().get_experiment_by_name(project).tags
    assert json.loads(tags["antgo.data.train/label.batch1"])["address"] == str(gt)


def test_shards_are_verified_against_their_manifest(project, shards):
    record = dr.add_data(project, "train/unlabel", shards, "u1", num=5)
    assert record["kind"] == "shards" and record["num"] == 5
    assert record["address"] == shards
    again = dr.add_data(project, "train/unlabel", shards + "-manifest.json", "u2")
    assert again["digest"] == record["digest"] and again["address"] == shards


def test_val_and_test_hold_one_registration_and_del_removes_by_tag(project, tmp_path):
    a, b = _gt(tmp_path / "a"), _gt(tmp_path / "b", 2)
    dr.add_data(project, "val", str(a), "v1")
    dr.add_data(project, "val", str(b), "v2")
    assert [r["tag"] for r in dr.list_data(project)["val"]] == ["v2"]
    dr.add_data(project, "train/label", str(a), "t1")
    dr.delete_data(project, "train/label", "t1")
    assert dr.list_data(project)["train/label"] == []
    with pytest.raises(AntgoError, match="no train/label data with that tag"):
        dr.delete_data(project, "train/label", "t1")


def test_bad_data_is_one_clear_error_and_changes_nothing(project, shards, tmp_path):
    import shutil

    broken = tmp_path / "broken.json"
    broken.write_text('[{"image_file": 3}]')
    gt = _gt(tmp_path / "ok")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(Path(shards).parent, corrupt)
    first = sorted(corrupt.glob("train-*-tfrecord"))[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0xFF
    first.write_bytes(bytes(data))
    before = registry_state(project)
    cases = [
        (lambda: dr.add_data(project, "val", str(tmp_path / "nope.json"), "x"), "no such GT file"),
        (lambda: dr.add_data(project, "val", str(tmp_path / "nope"), "x"), "no such manifest"),
        (lambda: dr.add_data(project, "val", str(broken), "x"), "broken.json"),
        (lambda: dr.add_data(project, "val", str(corrupt / "train"), "x"), "sha256"),
        (lambda: dr.add_data(project, "val", str(gt), "x", num=9), "holds 3 samples"),
        (lambda: dr.add_data(project, "val", str(gt), "bad tag!"), "--tags"),
        (lambda: dr.add_data(project, "train", str(gt), "x"), "no such data split"),
        (lambda: dr.add_data("nosuch", "val", str(gt), "x"), "no such antgo project"),
        (lambda: dr.add_data(project, "val", "s3://bucket/x", "x"), "only local paths"),
    ]
    for call, fragment in cases:
        with pytest.raises(AntgoError) as info:
            call()
        assert fragment in str(info.value) and "\n" not in str(info.value)
    assert registry_state(project) == before


def test_registered_data_becomes_mlflow_data_inputs_of_a_run(project, make_run, shards, tmp_path):
    dr.add_data(project, "train/label", shards, "lab")
    dr.add_data(project, "test", str(_gt(tmp_path / "t")), "t")
    run_id = make_run(project, model=False)
    assert dr.log_project_datasets(run_id, project) == 2
    inputs = get_client().get_run(run_id).inputs.dataset_inputs
    seen = {
        (i.dataset.name, {t.key: t.value for t in i.tags}["mlflow.data.context"]) for i in inputs
    }
    assert seen == {("train/label:lab", "train/label"), ("test:t", "test")}
    digests = {i.dataset.name: i.dataset.digest for i in inputs}
    assert digests["train/label:lab"] == dr.list_data(project)["train/label"][0]["digest"][:32]
