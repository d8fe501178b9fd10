"""antgo-ssh against a real OpenSSH server on loopback, the job logging to a real `mlflow server`."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error
from tests.submit.conftest import submit_project
from tests.submit.services import free_port

REPO = Path(__file__).resolve().parents[2]


submit = functools.partial(submit_project, "antgo-ssh")


def remote_log(client, run_id: str, tmp_path) -> str:
    path = client.download_artifacts(run_id, "logs/remote.log", str(tmp_path))
    return Path(path).read_text()


def pids_with(marker: str, child_only: bool = False) -> list[str]:
    """Processes of the sleep job (the launcher, sleeper.py, its child), not `mlflow run` itself."""
    pattern = r"time\.sleep\(600\)" if child_only else r"(sleeper\.py|time\.sleep\(600\))"
    out = subprocess.run(["pgrep", "-f", f"{pattern}.*{marker}"], capture_output=True, text=True)
    return out.stdout.split()


def test_job_logs_into_the_same_run_with_digest_and_remote_log(
    tiny_project, ssh_config, experiment_id, tmp_path
):
    from mlflow import MlflowClient

    job = submit(tiny_project, "main", ssh_config, experiment_id, x=2.5)
    assert job.wait() is True
    client = MlflowClient()
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["x2"] == 5.0  # the remote process logged into this very run
    tags = run.data.tags
    assert tags["antgo.submit.code_digest"].startswith("sha256:")
    assert tags["antgo.submitter"] == "ssh"
    assert (
        tags["antgo.submitter.host"] == f"{ssh_config['username']}@127.0.0.1:{ssh_config['port']}"
    )
    assert tags["mlflow.project.backend"] == "antgo-ssh"
    remote_dir = tags["antgo.submit.remote_dir"]
    assert remote_dir == f"{ssh_config['remote_dir']}/{job.run_id}"
    assert oct(os.stat(remote_dir).st_mode & 0o777) == "0o700"
    log = remote_log(client, job.run_id, tmp_path)
    assert f"run {job.run_id} env-run {job.run_id}" in log
    assert f"tinypkg from {remote_dir}/code/tinypkg/__init__.py" in log  # the snapshot is imported
    assert "dotenv shipped False key shipped False" in log  # secrets stay here
    assert "to stderr" in log
    assert "never-shipped" not in log
    assert not (Path(remote_dir) / "code" / ".env").exists()


def test_a_failing_remote_command_ends_failed(tiny_project, ssh_config, experiment_id):
    from mlflow import MlflowClient

    job = submit(tiny_project, "main", ssh_config, experiment_id, rc=3)
    assert job.wait() is False
    run = MlflowClient().get_run(job.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["antgo.submit.exit_code"] == "3"


def test_cancel_kills_the_remote_process_group(tiny_project, ssh_config, experiment_id):
    from mlflow import MlflowClient

    marker = f"antgo-sleep-{uuid.uuid4().hex[:8]}"
    job = submit(tiny_project, "sleep", ssh_config, experiment_id, marker=marker)
    assert job.get_status() == "RUNNING"  # run() returned at once
    deadline = time.time() + 60
    while not pids_with(marker, child_only=True) and time.time() < deadline:
        time.sleep(0.2)
    assert len(pids_with(marker)) >= 2  # the job and the child it started
    job.cancel()
    assert job.get_status() == "KILLED"
    gone = time.time() + 5
    while pids_with(marker) and time.time() < gone:
        time.sleep(0.1)
    assert pids_with(marker) == []
    assert MlflowClient().get_run(job.run_id).info.status == "KILLED"


def test_sigterm_to_mlflow_run_cancels_the_job(tiny_project, ssh_config, experiment_id, tmp_path):
    """`mlflow run --backend antgo-ssh` waits for the job; SIGTERM to it ends the run KILLED."""
    from mlflow import MlflowClient

    marker = f"antgo-sleep-{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable, "-m", "mlflow", "run", str(tiny_project), "-e", "sleep",
        "-P", f"marker={marker}", "--experiment-id", experiment_id,
        "--backend", "antgo-ssh", "--backend-config", json.dumps(ssh_config),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 90
    while not pids_with(marker, True) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert pids_with(marker, True), proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    runs = MlflowClient().search_runs([experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"], out
    gone = time.time() + 5
    while pids_with(marker) and time.time() < gone:
        time.sleep(0.1)
    assert pids_with(marker) == []


def _no_runs(experiment_id) -> bool:
    from mlflow import MlflowClient

    return MlflowClient().search_runs([experiment_id]) == []


@pytest.mark.parametrize(
    "change, fragment",
    [
        (
            dict(ip="no-such-host.invalid", tracking_uri="http://mlflow.example:5000"),
            "unknown host 'no-such-host.invalid'",
        ),
        (dict(port="free"), "connection refused"),
        (dict(key_file="other"), "key authentication failed"),
        (dict(known_hosts="empty"), "unknown host key"),
        (dict(known_hosts="changed"), "the host key CHANGED"),
    ],
    ids=["unknown-host", "refused", "wrong-key", "unknown-host-key", "changed-host-key"],
)
def test_bad_targets_are_refused_before_any_run(
    tiny_project, ssh_config, experiment_id, sshd, tmp_path, change, fragment
):
    from antgo_mlflow.errors import AntgoError
    from antgo_mlflow.submit.backend import SubmitError

    config = dict(ssh_config)
    for key, value in change.items():
        if value == "free":
            value = free_port()
        elif value == "other":
            value = str(sshd.other_key)
        elif value == "empty":
            value = str(tmp_path / "known_hosts_empty")
        elif value == "changed":  # another key recorded for this host:port
            other = Path(f"{sshd.other_key}.pub").read_text().split()
            changed = tmp_path / "known_hosts_changed"
            changed.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
            value = str(changed)
        config[key] = value
    with pytest.raises(SubmitError, match=fragment) as info:
        submit(tiny_project, "main", config, experiment_id)
    assert isinstance(info.value, AntgoError) and "\n" not in str(info.value)
    assert _no_runs(experiment_id)


def test_accept_new_host_key_records_the_key(tiny_project, ssh_config, experiment_id, tmp_path):
    known = tmp_path / "new_known_hosts"
    config = dict(ssh_config, known_hosts=str(known), accept_new_host_key=True)
    assert submit(tiny_project, "main", config, experiment_id).wait() is True
    assert f"[127.0.0.1]:{ssh_config['port']} ssh-ed25519 " in known.read_text()
    assert oct(known.stat().st_mode & 0o777) == "0o600"


def test_a_local_tracking_store_is_refused(tiny_project, ssh_config, tmp_path, monkeypatch):
    import mlflow.projects

    from antgo_mlflow.submit.backend import SubmitError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'local.db'}")
    with pytest.raises(SubmitError, match="is a store on this machine"):
        mlflow.projects.run(
            str(tiny_project), backend="antgo-ssh", backend_config=ssh_config, synchronous=False
        )


def test_registered_host_by_ip_and_unregistered_ip(tiny_project, ssh_config, experiment_id):
    from antgo_mlflow.submit import config as cfg
    from antgo_mlflow.submit.backend import SubmitError

    cfg.register("ssh", data=ssh_config)
    job = submit(tiny_project, "main", {"ip": "127.0.0.1"}, experiment_id)
    assert job.wait() is True
    with pytest.raises(SubmitError, match="no SSH submitter registered for this host"):
        submit(tiny_project, "main", {"ip": "10.9.9.9"}, experiment_id)


def _antgo_project(run_antgo, tmp_path, server_uri, tiny_project) -> tuple[str, Path]:
    name = f"p{uuid.uuid4().hex[:8]}"
    assert run_antgo("create", "project", f"--name={name}").code == 0
    exp = tmp_path / "work" / "mycls"
    exp.parent.mkdir()
    tiny_project.rename(exp)
    text = (exp / "MLproject").read_text().replace("  main:", "  train:")
    (exp / "MLproject").write_text(text)
    return name, exp


def test_antgo_train_cloud_ssh(run_antgo, tiny_project, ssh_config, server_uri, tmp_path):
    from mlflow import MlflowClient

    from antgo_mlflow.submit import config as cfg

    cfg.register("ssh", data=ssh_config)
    project, exp = _antgo_project(run_antgo, tmp_path, server_uri, tiny_project)
    r = run_antgo(
        "update",
        "project/submitter",
        f"--project={project}",
        "--name=ssh",
        "--cpu=2",
        "--memory=512",
    )
    assert r.code == 0, r
    r = run_antgo(
        "train", "--exp=mycls", f"--project={project}", "--cloud", "--ssh", "-P", "x=4",
        cwd=exp.parent,
    )  # fmt: skip
    assert r.code == 0, r
    run_id = r.stdout.split("run ", 1)[1].split()[0]
    assert (
        f"submitted to antgo-ssh {ssh_config['username']}@127.0.0.1:{ssh_config['port']}"
        in r.stdout
    )
    assert f"watch it: {server_uri}/#/experiments/" in r.stdout and run_id in r.stdout
    assert f"run {run_id} of exp mycls FINISHED" in r.stdout
    assert "cpu 2 project " + project in r.stdout  # resources and the project reach the job
    run = MlflowClient().get_run(run_id)
    assert run.data.metrics["x2"] == 8.0
    assert run.data.tags["antgo.exp"] == "mycls" and run.data.tags["antgo.project"] == project
    assert json.loads(run.data.tags["antgo.submit.resources"]) == {
        "cpu_num": 2,
        "gpu_num": 0,
        "memory": 512,
    }


def test_antgo_train_cloud_bad_inputs(run_antgo, tiny_project, ssh_config, server_uri, tmp_path):
    from mlflow import MlflowClient

    from antgo_mlflow.submit import config as cfg

    project, exp = _antgo_project(run_antgo, tmp_path, server_uri, tiny_project)
    r = run_antgo(
        "train", "--exp=mycls", f"--project={project}", "--cloud", "--ssh", cwd=exp.parent
    )
    assert_one_line_error(r, "no SSH submitter selected")
    cfg.register("ssh", data=dict(ssh_config, port=free_port()))
    r = run_antgo(
        "train", "--exp=mycls", f"--project={project}", "--cloud", "--ssh", "--ip=10.1.2.3",
        cwd=exp.parent,
    )  # fmt: skip
    assert_one_line_error(r, "--ip=10.1.2.3", "no SSH submitter registered")
    r = run_antgo(
        "train", "--exp=mycls", f"--project={project}", "--cloud", "--ssh", cwd=exp.parent
    )
    assert_one_line_error(r, "connection refused")
    experiment = MlflowClient().get_experiment_by_name(project)
    statuses = [r.info.status for r in MlflowClient().search_runs([experiment.experiment_id])]
    assert "RUNNING" not in statuses


@pytest.mark.slow
def test_mlflow_run_trains_digits_over_ssh(sshd, server_uri, tmp_path):
    """`mlflow run . -e train --backend antgo-ssh --backend-config '{"ip": "127.0.0.1"}'` on this
    repository: the remote trains 1 epoch on the 179-sample split and logs into the same run."""
    from mlflow import MlflowClient

    from antgo_mlflow.data.sources.digits import prepare_digits
    from antgo_mlflow.submit import config as cfg

    cache = tmp_path / "cache"
    val = prepare_digits(cache).shard_paths("val")
    remote_env = {"ANTGO_CACHE_DIR": str(cache), "ANTGO_PROGRESS": "0"}
    cfg.register("ssh", data=sshd.submitter(python=sys.executable, env=remote_env))
    hooks = "[{'type':'TextLoggerHook'},{'type':'MlflowLoggerHook','log_model':False}]"
    options = f"data.train.data_path_list={val!r} log_config.hooks={hooks}"
    experiment_id = MlflowClient().create_experiment(f"digits-{uuid.uuid4().hex[:8]}")
    proc = subprocess.run(
        [
            sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "train",
            "--experiment-id", experiment_id, "-P", "epochs=1", "-P", f"cfg_options={options}",
            "-P", f"work_dir={tmp_path / 'work'}",
            "--backend", "antgo-ssh", "--backend-config", '{"ip": "127.0.0.1"}',
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    client = MlflowClient()
    (run,) = client.search_runs([experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["antgo.submit.code_digest"].startswith("sha256:")
    assert {"val/top_1", "test/top_1"} <= set(run.data.metrics)  # logged by the remote trainer
    log = remote_log(client, run.info.run_id, tmp_path)
    assert "antgo-train: trained in" in log
