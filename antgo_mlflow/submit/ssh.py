"""``antgo-ssh``: run an MLflow project entry point on another machine over SSH (paramiko).

paramiko rather than asyncssh: ``SubmittedRun`` is a blocking API (``wait``/``cancel`` from any
thread), which paramiko's threads serve directly while asyncssh would need an event loop thread
of its own; paramiko also gives known_hosts checking with ``RejectPolicy`` and SFTP in one
dependency that the ``submit`` extra already carries.

A job: the snapshot (.tar.gz) and ``launch.py`` go by SFTP to ``<remote_dir>/<run id>/`` (created
0700), then one SSH channel runs ``shlex.join([python, launch.py, run_dir, "--", "bash", "-c",
script])``; the environment (tracking URI, run id, experiment id, credentials) is the first line
on the channel's stdin, not part of any command line. stdout/stderr come back on the channel.
``cancel()`` writes ``cancel`` to stdin: the launcher ends the job's process group. If this side
dies, the channel closes and the launcher ends the job as well.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import posixpath
import select
import shlex
import socket
import time
from pathlib import Path

from antgo_mlflow.errors import require
from antgo_mlflow.submit.backend import (
    GRACE_S,
    SubmitBackend,
    SubmitError,
    SubmittedJob,
    check_tracking_uri,
    is_loopback,
    job_script,
)

# paramiko logs tracebacks of failed handshakes at ERROR; the backend reports them as one line
logging.getLogger("paramiko").setLevel(logging.CRITICAL)
CONNECT_TIMEOUT_S = 15.0
TAG_REMOTE_DIR = "antgo.submit.remote_dir"


def _paramiko():
    return require("paramiko", "submit")


class _AcceptNewHostKey:
    """paramiko policy for ``accept_new_host_key: true``: trust a host seen for the first time and
    append its key to known_hosts (a *changed* key is still refused by paramiko)."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        paramiko = _paramiko()
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        with open(self.known_hosts, "a", encoding="utf-8") as fh:
            fh.write(line)
        self.known_hosts.chmod(0o600)


def connect(sub):
    """An authenticated ``paramiko.SSHClient`` to ``sub``, or SubmitError saying what is wrong."""
    paramiko = _paramiko()
    client = paramiko.SSHClient()
    known = Path(sub.known_hosts or "~/.ssh/known_hosts").expanduser()
    try:
        if known.is_file():
            client.load_host_keys(str(known))
        if Path("/etc/ssh/ssh_known_hosts").is_file():
            client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
    except (OSError, paramiko.SSHException) as exc:
        raise SubmitError(f"known_hosts {known}: cannot read it ({exc})") from None
    policy = _AcceptNewHostKey(known) if sub.accept_new_host_key else paramiko.RejectPolicy()
    client.set_missing_host_key_policy(policy)
    key = str(Path(sub.key_file).expanduser()) if sub.key_file else None
    where = f"ssh {sub.address}"
    if key and not Path(key).is_file():
        raise SubmitError(f"{where}: key_file {key} does not exist")
    try:
        client.connect(
            sub.ip,
            port=sub.port,
            username=sub.username,
            key_filename=key,
            look_for_keys=key is None,
            allow_agent=key is None,
            timeout=CONNECT_TIMEOUT_S,
            banner_timeout=CONNECT_TIMEOUT_S,
            auth_timeout=CONNECT_TIMEOUT_S,
        )
    except socket.gaierror:
        raise SubmitError(f"{where}: unknown host {sub.ip!r} (the name does not resolve)") from None
    except paramiko.BadHostKeyException as exc:
        raise SubmitError(
            f"{where}: the host key CHANGED ({exc.key.get_name()}), refusing to connect; if the host "
            f"was reinstalled, remove its old line from {known}"
        ) from None
    except paramiko.PasswordRequiredException:
        raise SubmitError(
            f"{where}: key_file {key} is passphrase-protected: load it with ssh-add and set key_file: ''"
        ) from None
    except paramiko.AuthenticationException:
        which = f"key_file {key}" if key else "the ssh-agent and ~/.ssh/id_* keys"
        raise SubmitError(
            f"{where}: key authentication failed with {which} (is its public key in the remote "
            "~/.ssh/authorized_keys? ssh-copy-id installs it)"
        ) from None
    except paramiko.ssh_exception.NoValidConnectionsError:
        raise SubmitError(
            f"{where}: connection refused (is sshd running on port {sub.port}?)"
        ) from None
    except TimeoutError:
        raise SubmitError(f"{where}: no answer within {CONNECT_TIMEOUT_S:.0f} s") from None
    except paramiko.SSHException as exc:
        text = str(exc)
        if "not found in known_hosts" in text:
            raise SubmitError(
                f"{where}: unknown host key (not in {known}); check it and add it "
                f"(ssh-keyscan -p {sub.port} {sub.ip} >> {known}), or set accept_new_host_key: true"
            ) from None
        raise SubmitError(f"{where}: {' '.join(text.split())}") from None
    except OSError as exc:
        raise SubmitError(f"{where}: {exc.strerror or exc}") from None
    return client


def remote_base(sftp, remote_dir: str) -> str:
    """``remote_dir`` as an absolute remote path (relative and ``~/`` paths are under $HOME)."""
    if remote_dir.startswith("~/") or remote_dir == "~":
        remote_dir = remote_dir[2:]
    if remote_dir.startswith("/"):
        return posixpath.normpath(remote_dir)
    return posixpath.normpath(posixpath.join(sftp.normalize("."), remote_dir))


def _makedirs(sftp, path: str, mode: int = 0o700) -> None:
    parts = path.strip("/").split("/")
    current = ""
    for part in parts:
        current += "/" + part
        try:
            sftp.stat(current)
        except FileNotFoundError:
            sftp.mkdir(current, mode)
            sftp.chmod(current, mode)


class SSHJob(SubmittedJob):
    """A job running under ``launch.py`` on the other end of an SSH channel."""

    def __init__(self, run_id, client, sink, describe, ssh, channel, run_dir):
        super().__init__(run_id, client, sink, describe)
        self.ssh, self.channel, self.run_dir = ssh, channel, run_dir

    def _follow(self) -> int:
        chan = self.channel
        while True:
            select.select([chan], [], [], 0.5)
            got = False
            while chan.recv_ready():
                self.sink.write(chan.recv(65536), "stdout")
                got = True
            while chan.recv_stderr_ready():
                self.sink.write(chan.recv_stderr(65536), "stderr")
                got = True
            if (
                chan.exit_status_ready()
                and not got
                and not chan.recv_ready()
                and not chan.recv_stderr_ready()
            ):
                break
            if chan.closed and not got:
                break
            transport = self.ssh.get_transport()
            if transport is None or not transport.is_active():
                raise ConnectionError("the SSH connection closed")
        code = chan.recv_exit_status()
        if code == -1:
            raise ConnectionError("the SSH channel closed without an exit status")
        return code

    def _stop(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.sendall(b"cancel\n")
        # if the launcher does not answer, kill the job's group by its recorded id
        if not self._done.wait(GRACE_S + 3):
            with contextlib.suppress(Exception):
                with self.ssh.open_sftp() as sftp, sftp.open(f"{self.run_dir}/job.pgid") as fh:
                    pgid = int(fh.read().decode().strip())
                _, out, _ = self.ssh.exec_command(shlex.join(["kill", "-KILL", "--", f"-{pgid}"]))
                out.channel.recv_exit_status()
            with contextlib.suppress(Exception):
                self.channel.close()

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.close()
        self.ssh.close()


class SSHBackend(SubmitBackend):
    """The ``antgo-ssh`` project backend."""

    kind = "ssh"
    backend_name = "antgo-ssh"

    def tracking_uri(self, sub, uri: str) -> str:
        return check_tracking_uri(sub.tracking_uri or uri, f"{sub.ip}", is_loopback(sub.ip))

    def connect(self, sub, tracking_uri: str):
        return connect(sub)

    def close(self, handle) -> None:
        handle.close()

    def start(self, ssh, job):
        from antgo_mlflow.submit import launcher

        sub, env = job.submitter, job.env
        sftp = ssh.open_sftp()
        try:
            base = remote_base(sftp, sub.remote_dir)
            _makedirs(sftp, base)
            run_dir = f"{base}/{job.run_id}"
            sftp.mkdir(run_dir, 0o700)
            sftp.chmod(run_dir, 0o700)
            t0 = time.perf_counter()
            data = job.snapshot.tar_bytes()
            sftp.putfo(io.BytesIO(data), f"{run_dir}/snapshot.tar.gz")
            sftp.putfo(io.BytesIO(Path(launcher.__file__).read_bytes()), f"{run_dir}/launch.py")
            for name in ("snapshot.tar.gz", "launch.py"):
                sftp.chmod(f"{run_dir}/{name}", 0o600)
            upload_s = time.perf_counter() - t0
        finally:
            sftp.close()
        job.client.set_tag(job.run_id, TAG_REMOTE_DIR, run_dir)
        job.sink.note(
            f"uploaded {len(data) / 1e6:.1f} MB to {sub.ip}:{run_dir} in {upload_s:.1f} s"
        )
        script = job_script(job.command, sub.env_setup, sub.python)
        argv = [sub.python, f"{run_dir}/launch.py", run_dir, "--", "bash", "-c", script]
        channel = ssh.get_transport().open_session()
        channel.exec_command(shlex.join(argv))
        channel.sendall((json.dumps({"env": env}) + "\n").encode())
        return SSHJob(job.run_id, job.client, job.sink, f"ssh {sub.address}", ssh, channel, run_dir)
