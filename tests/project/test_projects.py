"""Projects as MLflow experiments: create/list/show, exps (scaffold + record), run tables, train."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest

from antgo_mlflow.errors import AntgoError, TrackingError, UsageError
from antgo_mlflow.project import experiments as ex
from antgo_mlflow.project import projects as pj
from antgo_mlflow.project.data_registry import add_data
from antgo_mlflow.project.summary import describe_project, projects_overview


def test_create_project_records_settings_in_tags_and_lists_it(store, tmp_path):
    exp = pj.create_project(
        name="mycls",
        git="https://example.com/me/mycls.git",
        image="img:1",
        auto=True,
        metric="val/loss",
    )
    tags = exp.tags
    assert tags["antgo.project"] == "mycls" and tags["antgo.kind"] == "project"
    assert (tags["antgo.git"], tags["antgo.image"], tags["antgo.auto"]) == (
        "https://example.com/me/mycls.git",
        "img:1",
        "true",
    )
    assert (tags["antgo.metric"], tags["antgo.metric_mode"]) == ("val/loss", "min")
    assert "mycls" in [row["project"] for row in projects_overview()]
    assert not (tmp_path / "mycls").exists()  # nothing cloned without --clone
    info = describe_project("mycls")
    assert info["metric"] == {"name": "val/loss", "mode": "min"}
    assert info["roles"] == {"product": [], "expert": [], "baseline": []}
    assert set(info["data"]) == {"train/label", "train/unlabel", "val", "test"}


def test_name_defaults_to_the_git_basename_and_clone_uses_git(store, tmp_path):
    repo = tmp_path / "src" / "detector"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("hi")
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    exp = pj.create_project(git=str(repo), clone=True)  # the name is the repository's basename
    assert exp.name == "detector" and exp.tags["antgo.git"] == str(repo)
    assert (tmp_path / "detector" / "README.md").read_text() == "hi"
    assert pj.git_basename("git@github.com:me/yolo.git") == "yolo"
    assert pj.git_basename("https://h/x/seg/") == "seg"


def test_duplicate_unknown_and_bad_names_are_one_line_errors(store, tmp_path):
    name = f"dup{uuid.uuid4().hex[:8]}"
    pj.create_project(name=name)
    with pytest.raises(TrackingError, match="already exists"):
        pj.create_project(name=name)
    with pytest.raises(TrackingError, match="no such antgo project"):
        pj.get_project(name + "zz")
    with pytest.raises(UsageError, match="--name"):
        pj.create_project(name="bad name")
    with pytest.raises(UsageError, match="git clone failed"):
        pj.create_project(name=name + "c", git=str(tmp_path / "no-repo"), clone=True)
    assert pj.get_client().get_experiment_by_name(name + "c") is None
    # a plain MLflow experiment of that name is adopted, not duplicated
    plain = pj.get_client().create_experiment(name + "plain")
    assert pj.create_project(name=name + "plain").experiment_id == plain


def test_show_exp_table_is_sorted_by_the_project_metric(project, make_run):
    low = make_run(project, metrics={"top_1": 0.2, "loss": 1.0}, model=False)
    high = make_run(project, exp="e2", metrics={"top_1": 0.8}, model=False)
    none = make_run(project, metrics={}, model=False, status="FAILED")
    rows = ex.runs_table(project)
    assert [r["id"] for r in rows] == [high, low, none]
    assert rows[0]["exp"] == "e2" and rows[0]["metrics"]["top_1"] == 0.8
    assert rows[1]["params"] == {"lr": "0.1"} and rows[2]["status"] == "FAILED"
    assert [r["id"] for r in ex.runs_table(project, metric="loss")][0] == low
    assert [r["id"] for r in ex.runs_table(project, exp="e1")] == [low, none]
    assert {k: v["id"] for k, v in ex.best_runs(project).items()} == {"e1": low, "e2": high}


def test_create_exp_scaffolds_records_and_marks_the_folder(project, tmp_path):
    record = ex.create_exp(project, "mycls1", tgt=tmp_path)  # the real `create mvp` scaffold
    root = tmp_path  # the project root: exps side by side, as in antgo's tutorial
    assert record["folder"] == str(root) and (root / "mycls1" / "main.py").is_file()
    assert "mycls1" in ex.list_exps(project)
    mlproject = root / "MLproject"
    assert ex.read_marker(mlproject) == {"project": project}
    assert ex.find_marker(root / "mycls1" / "configs") == {"project": project}
    assert ex.exp_folder(project, "mycls1", pj.get_project(project), cwd=tmp_path) == root
    from mlflow.projects._project_spec import load_project

    spec = load_project(str(mlproject.parent))  # still a valid MLproject
    assert spec._entry_points["train"].parameters["exp"].default == "mycls1"
    with pytest.raises(TrackingError, match="already has this exp"):
        ex.create_exp(project, "mycls1", tgt=tmp_path)
    install = (root / "install.sh").read_text()
    (root / "install.sh").write_text(install + "# my step\n")
    ex.create_exp(project, "mycls2", tgt=tmp_path)  # beside mycls1, shared files kept
    assert (root / "mycls2" / "main.py").is_file() and (root / "mycls1" / "main.py").is_file()
    assert (root / "install.sh").read_text().endswith("# my step\n")
    assert ex.read_marker(mlproject) == {"project": project}
    assert ex.exp_folder(project, "mycls2", pj.get_project(project), cwd=tmp_path) == root
    assert set(ex.list_exps(project)) >= {"mycls1", "mycls2"}
    (tmp_path / "mycls3").mkdir()
    (tmp_path / "mycls3" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        ex.create_exp(project, "mycls3", tgt=tmp_path)
    assert "mycls3" not in ex.list_exps(project)
    assert (tmp_path / "mycls3" / "notes.txt").read_text() == "mine"


def test_create_exp_of_another_project_in_a_root_is_refused(project, tmp_path):
    from antgo_mlflow.project.projects import create_project

    ex.create_exp(project, "mycls1", tgt=tmp_path)
    other = create_project(name=project + "b", metric="top_1")
    other = other if isinstance(other, str) else project + "b"
    with pytest.raises(UsageError, match=f"holds exps of project {project}"):
        ex.create_exp(other, "mycls9", tgt=tmp_path)
    assert not (tmp_path / "mycls9").exists()


_TRAIN = """
import os, sys
if sys.argv[1] == "boom":  # fail before the (slow) mlflow import
    raise SystemExit(3)
import mlflow
with mlflow.start_run():
    mlflow.log_param("cuda", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    mlflow.log_metric("top_1", 0.5)
"""


def test_train_runs_the_exp_mlproject_into_the_project(project, tmp_path):
    folder = tmp_path / "e1"
    folder.mkdir()
    (folder / "train.py").write_text(_TRAIN)
    (folder / "MLproject").write_text(
        textwrap.dedent(
            f"""
            name: e1
            entry_points:
              train:
                parameters:
                  lr: {{type: string, default: "0.1"}}
                command: "{sys.executable} train.py {{lr}}"
            """
        )
    )
    gt = tmp_path / "val.json"
    gt.write_text('[{"image_file": "a.png", "height": 4, "width": 4}]')
    add_data(project, "val", str(gt), "v1")
    result = ex.train(project, "e1", gpu_id="0", params={"lr": "0.05"})
    run = pj.get_client().get_run(result["run_id"])
    assert run.info.status == "FINISHED" and result["status"] == "FINISHED"
    assert run.info.experiment_id == pj.get_project(project).experiment_id
    assert run.data.tags["antgo.project"] == project and run.data.tags["antgo.exp"] == "e1"
    assert run.data.params["lr"] == "0.05" and run.data.params["cuda"] == "0"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "val:v1" and dataset.tags[0].value == "val"
    with pytest.raises(TrackingError, match="failed") as info:
        ex.train(project, "e1", params={"lr": "boom"})
    failed = str(info.value).split()[2]  # "train run <id> of exp ..."
    assert pj.get_client().get_run(failed).info.status == "FAILED"
    with pytest.raises(UsageError, match="no MLproject"):
        ex.train(project, "e9")
    with pytest.raises(AntgoError, match="no entry point"):
        ex.train(project, "e1", entry_point="export")


_TRAIN_CONFIG = """
import sys
from antgo_mlflow.config import Config
import mlflow
cfg = Config.fromfile(sys.argv[1])
with mlflow.start_run():
    mlflow.log_param("model_type", cfg.model.type)
    mlflow.log_param("sources", ",".join(cfg.data.train))
"""


def test_train_with_a_semi_setting_trains_the_config_the_helper_builds(project, tmp_path):
    from antgo_mlflow.project.settings import update_setting

    folder = tmp_path / "e1"
    (folder / "configs").mkdir(parents=True)
    (folder / "train.py").write_text(_TRAIN_CONFIG)
    (folder / "configs" / "config.py").write_text(
        "model = dict(type='ImageClassifier', backbone=dict(type='WideResNet', num_classes=10))\n"
        "data = dict(train=dict(type='TFDataset', data_path_list=['/x'], pipeline=[\n"
        "    dict(type='ToTensor', keys=['image'])]))\n"
    )
    (folder / "MLproject").write_text(
        textwrap.dedent(
            f"""
            name: e1
            entry_points:
              train:
                parameters:
                  config: {{type: string, default: configs/config.py}}
                command: "{sys.executable} train.py {{config}}"
            """
        )
    )
    gt = tmp_path / "pool.json"
    gt.write_text('[{"image_file": "a.png", "height": 4, "width": 4}]')
    add_data(project, "train/unlabel", str(gt), "pool")
    update_setting(project, "semi", name="fixmatch")
    result = ex.train(project, "e1")
    assert result["stage"] == "semi"
    params = pj.get_client().get_run(result["run_id"]).data.params
    assert params["model_type"] == "FixMatch" and params["sources"] == "labeled,unlabeled"
    supervised = ex.train(project, "e1", stage="supervised")
    params = pj.get_client().get_run(supervised["run_id"]).data.params
    assert params["model_type"] == "ImageClassifier"
