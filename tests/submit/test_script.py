"""antgo-script: the team's own submit script gets the documented arguments and environment."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import pytest

from tests.submit.conftest import submit_project

SCRIPT = """\
#!{python}
# a team's submit script: record what it was given, then run the job right here
import json, os, subprocess, sys, tarfile
args = sys.argv[1:]
keys = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "ANTGO_SNAPSHOT",
        "ANTGO_CODE_DIGEST", "ANTGO_GPU_NUM", "ANTGO_CPU_NUM", "ANTGO_MEMORY_MB", "TEAM_QUEUE")
seen = {{"argv": args, "cwd": os.getcwd(), "env": {{k: os.environ.get(k) for k in keys}}}}
seen["snapshot"] = tarfile.open(os.environ["ANTGO_SNAPSHOT"]).getnames()
json.dump(seen, open({out!r}, "w"))
command = args[args.index("--launch-argv") + 1]
env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
sys.exit(subprocess.call(["sh", "-c", command], env=env))
"""


@pytest.fixture
def script_config(tmp_path) -> dict:
    folder = tmp_path / "submit-code"
    folder.mkdir()
    out = tmp_path / "seen.json"
    script = folder / "submit.py"
    script.write_text(SCRIPT.format(python=sys.executable, out=str(out)))
    script.chmod(0o755)
    return {
        "folder": str(folder),
        "script": "submit.py",
        "image": "team/train:1",
        "env": {"TEAM_QUEUE": "gpu-a"},
    }


def _seen(tmp_path) -> dict:
    return json.loads((tmp_path / "seen.json").read_text())


def _experiment_with_resources() -> str:
    from mlflow import MlflowClient

    client = MlflowClient()
    eid = client.create_experiment("scripted")
    setting = {"method": "custom", "config": {"gpu_num": 1, "cpu_num": 4, "memory": 2048}}
    client.set_experiment_tag(eid, "antgo.settings.submitter", json.dumps(setting))
    return eid


submit = functools.partial(submit_project, "antgo-script")


def test_script_gets_the_documented_arguments_and_env(tiny_project, script_config, tmp_path):
    from mlflow import MlflowClient

    eid = _experiment_with_resources()  # the project's --gpu --cpu --memory reach the script
    job = submit(tiny_project, "main", script_config, eid, x=3)
    assert job.wait() is True
    seen = _seen(tmp_path)
    assert seen["argv"] == [
        "--image", "team/train:1",
        "--launch-argv", "python job.py --x 3 --rc 0",
        "--gpu-num", "1", "--cpu-num", "4", "--memory-size", "2048M",
    ]  # fmt: skip
    env = seen["env"]
    assert env["MLFLOW_RUN_ID"] == job.run_id and env["MLFLOW_EXPERIMENT_ID"] == eid
    assert env["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
    assert (env["ANTGO_GPU_NUM"], env["ANTGO_CPU_NUM"], env["ANTGO_MEMORY_MB"]) == (
        "1",
        "4",
        "2048",
    )
    assert env["TEAM_QUEUE"] == "gpu-a"
    assert seen["cwd"] == str(tiny_project)
    assert "job.py" in seen["snapshot"] and ".env" not in seen["snapshot"]
    assert not Path(env["ANTGO_SNAPSHOT"]).exists()  # removed after the job
    client = MlflowClient()
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["x2"] == 6.0
    assert run.data.tags["antgo.submitter"] == "script"
    assert run.data.tags["antgo.submitter.host"].endswith("submit-code/submit.py")
    assert env["ANTGO_CODE_DIGEST"] == run.data.tags["antgo.submit.code_digest"]
    log = Path(client.download_artifacts(job.run_id, "logs/remote.log", str(tmp_path))).read_text()
    assert "tinypkg from" in log and "to stderr" in log


def test_script_exit_code_is_the_jobs(tiny_project, script_config):
    from mlflow import MlflowClient

    job = submit(tiny_project, "main", script_config, "0", rc=4)
    assert job.wait() is False
    run = MlflowClient().get_run(job.run_id)
    assert run.info.status == "FAILED" and run.data.tags["antgo.submit.exit_code"] == "4"


def test_cancel_ends_the_script(tiny_project, script_config, tmp_path):
    from mlflow import MlflowClient

    job = submit(tiny_project, "sleep", script_config, "0", marker="script-cancel")
    deadline = time.time() + 60
    while not (tmp_path / "seen.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    job.cancel()
    assert MlflowClient().get_run(job.run_id).info.status == "KILLED"


@pytest.mark.parametrize("problem", ["missing", "not-executable"])
def test_a_missing_or_non_executable_script_is_refused(tiny_project, script_config, problem):
    from mlflow import MlflowClient

    from antgo_mlflow.submit.backend import SubmitError

    script = Path(script_config["folder"]) / "submit.py"
    if problem == "missing":
        script.unlink()
    else:
        script.chmod(0o644)
    fragment = "does not exist" if problem == "missing" else "is not executable"
    with pytest.raises(SubmitError, match=fragment):
        submit(tiny_project, "main", script_config, "0")
    assert MlflowClient().search_runs(["0"]) == []
