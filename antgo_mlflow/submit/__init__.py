"""Submitting training jobs elsewhere: SSH, Docker and a team's own script, as MLflow project backends.

``config`` keeps the per-user submitter files (``antgo submitter ...``); ``ssh``, ``docker`` and
``script`` are the ``mlflow.project_backend`` plugins ``antgo-ssh``, ``antgo-docker`` and
``antgo-script`` (setup.py); ``snapshot`` is what they ship; ``launcher`` runs on the remote side.
"""

BACKENDS = {"ssh": "antgo-ssh", "docker": "antgo-docker", "script": "antgo-script"}


def ssh_backend():
    """Entry point of ``antgo-ssh`` (MLflow calls it with no arguments)."""
    from antgo_mlflow.submit.ssh import SSHBackend

    return SSHBackend()


def docker_backend():
    """Entry point of ``antgo-docker``."""
    from antgo_mlflow.submit.docker import DockerBackend

    return DockerBackend()


def script_backend():
    """Entry point of ``antgo-script``."""
    from antgo_mlflow.submit.script import ScriptBackend

    return ScriptBackend()
