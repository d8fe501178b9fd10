"""Project settings: validated, stored in MLflow (tag, or settings-run artifact when large), cleared."""

from __future__ import annotations

import json

import pytest

from antgo_mlflow.errors import AntgoError, UsageError
from antgo_mlflow.project import settings as st
from antgo_mlflow.project.projects import get_client
from tests.project.conftest import registry_state


def _cfg(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_label_config_accepts_every_type_and_skeleton_needs_meta(project, tmp_path):
    rect = _cfg(tmp_path, "rect.py", "type = 'RECT'\ncategory = ['cat', 'dog']\n")
    stored = st.update_setting(project, "label", config=rect)
    assert stored["config"]["type"] == "RECT" and stored["config"]["category"] == ["cat", "dog"]
    assert st.get_setting(project, "label")["config"] == stored["config"]
    skel = _cfg(
        tmp_path,
        "skel.py",
        "type = 'SKELETON'\ncategory = ['hand']\nmeta = dict(skeleton=[[0, 1], [1, 2]])\n",
    )
    assert st.update_setting(project, "label", config=skel)["config"]["meta"]["skeleton"] == [
        [0, 1],
        [1, 2],
    ]
    for kind in ("CLASS", "POINT", "POLYGON"):
        path = _cfg(tmp_path, f"{kind}.py", f"type = '{kind}'\ncategory = ['a']\n")
        assert st.update_setting(project, "label", config=path)["method"] == kind


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("type = 'SKELETON'\ncategory = ['hand']\n", "needs meta.skeleton"),
        ("type = 'SKELETON'\nmeta = dict(skeleton=[[0, -1]])\n", "pairs of point indices"),
        ("type = 'BOX'\ncategory = ['a']\n", "must be one of CLASS, RECT"),
        ("type = 'RECT'\ncategory = 'cat'\n", "category must be a list"),
        ("type = 'RECT'\ncategory = []\n", "non-empty category"),
    ],
)
def test_bad_label_configs_are_rejected_and_nothing_is_stored(project, tmp_path, text, fragment):
    path = _cfg(tmp_path, "label.py", text)
    before = registry_state(project)
    with pytest.raises(AntgoError, match=fragment) as info:
        st.update_setting(project, "label", config=path)
    assert "label.py" in str(info.value)
    assert registry_state(project) == before


def test_builtin_names_configs_and_clearing(project, tmp_path):
    assert st.update_setting(project, "semi", name="mpl")["method"] == "mpl"
    assert st.update_setting(project, "distillation", name="kd")["config"] == {"method": "kd"}
    cfg = _cfg(tmp_path, "ac.py", "sampling_num = 5000\npool_factor = 2\n")
    stored = st.update_setting(project, "activelearning", config=cfg, name="ac")
    assert stored["source"] == cfg and stored["method"] == "ac"
    assert stored["config"] == {"budget": 5000, "strategy": {"type": "ac", "pool_factor": 2}}
    sub = _cfg(tmp_path, "sub.py", "method = 'ssh'\ngpu_num = 2\ncpu_num = 8\nmemory = 16000\n")
    assert st.update_setting(project, "submitter", config=sub)["method"] == "ssh"
    assert st.update_setting(project, "semi", name="", config="") is None
    assert st.all_settings(project)["semi"] is None
    assert st.all_settings(project)["submitter"]["config"]["gpu_num"] == 2
    before = registry_state(project)
    for kwargs, fragment in [
        (dict(kind="semi", name="dense"), "detection dense-teacher comes later"),
        (dict(kind="semi", name="meanteacher"), "unknown project/semi method 'meanteacher'"),
        (dict(kind="distillation", name="reviewkd"), "ReviewKD is not implemented"),
        (dict(kind="label", name="x"), "needs --config"),
        (dict(kind="submitter", config=_cfg(tmp_path, "s.py", "gpu_num = -1\n")), "gpu_num"),
        (dict(kind="semi", config=str(tmp_path / "missing.py")), "config file not found"),
        (dict(kind="ensemble", name="x"), "no such setting"),
    ]:
        with pytest.raises(AntgoError, match=fragment):
            st.update_setting(project, **kwargs)
    assert registry_state(project) == before


def test_a_large_setting_is_a_settings_run_artifact(project, tmp_path):
    big = _cfg(tmp_path, "big.py", f"classes = {[f'class_{i:04d}' for i in range(800)]!r}\n")
    st.update_setting(project, "semi", config=big)
    tag = json.loads(get_client().get_experiment_by_name(project).tags["antgo.settings.semi"])
    assert tag["$ref"].startswith("runs:/") and len(tag["sha256"]) == 64
    assert len(st.get_setting(project, "semi")["config"]["classes"]) == 800
    run = get_client().get_run(tag["$ref"].split("/")[1])
    assert run.data.tags["antgo.kind"] == "settings" and run.info.status == "FINISHED"


def test_activelearning_names_are_the_registered_strategies(project, tmp_path):
    assert st.update_setting(project, "activelearning", name="margin")["config"] == {
        "strategy": {"type": "margin"}
    }
    cfg = _cfg(
        tmp_path,
        "ac_config.py",
        "strategy = dict(type='hybrid', uncertainty='entropy')\nbudget = 50\npool_factor = 4\n"
        "models = ['models:/x@champion']\n",
    )
    stored = st.update_setting(project, "activelearning", config=cfg)
    assert stored["method"] == "hybrid" and stored["config"]["budget"] == 50
    assert stored["config"]["strategy"] == {
        "type": "hybrid",
        "uncertainty": "entropy",
        "pool_factor": 4,
    }
    before = registry_state(project)
    for kwargs, fragment in [
        (dict(name="uncertainty"), "no built-in project/activelearning"),
        (
            dict(config=_cfg(tmp_path, "a.py", "sampling_count = 5\n")),
            "unknown key 'sampling_count'",
        ),
        (dict(config=_cfg(tmp_path, "b.py", "budget = 0\n")), "budget=0 must be a positive"),
        (dict(config=_cfg(tmp_path, "c.py", "strategy = 'kcentre'\n")), "did you mean 'kcenter'"),
        (dict(config=_cfg(tmp_path, "d.py", "pool_factor = 0.5\n")), "pool_factor"),
        (
            dict(config=_cfg(tmp_path, "e.py", "strategy = 'margin'\n"), name="kcenter"),
            "contradicts",
        ),
        (dict(config=_cfg(tmp_path, "f.py", "metas = ['a']\n")), "metas must be a dict"),
    ]:
        with pytest.raises(AntgoError, match=fragment):
            st.update_setting(project, "activelearning", **kwargs)
    assert registry_state(project) == before


SECRET = "s3cret-Pa55word"


def _everything_mlflow_holds(project) -> str:
    """Every tag of the project experiment and of its runs (settings runs too), as one text."""
    client = get_client()
    experiment = client.get_experiment_by_name(project)
    runs = client.search_runs([experiment.experiment_id])
    return json.dumps([experiment.tags] + [[r.data.tags, r.data.params] for r in runs])


def test_white_user_passwords_never_reach_mlflow(project, tmp_path, cli):
    antgo_style = _cfg(
        tmp_path, "al.py",
        f"metas = dict(category=['a'])\nwhite_users = {{'jian@baidu.com': {{'password': '{SECRET}'}}}}\n",
    )  # fmt: skip
    before = registry_state(project)
    res = cli("update", "project/activelearning", f"--project={project}", f"--config={antgo_style}")
    assert res.code == 2 and "white_users holds passwords" in res.stderr
    assert SECRET not in res.stderr and registry_state(project) == before
    # names in the settings, passwords in a file only its owner can read
    secrets = tmp_path / "annotators"
    secrets.write_text(f"alice:{SECRET}\n")
    secrets.chmod(0o644)
    names_only = _cfg(
        tmp_path, "al2.py",
        f"metas = dict(category=['a'])\nwhite_users = ['alice']\nwhite_users_file = {str(secrets)!r}\n",
    )  # fmt: skip
    res = cli("update", "project/activelearning", f"--project={project}", f"--config={names_only}")
    assert res.code == 2 and "chmod 600" in res.stderr
    secrets.chmod(0o600)
    stored = st.update_setting(project, "activelearning", config=names_only)
    assert stored["config"]["white_users"] == ["alice"]
    assert stored["config"]["white_users_file"] == str(secrets)
    assert SECRET not in _everything_mlflow_holds(project)
    # a secret under any key is refused (e.g. a submitter's ssh password)
    token = _cfg(tmp_path, "sub.py", f"method = 'ssh'\nssh = dict(host='h', password='{SECRET}')\n")
    res = cli("update", "project/submitter", f"--project={project}", f"--config={token}")
    assert (
        res.code == 2 and "ssh.password holds a secret" in res.stderr and SECRET not in res.stderr
    )
    # a setting stored by an older version still shows masked
    from antgo_mlflow.project.projects import put_json_tag

    client = get_client()
    old = {"method": "ac", "config": {"white_users": {"bob": {"password": SECRET}}}}
    put_json_tag(client, client.get_experiment_by_name(project), st.SETTINGS_PREFIX + "label", old)
    res = cli("show", "project", f"--project={project}", "--json")
    assert res.code == 0 and "bob" in res.stdout and SECRET not in res.stdout


def test_passwords_on_the_command_line_are_refused(tmp_path, cli, monkeypatch):
    res = cli("tool", "label/start", f"--src={tmp_path}", f"--tgt={tmp_path / 'out'}",
              "--tags=Car:0", f"--white-users=ann:{SECRET}")  # fmt: skip
    assert res.code == 2 and "--white-users: give user names only" in res.stderr
    assert SECRET not in res.stderr and not (tmp_path / "out").exists()
    res = cli("tool", "browser/images", f"--src={tmp_path}", f"--white-users=ann:{SECRET}")
    assert res.code == 2 and SECRET not in res.stderr
    # an entry-point parameter named like a secret would be an MLflow param and an argument
    from antgo_mlflow.project.projects import create_project

    create_project(name="sec")
    (tmp_path / "e1").mkdir()
    (tmp_path / "e1" / "MLproject").write_text(
        "name: e1\nentry_points:\n  train:\n    command: x\n"
    )
    monkeypatch.chdir(tmp_path)
    res = cli("train", "--project=sec", "--exp=e1", "-P", f"db_password={SECRET}")
    assert res.code == 2 and "-P db_password: secrets never go into params" in res.stderr
    assert (
        SECRET not in res.stderr
        and get_client().search_runs([get_client().get_experiment_by_name("sec").experiment_id])
        == []
    )


def test_params_and_config_snapshots_hold_no_secret():
    from antgo_mlflow.engine.hooks.mlflow_logger import _param_items

    params = {p.key: p.value for p in _param_items({"ssh.password": SECRET, "lr": 0.1})}
    assert params == {"ssh.password": "***", "lr": "0.1"}


def test_submitter_resources_from_flags_keep_the_method(project):
    """antgo's `update project/submitter --gpu --cpu --memory`: the request, laid over what is stored."""
    assert st.update_setting(project, "submitter", name="ssh")["config"] == {}
    stored = st.update_setting(
        project, "submitter", values={"gpu_num": 1, "cpu_num": 10, "memory": 10000}
    )
    assert stored["method"] == "ssh"
    assert stored["config"] == {"gpu_num": 1, "cpu_num": 10, "memory": 10000}
    stored = st.update_setting(project, "submitter", values={"cpu_num": 4, "gpu_num": None})
    assert stored["config"] == {"gpu_num": 1, "cpu_num": 4, "memory": 10000}
    with pytest.raises(AntgoError, match="gpu_num"):
        st.update_setting(project, "submitter", values={"gpu_num": -1})


@pytest.mark.parametrize(
    ("kind", "name", "fragment"),
    [
        ("semi", "dense", "dense-teacher is not implemented"),
        ("semi", "detmpl", "Meta Pseudo Labels is not implemented"),
        ("distillation", "reviewkd", "ReviewKD is not implemented"),
    ],
)
def test_builtin_names_nothing_implements_are_refused_and_nothing_is_stored(
    project, kind, name, fragment
):
    before = registry_state(project)
    with pytest.raises(UsageError, match=fragment) as info:
        st.update_setting(project, kind, name=name)
    assert f"--name={name}" in str(info.value)
    assert registry_state(project) == before
