"""A throw-away OpenSSH server on 127.0.0.1 (own host key, authorized_keys, config) for tests and
benchmarks: ``with LoopbackSSHD(folder) as sshd: ...`` (``sshd.port``, ``sshd.client_key``,
``sshd.known_hosts``). It runs as the current user; Debian's ``openssh-server`` provides sshd."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    from antgo_mlflow.review.browser import free_port as pick

    return pick()


def sshd_missing_reason() -> str | None:
    """Why a loopback sshd cannot run here (None when it can)."""
    if not Path(SSHD).is_file():
        return "OpenSSH server not installed (apt-get install -y openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen not installed"
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        try:
            Path("/run/sshd").mkdir(mode=0o755)
        except OSError as exc:
            return f"sshd needs /run/sshd ({exc})"
    return None


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "antgo-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


class LoopbackSSHD:
    """sshd -D on a free loopback port, key auth only, for the current user."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.user = getpass.getuser()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> LoopbackSSHD:
        f = self.folder
        f.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(f / "host_ed25519")
        self.client_key = keygen(f / "client_ed25519")
        self.other_key = keygen(f / "other_ed25519")  # valid key, not authorized
        self.authorized = f / "authorized_keys"
        self.authorized.write_text((f / "client_ed25519.pub").read_text())
        self.authorized.chmod(0o600)
        host_pub = (f / "host_ed25519.pub").read_text().split()
        self.known_hosts = f / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config = f / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.authorized}",
                    f"PidFile {f / 'sshd.pid'}",
                    "UsePAM no",
                    "StrictModes no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {self.user}",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "MaxStartups 50:30:100",
                    "",
                ]
            )
        )
        self.log = open(f / "sshd.log", "wb")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if self.proc.poll() is not None or time.time() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"sshd did not start: {(f / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def submitter(self, **overrides) -> dict:
        """A submitter mapping for this server (``config:`` fields)."""
        fields = {
            "username": self.user,
            "ip": "127.0.0.1",
            "port": self.port,
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "remote_dir": str(self.folder / "remote"),
        }
        fields.update(overrides)
        return fields

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
