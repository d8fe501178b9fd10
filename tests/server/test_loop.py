"""``antgo server`` on bad inputs: one clear line, exit 2, the other projects go on."""

from __future__ import annotations

import shutil

from antgo_mlflow.project.data_registry import add_data
from tests.helpers import assert_one_line_error
from tests.server.conftest import digits_gt


def _register(project, tmp_path, pool=range(20), test=range(100, 120)):
    add_data(
        project, "train/unlabel", str(digits_gt(tmp_path / "pool", pool, labelled=False)), "b1"
    )
    add_data(project, "test", str(digits_gt(tmp_path / "test", test)), "fixed")


def test_no_product_and_no_experts_says_what_to_register(project, tmp_path, run_antgo):
    _register(project, tmp_path)
    res = run_antgo("server", f"--project={project}", "--once", "--budget=5", cwd=tmp_path)
    assert_one_line_error(res, "no product and no experts", "antgo add expert")
    assert "Traceback" not in res.stdout + res.stderr


def test_a_registration_whose_data_is_gone(product, tmp_path, run_antgo):
    _register(product, tmp_path)
    shutil.rmtree(tmp_path / "pool")
    res = run_antgo("server", f"--project={product}", "--once", "--budget=5", cwd=tmp_path)
    assert_one_line_error(res, "registration 'b1'", "is gone")


def test_unknown_project_bad_flags_and_help(store, tmp_path, run_antgo):
    res = run_antgo("server", "--project=nope", "--once", cwd=tmp_path)
    assert res.code == 2 and "nope" in res.stderr and "Traceback" not in res.stderr
    res = run_antgo("server", "--project=nope", "--interval=0", cwd=tmp_path)
    assert_one_line_error(res, "'--interval'", "x>0")
    res = run_antgo("server", "--help", cwd=tmp_path)
    assert res.code == 0 and "antgo server --project=digits" in res.stdout


def test_auto_projects_are_served_and_show_project_shows_the_loop(product, tmp_path, run_antgo):
    """Label Studio is not running: the label step waits, says so, and show project shows it."""
    from antgo_mlflow.project.settings import update_setting
    from tests.conftest import free_port

    _register(product, tmp_path)
    update_setting(product, "activelearning", name="margin")  # the untrained model has no .pth
    env = {"LABEL_STUDIO_API_KEY": "t0ken"}
    url = f"http://127.0.0.1:{free_port()}"
    args = ("server", "--once", "--budget=5", "--threshold=0.99", f"--label-studio={url}")
    res = run_antgo(*args, cwd=tmp_path, env=env)  # no --project: the --auto ones
    assert res.code == 0, res
    assert f"serving {product}" in res.stdout and "waiting: Label Studio unreachable" in res.stdout
    res = run_antgo("show", "project", f"--project={product}", cwd=tmp_path)
    assert res.code == 0 and "loop: iteration 1 running  step: label" in res.stdout, res
    assert "unreachable" in res.stdout
    # a second pass continues iteration 1 (predict/select are not repeated)
    res = run_antgo(*args, cwd=tmp_path, env=env)
    assert res.code == 0 and "predict:" not in res.stdout and "waiting" in res.stdout, res
