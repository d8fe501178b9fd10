"""antgo-docker. No Docker engine runs on this machine, so most tests drive the backend through a
fake docker client that records the container spec and plays a container's life (logs, exit
code, stop); the docker SDK's own types (DeviceRequest, Mount) are real. One test runs against a
real engine when DOCKER_HOST or /var/run/docker.sock answers, and is skipped otherwise."""

from __future__ import annotations

import functools
import io
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error
from tests.submit.conftest import submit_project
from tests.submit.services import free_port


class FakeContainer:
    def __init__(self, spec, exit_code, lines):
        self.id, self.spec, self.exit_code, self.lines = "c0ffee", spec, exit_code, lines
        self.archives, self.calls = [], []
        self.stopped = threading.Event()

    def put_archive(self, path, data):
        self.archives.append((path, data))
        return True

    def start(self):
        self.calls.append("start")

    def logs(self, stream, follow, stdout, stderr):
        assert stream and follow and stdout and stderr
        yield from self.lines
        if self.exit_code is None:  # a long job: runs until stopped
            self.stopped.wait(60)

    def wait(self):
        return {"StatusCode": 137 if self.exit_code is None else self.exit_code}

    def stop(self, timeout):
        self.calls.append(f"stop({timeout})")
        self.stopped.set()

    def remove(self, force=False):
        self.calls.append("remove")


class FakeDocker:
    """Stands in for docker.DockerClient: records create(**spec), knows a set of local images."""

    def __init__(
        self, exit_code=0, lines=(b"hello from the container\n",), images=("team/train:1",)
    ):
        self.created: list[FakeContainer] = []
        self.exit_code, self.lines, self.local_images = exit_code, list(lines), set(images)
        fake = self

        class Containers:
            def create(self, **spec):
                container = FakeContainer(spec, fake.exit_code, fake.lines)
                fake.created.append(container)
                return container

        class Images:
            def get(self, name):
                import docker

                if name not in fake.local_images:
                    raise docker.errors.ImageNotFound(f"No such image: {name}")
                return name

        self.containers, self.images = Containers(), Images()

    def ping(self):
        return True

    def close(self):
        pass


@pytest.fixture
def fake_docker(monkeypatch):
    from antgo_mlflow.submit.docker import DockerBackend

    fake = FakeDocker()
    monkeypatch.setattr(DockerBackend, "client_factory", staticmethod(lambda sub: fake))
    return fake


DOCKER_CONFIG = {
    "image": "team/train:1",
    "tracking_uri": "http://mlflow.team.example:5000",  # what the container would log to
    "mounts": ["/srv/data:/data:ro"],
    "env_setup": "echo setting up",
}


submit = functools.partial(submit_project, "antgo-docker")


def test_container_spec_image_command_env_gpus_limits_mounts(fake_docker, tiny_project, tmp_path):
    from docker.types import DeviceRequest, Mount
    from mlflow import MlflowClient

    config = dict(DOCKER_CONFIG, resources={"gpu_num": 2, "cpu_num": 1.5, "memory": 2048})
    job = submit(tiny_project, "main", config, x=3)
    assert job.wait() is True
    (container,) = fake_docker.created
    spec = container.spec
    assert spec["image"] == "team/train:1"
    assert spec["command"][:2] == ["sh", "-c"]
    script = spec["command"][2]
    assert script.splitlines()[1] == "echo setting up" and script.endswith(
        "python job.py --x 3 --rc 0"
    )
    env = spec["environment"]
    assert env["MLFLOW_RUN_ID"] == job.run_id
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.team.example:5000"
    assert env["MLFLOW_EXPERIMENT_ID"] == "0"
    assert env["PYTHONPATH"] == "/workspace/code" and spec["working_dir"] == "/workspace/code"
    assert spec["device_requests"] == [DeviceRequest(count=2, capabilities=[["gpu"]])]
    assert spec["nano_cpus"] == 1_500_000_000 and spec["mem_limit"] == "2048m"
    assert spec["mounts"] == [
        Mount(target="/data", source="/srv/data", type="bind", read_only=True)
    ]
    assert spec["labels"]["antgo.run_id"] == job.run_id
    ((path, data),) = container.archives
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert path == "/" and "workspace/code/job.py" in names and "workspace/code/.env" not in names
    assert container.calls == ["start", "remove"]
    client = MlflowClient()
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["antgo.submit.container"] == "c0ffee"
    assert run.data.tags["antgo.submit.image"] == "team/train:1"
    log = Path(client.download_artifacts(job.run_id, "logs/remote.log", str(tmp_path))).read_text()
    assert "hello from the container" in log


def test_all_gpus_and_no_limits(fake_docker, tiny_project):
    job = submit(tiny_project, "main", dict(DOCKER_CONFIG, gpus="all"))
    assert job.wait() is True
    spec = fake_docker.created[0].spec
    assert spec["device_requests"][0]["Count"] == -1
    assert "nano_cpus" not in spec and "mem_limit" not in spec


def test_non_zero_exit_fails_and_cancel_stops(fake_docker, tiny_project):
    from mlflow import MlflowClient

    fake_docker.exit_code = 5
    job = submit(tiny_project, "main", DOCKER_CONFIG)
    assert job.wait() is False
    assert MlflowClient().get_run(job.run_id).info.status == "FAILED"
    fake_docker.exit_code = None  # runs until stopped
    job = submit(tiny_project, "sleep", DOCKER_CONFIG)
    time.sleep(0.3)
    job.cancel()
    assert MlflowClient().get_run(job.run_id).info.status == "KILLED"
    assert fake_docker.created[-1].calls == ["start", "stop(4)", "remove"]


def test_missing_image_and_loopback_tracking_are_refused(fake_docker, tiny_project, monkeypatch):
    from mlflow import MlflowClient

    from antgo_mlflow.submit.backend import SubmitError

    with pytest.raises(SubmitError, match="image team/other:2 is not on local docker engine"):
        submit(tiny_project, "main", dict(DOCKER_CONFIG, image="team/other:2"))
    loopback = dict(DOCKER_CONFIG, tracking_uri="http://127.0.0.1:5000")
    with pytest.raises(SubmitError, match="loopback"):
        submit(tiny_project, "main", loopback)
    assert submit(tiny_project, "main", dict(loopback, network_mode="host")).wait() is True
    assert len(MlflowClient().search_runs(["0"])) == 1  # refusals made no run


@pytest.mark.parametrize("base_url", ["tcp://127.0.0.1:{port}", "unix:///nonexistent/docker.sock"])
def test_an_engine_that_does_not_answer_is_one_line(run_antgo, tiny_project, tmp_path, base_url):
    """The real docker SDK against an address where no engine listens."""
    from mlflow import MlflowClient

    url = base_url.format(port=free_port())
    name = "dockerless"
    assert run_antgo("create", "project", f"--name={name}").code == 0
    exp = tmp_path / "work" / "mycls"
    exp.parent.mkdir()
    tiny_project.rename(exp)
    (exp / "MLproject").write_text((exp / "MLproject").read_text().replace("  main:", "  train:"))
    from antgo_mlflow.submit import config as cfg

    cfg.register("docker", data=dict(DOCKER_CONFIG, base_url=url))
    r = run_antgo(
        "train", "--exp=mycls", f"--project={name}", "--cloud", "--docker", cwd=exp.parent
    )
    assert_one_line_error(r, "docker:", url, "does not answer")
    experiment = MlflowClient().get_experiment_by_name(name)
    statuses = {r.info.status for r in MlflowClient().search_runs([experiment.experiment_id])}
    assert statuses <= {"FAILED"}


def _engine_answers() -> str | None:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return "no Docker engine here (neither DOCKER_HOST nor /var/run/docker.sock)"
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable engine
        return f"the Docker engine does not answer ({type(exc).__name__})"
    return None


@pytest.mark.skipif(_engine_answers() is not None, reason=_engine_answers() or "")
def test_real_engine_runs_a_container(tiny_project, tmp_path):
    """With a real engine: a shell job in a small local image ends FINISHED with its log."""
    import docker
    from mlflow import MlflowClient

    image = os.environ.get("ANTGO_TEST_DOCKER_IMAGE", "python:3.11-slim")
    try:
        docker.from_env().images.get(image)
    except docker.errors.ImageNotFound:
        pytest.skip(f"image {image} is not on the engine (set ANTGO_TEST_DOCKER_IMAGE)")
    (tiny_project / "MLproject").write_text(
        'name: t\nentry_points:\n  main:\n    command: "echo in-container; ls tinypkg"\n'
    )
    config = {"image": image, "tracking_uri": "http://mlflow.team.example:5000"}
    job = submit(tiny_project, "main", config)
    assert job.wait() is True
    log = Path(MlflowClient().download_artifacts(job.run_id, "logs/remote.log", str(tmp_path)))
    assert "in-container" in log.read_text() and "__init__.py" in log.read_text()
