"""``antgo-docker``: run an MLflow project entry point in a container (docker SDK, local or ssh:// engine).

The container is created from the configured image with the entry point's command
(``sh -c`` of the job script), the job's environment (``MLFLOW_TRACKING_URI``/``RUN_ID``/
``EXPERIMENT_ID`` so it logs into the same run), GPUs as a ``DeviceRequest``, ``nano_cpus`` and
``mem_limit`` from the resource request, the configured bind mounts and labels naming the run.
The snapshot is *copied* in (``put_archive`` into ``<workdir>/code`` before start), which works
with a remote engine where a bind mount of this machine's folder would not. Logs are streamed,
the exit code decides FINISHED/FAILED, ``cancel()`` stops the container (KILLED), and the
container is removed unless ``keep_container: true``.

Note: the environment of a container is visible to anyone who may ``docker inspect`` it (on most
engines, root-equivalent users); tracking credentials forwarded to the job are visible there.
"""

from __future__ import annotations

import contextlib
import shlex

from antgo_mlflow.errors import one_line, require
from antgo_mlflow.submit.backend import (
    GRACE_S,
    SubmitBackend,
    SubmitError,
    SubmittedJob,
    check_tracking_uri,
    job_script,
)
from antgo_mlflow.submit.config import parse_mount

TAG_CONTAINER = "antgo.submit.container"
TAG_IMAGE = "antgo.submit.image"


def make_client(sub):
    """A docker client for ``sub.base_url`` (default: the environment's engine) that answered a ping."""
    docker = require("docker", "submit")
    import requests

    where = sub.base_url or "the local engine (DOCKER_HOST or /var/run/docker.sock)"
    try:
        client = docker.DockerClient(base_url=sub.base_url) if sub.base_url else docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        first = one_line(exc)[:300]
        raise SubmitError(f"docker: {where} does not answer ({first})") from None
    return client


def container_spec(sub, job) -> dict:
    """Keyword arguments of ``client.containers.create`` for a job (tests read them back)."""
    from docker.types import DeviceRequest, Mount

    code_dir = f"{sub.workdir}/code"
    env = dict(job.env)
    env["PYTHONPATH"] = code_dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    resources = job.resources
    gpus = resources["gpu_num"] or sub.gpus
    cpus = resources["cpu_num"] or sub.cpu_num
    memory = int(resources["memory"] or sub.memory)
    spec = {
        "image": sub.image,
        "command": ["sh", "-c", job_script(job.command, sub.env_setup, sub.python)],
        "environment": env,
        "working_dir": code_dir,
        "labels": {
            "antgo.run_id": job.run_id,
            "antgo.experiment_id": str(job.run.info.experiment_id),
            "antgo.code_digest": job.snapshot.digest,
        },
        "mounts": [
            Mount(target=target, source=source, type="bind", read_only=read_only)
            for source, target, read_only in (
                parse_mount(m, "docker submitter mounts") for m in sub.mounts
            )
        ],
        "detach": True,
    }
    if gpus:
        count = -1 if gpus == "all" else int(gpus)
        spec["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    if cpus:
        spec["nano_cpus"] = int(float(cpus) * 1e9)
    if memory:
        spec["mem_limit"] = f"{memory}m"
    if sub.network_mode:
        spec["network_mode"] = sub.network_mode
    return spec


class DockerJob(SubmittedJob):
    """A job in a container; its log stream is the job's output."""

    def __init__(self, run_id, client, sink, describe, container, keep: bool):
        super().__init__(run_id, client, sink, describe)
        self.container, self.keep = container, keep

    def _follow(self) -> int:
        for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=True):
            self.sink.write(chunk, "stdout")
        result = self.container.wait()
        return int(result.get("StatusCode", 1))

    def _stop(self) -> None:
        self.container.stop(timeout=int(GRACE_S))

    def _cleanup(self) -> None:
        if not self.keep:
            with contextlib.suppress(Exception):
                self.container.remove(force=True)


class DockerBackend(SubmitBackend):
    """The ``antgo-docker`` project backend."""

    kind = "docker"
    backend_name = "antgo-docker"
    #: how to reach the engine: replaced in tests by a fake client factory (no engine here)
    client_factory = staticmethod(make_client)

    def tracking_uri(self, sub, uri: str) -> str:
        engine_local = not sub.base_url or sub.base_url.startswith("unix://")
        loopback_ok = sub.network_mode == "host" and engine_local
        return check_tracking_uri(
            sub.tracking_uri or uri, f"a container of {sub.address}", loopback_ok
        )

    def connect(self, sub, tracking_uri: str):
        client = self.client_factory(sub)
        docker = require("docker", "submit")
        try:
            client.images.get(sub.image)
        except docker.errors.ImageNotFound:
            raise SubmitError(
                f"docker: image {sub.image} is not on {sub.address} (nothing is downloaded "
                f"unless asked: docker pull {shlex.quote(sub.image)})"
            ) from None
        return client

    def close(self, client) -> None:
        with contextlib.suppress(Exception):
            client.close()

    def run_tags(self, sub) -> dict:
        return {TAG_IMAGE: sub.image}

    def start(self, client, job):
        sub = job.submitter
        container = client.containers.create(**container_spec(sub, job))
        try:
            container.put_archive("/", job.snapshot.tar_bytes(prefix=f"{sub.workdir}/code"))
            job.client.set_tag(job.run_id, TAG_CONTAINER, container.id)
            container.start()
        except BaseException:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            raise
        return DockerJob(
            job.run_id, job.client, job.sink, f"docker {sub.address}", container, sub.keep_container
        )
