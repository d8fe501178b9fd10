"""`antgo submitter ...`: templates, registration (0700/0600 files), ls, select, and bad configs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from tests.helpers import assert_one_line_error
from tests.submit.conftest import write_yaml


def _mode(path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.fixture
def key_file(tmp_path):
    key = tmp_path / "id_test"
    key.write_text("not read at registration\n")
    return key


def _ssh_yaml(folder, ip, key_file, extra=""):
    return write_yaml(
        folder / f"ssh-{ip}.yaml",
        f"""\
        config:
          username: me
          ip: {ip}
          port: 2222
          key_file: {key_file}
        {extra}""",
    )


def test_templates_are_written_and_not_overwritten(run_antgo, tmp_path):
    for flag, name in (
        ("--ssh", "ssh-submit-config.yaml"),
        ("--docker", "docker-submit-config.yaml"),
    ):
        r = run_antgo("submitter", "template", flag, cwd=tmp_path)
        assert r.code == 0, r
        assert (tmp_path / name).is_file()
    r = run_antgo("submitter", cwd=tmp_path)  # the tutorial's form writes the script template
    assert r.code == 0 and "folder:" in (tmp_path / "submit-config.yaml").read_text()
    assert_one_line_error(run_antgo("submitter", "template", "--ssh", cwd=tmp_path), "exists")
    text = (tmp_path / "ssh-submit-config.yaml").read_text()
    assert "username:" in text and "key_file:" in text and "password" not in text.split("#")[0]


def test_register_list_select_and_private_files(run_antgo, tmp_path, config_home, key_file):
    for ip in ("10.0.0.2", "10.0.0.1"):
        r = run_antgo(
            "submitter", "update", "--ssh", f"--config={_ssh_yaml(tmp_path, ip, key_file)}"
        )
        assert r.code == 0, r
    assert _mode(config_home) == "0o700"
    files = sorted(p.name for p in config_home.iterdir())
    assert files == [
        "selected.json",
        "ssh-10.0.0.1-submit-config.yaml",
        "ssh-10.0.0.2-submit-config.yaml",
    ]
    assert all(_mode(p) == "0o600" for p in config_home.iterdir())
    r = run_antgo("submitter", "ls", "--ssh")
    assert r.stdout.splitlines() == ["  10.0.0.1  me@10.0.0.1:2222", "* 10.0.0.2  me@10.0.0.2:2222"]
    assert run_antgo("submitter", "select", "--ip=10.0.0.1", "--ssh").code == 0
    rows = json.loads(run_antgo("submitter", "ls", "--ssh", "--json").stdout)
    assert [(r["name"], r["selected"]) for r in rows] == [("10.0.0.1", True), ("10.0.0.2", False)]
    assert_one_line_error(
        run_antgo("submitter", "select", "--ip=10.9.9.9", "--ssh"),
        "--ip=10.9.9.9",
        "no SSH submitter registered",
    )


def test_antgo_flag_form_registers_a_host(run_antgo, key_file):
    r = run_antgo(
        "submitter", "update", "--ssh", "--ip=10.0.0.5", "--user=me", f"--key-file={key_file}"
    )
    assert r.code == 0, r
    assert "me@10.0.0.5:22" in run_antgo("submitter", "ls").stdout


@pytest.mark.parametrize(
    "extra, fragments",
    [
        ("  password: hunter2\n", ("config.password is not supported", "keys only")),
        ("  usename: typo\n", ("unknown field config.usename",)),
        ("  port: 99999\n", ("config.port=99999",)),
        ("  accept_new_host_key: maybe\n", ("config.accept_new_host_key", "true or false")),
    ],
    ids=["password", "typo", "port", "bool"],
)
def test_bad_ssh_configs_are_one_line(run_antgo, tmp_path, key_file, extra, fragments, config_home):
    path = _ssh_yaml(tmp_path, "10.0.0.3", key_file, extra)
    r = run_antgo("submitter", "update", "--ssh", f"--config={path}")
    assert_one_line_error(r, str(path), *fragments)
    assert "hunter2" not in r.stderr
    assert not config_home.exists() or not list(config_home.glob("ssh-*"))


@pytest.mark.parametrize("missing", ["ip", "username"])
def test_config_missing_ip_or_username(run_antgo, tmp_path, missing):
    fields = {"username": "me", "ip": "10.0.0.4"}
    fields.pop(missing)
    body = "".join(f"  {k}: {v}\n" for k, v in fields.items())
    path = write_yaml(tmp_path / "c.yaml", "config:\n" + body)
    assert_one_line_error(
        run_antgo("submitter", "update", "--ssh", f"--config={path}"),
        f"config.{missing} is missing",
    )


def test_custom_script_registration(run_antgo, tmp_path, config_home):
    folder = tmp_path / "submit-code"
    folder.mkdir()
    script = folder / "launch.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    config = write_yaml(tmp_path / "submit-config.yaml", "folder: submit-code\nscript: launch.sh\n")
    assert_one_line_error(run_antgo("submitter", f"--config={config}"), "is not executable")
    script.chmod(0o755)
    r = run_antgo("submitter", f"--config={config}")
    assert r.code == 0, r
    assert str(script) in run_antgo("submitter", "ls", "--script").stdout
    script.unlink()
    missing = write_yaml(tmp_path / "m.yaml", f"folder: {folder}\nscript: gone.sh\n")
    assert_one_line_error(run_antgo("submitter", f"--config={missing}"), "gone.sh does not exist")


def test_docker_config_checks(run_antgo, tmp_path):
    good = write_yaml(
        tmp_path / "d.yaml",
        "config:\n  image: img:1\n  gpus: all\n  memory: 2048\n  mounts: ['/data:/data:ro']\n",
    )
    assert run_antgo("submitter", "update", "--docker", f"--config={good}").code == 0
    assert "image img:1" in run_antgo("submitter", "ls", "--docker").stdout
    bad = write_yaml(tmp_path / "b.yaml", "config:\n  image: img:1\n  mounts: ['data:/data']\n")
    assert_one_line_error(
        run_antgo("submitter", "update", "--docker", f"--config={bad}"),
        "config.mounts",
        "data:/data",
    )


def test_submitter_help_imports_neither_mlflow_nor_paramiko():
    code = (
        "import sys; from antgo_mlflow.cli.main import main\n"
        "try: main(['submitter', '--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('mlflow', 'paramiko', 'torch', 'docker') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
