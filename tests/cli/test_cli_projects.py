"""`antgo create project|exp`, `add`, `del`, `promote`, `demote`, `update`, `show`, `train` on a
SQLite store and a real mlflow server. Most calls go through `cli.main.main` in-process (an
interpreter start with mlflow costs ~4 s); a few use the real console entry point."""

from __future__ import annotations

import json
import sys
import uuid

import pytest

from tests.helpers import assert_one_line_error
from tests.project import conftest as _fixtures
from tests.project.conftest import registry_state

# The project-area fixtures, shared with these CLI tests: pytest looks fixtures up by the names
# they are bound to in this module.
_sqlite_template = _fixtures._sqlite_template
_saved_model = _fixtures._saved_model
store, project, make_run, cli = (
    _fixtures.store,
    _fixtures.project,
    _fixtures.make_run,
    _fixtures.cli,
)


def test_role_workflow_from_the_command_line(store, cli, make_run, run_antgo):
    name = f"cli{uuid.uuid4().hex[:8]}"
    res = cli("create", "project", f"--name={name}", "--metric", "top_1")
    assert res.code == 0 and f"created project {name}" in res.stdout, res
    low = make_run(name, metrics={"top_1": 0.4})
    best = make_run(name, metrics={"top_1": 0.9})
    res = cli("add", "product", f"--project={name}", "--exp=e1")
    assert res.code == 0 and "version 1 is now the product" in res.stdout, res
    assert cli("add", "expert", "--project", name, "--exp", "e1", "--id", low).code == 0
    assert cli("add", "baseline", f"--project={name}", "--exp=e1", f"--id={low}").code == 0
    res = cli("promote", f"--project={name}", "--version=2", "--role=product", "--note=roll back")
    assert res.code == 0 and "version 2 is now the product" in res.stdout, res
    res = cli("promote", f"--project={name}", "--version=2", "--role=product")
    assert res.code == 0 and "already the product" in res.stdout
    info = json.loads(cli("show", "project", f"--project={name}", "--json").stdout)
    (product,) = info["roles"]["product"]
    assert product["uri"] == f"models:/{name}@production" and product["version"] == "2"
    assert product["run_id"] == low and product["metric"] == {"top_1": 0.4}
    assert info["roles"]["expert"][0]["uri"] == f"models:/{name}@champion"
    assert info["best"]["e1"]["id"] == best
    rows = json.loads(cli("show", "exp", f"--project={name}", "--json").stdout)
    assert [r["id"] for r in rows] == [best, low]
    res = run_antgo("show", "project", f"--project={name}")
    assert res.code == 0, res
    assert f"models:/{name}@production" in res.stdout and f"models:/{name}@staging" in res.stdout
    assert "top_1=0.4" in res.stdout and "e1" in res.stdout
    assert cli("demote", f"--project={name}", "--role=product").code == 0
    assert cli("del", "expert", f"--project={name}", "--version=2").code == 0
    assert cli("del", "baseline", f"--project={name}").code == 0
    info = json.loads(cli("show", "project", f"--project={name}", "--json").stdout)
    assert info["roles"] == {"product": [], "expert": [], "baseline": []}
    assert name in cli("show", "project").stdout
    assert "id " in cli("show", "exp", f"--project={name}").stdout


def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    project, cli, make_run, run_antgo, tmp_path
):
    no_model = make_run(project, model=False)
    skeleton = tmp_path / "label.py"
    skeleton.write_text("type = 'SKELETON'\ncategory = ['hand']\n")
    before = registry_state(project)
    res = run_antgo("promote", f"--project={project}", "--version=1", "--role=boss")
    assert_one_line_error(res, "--role")
    res = cli("add", "product", f"--project={project}", "--exp=e1", f"--id={no_model}")
    assert_one_line_error(res, no_model, "no logged model")
    for args, fragment in [
        (
            ("add", "expert", "--project=nosuch", "--exp=e1", f"--id={no_model}"),
            "no such antgo project",
        ),
        (("add", "expert", f"--project={project}", "--exp=e7", f"--id={no_model}"), "no such exp"),
        (
            ("add", "expert", f"--project={project}", "--exp=e1", "--id=0123abcd"),
            "no such MLflow run",
        ),
        (("promote", f"--project={project}", "--version=4", "--role=expert"), "no model version 4"),
        (
            ("add", "val", f"--project={project}", f"--address={tmp_path / 'nope'}", "--tags=v"),
            "nope",
        ),
        (
            ("update", "project/label", f"--project={project}", f"--config={skeleton}"),
            "meta.skeleton",
        ),
        (("add", "owner", f"--project={project}"), "No such command 'owner'"),
        (("train", f"--project={project}", "--exp=e1", "-P", "lr"), "expected key=value"),
        (
            ("update", "project/semi", f"--project={project}", "--name=dense"),
            "detection dense-teacher comes later",
        ),
        (
            ("train", f"--project={project}", "--exp=e1", "--stage=semi"),
            "no project/semi setting",
        ),
        (("create", "project"), "--name is required"),
    ]:
        assert_one_line_error(cli(*args), fragment)
    assert registry_state(project) == before


def test_data_settings_and_exp_commands(project, cli, tmp_path):
    from PIL import Image

    from antgo_mlflow.gt import new_sample, save_gt

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    gt = save_gt(tmp_path / "annotation.json", [new_sample(image_file="a.png", height=4, width=4)])
    res = cli(
        "add", "train/label", f"--project={project}", f"--address={gt}", "--tags=b1", "--num=1"
    )
    assert res.code == 0 and "'b1' registered (1 samples" in res.stdout, res
    assert cli("update", "project/semi", f"--project={project}", "--name=mpl").code == 0
    text = cli("show", "project", f"--project={project}").stdout
    assert "train/label   b1" in text and "semi            mpl" in text
    assert cli(
        "update", "project/semi", f"--project={project}", "--name=", "--config="
    ).stdout.endswith("cleared\n")
    assert cli("del", "train/label", f"--project={project}", "--tags=b1").code == 0
    info = json.loads(cli("show", "project", f"--project={project}", "--json").stdout)
    assert info["data"]["train/label"] == [] and info["settings"]["semi"] is None
    res = cli("create", "exp", f"--project={project}", "--name=mycls1", f"--tgt={tmp_path}")
    assert res.code == 0 and "exp mycls1 created" in res.stdout, res
    assert (
        "mycls1"
        in json.loads(cli("show", "project", f"--project={project}", "--json").stdout)["exps"]
    )


@pytest.mark.parametrize("group", ["add", "del", "update", "show"])
def test_every_subcommand_help_shows_an_example(cli, group):
    from antgo_mlflow.cli import projects

    command = {
        "add": projects.add,
        "del": projects.delete,
        "update": projects.update,
        "show": projects.show,
    }[group]
    for name in command.commands:
        res = cli(group, name, "--help")
        assert res.code == 0 and "Example" in res.stdout, (group, name, res)
    for top in ("promote", "demote", "train"):
        assert "Example" in cli(top, "--help").stdout
    assert sys.modules.get("antgo_mlflow.cli.projects") is projects
