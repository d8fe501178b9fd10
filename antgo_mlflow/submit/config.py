"""Per-user submitter configuration: antgo's YAML shapes, validated, kept under ``config_dir()``.

Files (folder 0700, files 0600; ``ANTGO_CONFIG_DIR`` moves the folder):

* ``ssh-<ip>-submit-config.yaml``: one per registered SSH host (antgo's name);
* ``docker-submit-config.yaml``: the Docker submitter;
* ``submit-config.yaml``: the team's own submit script (``folder``, ``script``);
* ``selected.json``: ``{"ssh": "<ip>"}``, the host ``antgo submitter select`` picked.

This is machine configuration, not experiment data, so it lives beside the user, not in MLflow.
Nothing here imports mlflow, paramiko or docker (``antgo submitter ls`` stays fast).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from antgo_mlflow.env import config_dir
from antgo_mlflow.errors import ConfigError, UsageError

KINDS = ("ssh", "docker", "script")
SELECTED = "selected.json"
DOCKER_FILE = "docker-submit-config.yaml"
SCRIPT_FILE = "submit-config.yaml"
SSH_TEMPLATE_NAME = "ssh-submit-config.yaml"
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_:]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SSH_TEMPLATE = """\
# antgo-mlflow SSH submitter (antgo's ssh-submit-config.yaml). Register it with
#   antgo submitter update --ssh --config=ssh-submit-config.yaml
# Keys only: a password is refused. Set up the key once with
#   ssh-keygen -t ed25519 && ssh-copy-id yourname@192.168.1.10
config:
  username: yourname            # the remote login
  ip: 192.168.1.10              # the remote host (name or address)
  port: 22
  key_file: ~/.ssh/id_ed25519   # private key; '' = ssh-agent and ~/.ssh/id_* keys
  known_hosts: ~/.ssh/known_hosts
  accept_new_host_key: false    # true: trust and record the key of a host seen the first time
  remote_dir: antgo-runs        # per-run folders <remote_dir>/<run id>, 0700 (relative: under $HOME)
  python: python3               # remote interpreter with antgo-mlflow's dependencies installed
  env_setup: ''                 # shell line run before the job, e.g. 'source ~/venv/bin/activate'
  tracking_uri: ''              # the MLflow server as the remote sees it ('' = MLFLOW_TRACKING_URI)
  env: {}                       # extra environment variables for the job
"""

DOCKER_TEMPLATE = """\
# antgo-mlflow Docker submitter. Register it with
#   antgo submitter update --docker --config=docker-submit-config.yaml
config:
  image: python:3.11-slim       # image with antgo-mlflow's dependencies installed
  base_url: ''                  # '' = local engine (DOCKER_HOST or /var/run/docker.sock); ssh://user@host
  gpus: 0                       # GPUs per job (a number, or 'all'); the project's --gpu wins when set
  cpu_num: 0                    # CPU limit (0 = none); the project's --cpu wins when set
  memory: 0                     # memory limit in MB (0 = none); the project's --memory wins when set
  mounts: []                    # extra bind mounts, e.g. ['/data:/data:ro']
  workdir: /workspace           # where the project snapshot is copied in the container
  network_mode: ''              # 'host' lets the job reach an MLflow server on the engine's loopback
  python: python                # interpreter in the image
  env_setup: ''                 # shell line run before the job
  tracking_uri: ''              # the MLflow server as the container sees it ('' = MLFLOW_TRACKING_URI)
  env: {}                       # extra environment variables for the job
  keep_container: false         # true: leave the stopped container for 'docker logs'
"""

SCRIPT_TEMPLATE = """\
# antgo-mlflow custom submit script (antgo's submit-config.yaml). Register it with
#   antgo submitter --config=submit-config.yaml
# The script is called as
#   <folder>/<script> --image IMAGE --launch-argv 'COMMAND' --gpu-num N --cpu-num N --memory-size NM
# from the project folder, with MLFLOW_TRACKING_URI, MLFLOW_RUN_ID, MLFLOW_EXPERIMENT_ID and
# ANTGO_SNAPSHOT (a .tar.gz of the project) set; its exit code and output are the job's.
folder: 'replace with your submit code folder'
script: 'replace with your launch script'
image: ''                       # '' = the project's image (antgo create project --image=...)
env: {}                         # extra environment variables for the script
"""

TEMPLATES = {
    "ssh": (SSH_TEMPLATE_NAME, SSH_TEMPLATE),
    "docker": (DOCKER_FILE, DOCKER_TEMPLATE),
    "script": (SCRIPT_FILE, SCRIPT_TEMPLATE),
}


@dataclass
class SSHSubmitter:
    """One SSH host: where and as whom to run, how to authenticate (a key), what to run with."""

    username: str
    ip: str
    port: int = 22
    key_file: str = ""
    known_hosts: str = "~/.ssh/known_hosts"
    accept_new_host_key: bool = False
    remote_dir: str = "antgo-runs"
    python: str = "python3"
    env_setup: str = ""
    tracking_uri: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``user@host:port``, what runs record as the submitter host."""
        return f"{self.username}@{self.ip}:{self.port}"


@dataclass
class DockerSubmitter:
    """A Docker engine (local or ``ssh://``) and the container a job runs in."""

    image: str
    base_url: str = ""
    gpus: int | str = 0
    cpu_num: float = 0
    memory: int = 0
    mounts: list[str] = field(default_factory=list)
    workdir: str = "/workspace"
    network_mode: str = ""
    python: str = "python"
    env_setup: str = ""
    tracking_uri: str = ""
    env: dict[str, str] = field(default_factory=dict)
    keep_container: bool = False

    @property
    def address(self) -> str:
        return self.base_url or "local docker engine"


@dataclass
class ScriptSubmitter:
    """The team's own submit script (antgo's custom submitter)."""

    folder: str
    script: str
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The script's absolute path (``script`` relative to ``folder``)."""
        return (Path(self.folder).expanduser() / Path(self.script).expanduser()).absolute()

    @property
    def address(self) -> str:
        return str(self.path)


CLASSES = {"ssh": SSHSubmitter, "docker": DockerSubmitter, "script": ScriptSubmitter}


# -- validation --------------------------------------------------------------------------------
class _Fields:
    """Type checks on one section; errors read ``<file>: config.<key>=<value> must be ...``."""

    def __init__(self, section: dict, where: str, prefix: str):
        self.section, self.where, self.prefix = section, where, prefix

    def fail(self, key: str, what: str):
        raise ConfigError(f"{self.where}: {self.prefix}{key}{what}")

    def strings(self, *keys: str) -> None:
        for key in keys:
            value = self.section.get(key)
            if value is None:
                self.section.pop(key, None)
            elif not isinstance(value, str):
                self.fail(key, f"={value!r} must be a string")

    def boolean(self, key: str) -> None:
        if key in self.section and not isinstance(self.section[key], bool):
            self.fail(key, f"={self.section[key]!r} must be true or false")

    def number(self, key: str, integer: bool = False) -> None:
        value = self.section.get(key, 0)
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
            self.fail(key, f"={value!r} must be {'an integer' if integer else 'a number'} >= 0")

    def env(self) -> None:
        env = self.section.get("env")
        if env in (None, ""):
            self.section["env"] = {}
            return
        if not isinstance(env, dict):
            self.fail("env", " must be a mapping NAME: value")
        out = {}
        for name, value in env.items():
            if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
                self.fail("env", f": {name!r} is not a valid variable name")
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                self.fail(f"env.{name}", " must be a string or a number")
            out[name] = str(value)
        self.section["env"] = out


def _section(data: Any, where: str, kind: str) -> tuple[dict, str]:
    """The mapping of fields (antgo's ``config:`` section, or the top level) and its key prefix."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping (see 'antgo submitter template --{kind}')")
    if kind == "script" or "config" not in data:
        return dict(data), ""
    section = data["config"]
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: config must be a mapping of fields")
    # antgo's ssh file also had top-level `script: ''` and `image: ''`; empty ones are harmless.
    for key, value in data.items():
        if key != "config" and value not in (None, ""):
            hint = (
                " (to run in a container over SSH use the Docker submitter, base_url: ssh://user@host)"
                if key == "image"
                else ""
            )
            raise ConfigError(f"{where}: top-level {key}: is not supported{hint}")
    return dict(section), "config."


def validate(kind: str, data: Any, where: str) -> SSHSubmitter | DockerSubmitter | ScriptSubmitter:
    """Check a submitter mapping of ``kind``; raise ConfigError naming ``where`` and the field."""
    if kind not in CLASSES:
        raise UsageError(f"no submitter kind {kind!r} (choose {', '.join(KINDS)})")
    section, prefix = _section(data, where, kind)
    password = section.pop("password", None)
    if password not in (None, ""):
        raise ConfigError(
            f"{where}: {prefix}password is not supported: submitters authenticate with keys only "
            "(remove it, set key_file, and install the key with ssh-copy-id)"
        )
    cls = CLASSES[kind]
    declared = fields(cls)
    for key in section:
        if key not in {f.name for f in declared}:
            names = ", ".join(f.name for f in declared)
            raise ConfigError(f"{where}: unknown field {prefix}{key} (fields: {names})")
    for f in declared:
        if (
            f.default is MISSING
            and f.default_factory is MISSING
            and section.get(f.name) in (None, "")
        ):
            raise ConfigError(f"{where}: {prefix}{f.name} is missing")
    check = _Fields(section, where, prefix)
    check.env()
    return {"ssh": _validate_ssh, "docker": _validate_docker, "script": _validate_script}[kind](
        check
    )


def _validate_ssh(check: _Fields) -> SSHSubmitter:
    section = check.section
    check.strings(
        "username",
        "ip",
        "key_file",
        "known_hosts",
        "remote_dir",
        "python",
        "env_setup",
        "tracking_uri",
    )
    section["ip"] = section["ip"].strip()
    if not _HOST_RE.match(section["ip"]):
        check.fail("ip", f"={section['ip']!r} is not a host name or address")
    port = section.get("port", 22)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        check.fail("port", f"={port!r} must be an integer between 1 and 65535")
    section["port"] = port
    check.boolean("accept_new_host_key")
    section["remote_dir"] = section.get("remote_dir") or "antgo-runs"
    if ".." in Path(section["remote_dir"]).parts:
        check.fail("remote_dir", " must not contain '..'")
    section["python"] = section.get("python") or "python3"
    return SSHSubmitter(**section)


def _validate_docker(check: _Fields) -> DockerSubmitter:
    section = check.section
    check.strings(
        "image", "base_url", "workdir", "network_mode", "python", "env_setup", "tracking_uri"
    )
    gpus = section.get("gpus", 0)
    if not (gpus == "all" or (isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 0)):
        check.fail("gpus", f"={gpus!r} must be a number >= 0 or 'all'")
    check.number("cpu_num")
    check.number("memory", integer=True)
    mounts = section.get("mounts") or []
    if not isinstance(mounts, list):
        check.fail("mounts", " must be a list of '/host/path:/container/path[:ro]'")
    for spec in mounts:
        parse_mount(spec, f"{check.where}: {check.prefix}mounts")
    section["mounts"] = list(mounts)
    workdir = section.get("workdir") or "/workspace"
    if not workdir.startswith("/") or ".." in workdir.split("/"):
        check.fail("workdir", f"={workdir!r} must be an absolute path in the container")
    section["workdir"] = workdir.rstrip("/") or "/workspace"
    section["python"] = section.get("python") or "python"
    check.boolean("keep_container")
    return DockerSubmitter(**section)


def parse_mount(spec: Any, where: str) -> tuple[str, str, bool]:
    """``'host:container[:ro|rw]'`` -> ``(host, container, read_only)``."""
    if not isinstance(spec, str):
        raise ConfigError(f"{where}: {spec!r} must be 'host:container[:ro]'")
    parts = spec.split(":")
    mode = "rw"
    if len(parts) == 3:
        *parts, mode = parts
    if len(parts) != 2 or mode not in ("ro", "rw") or not all(p.startswith("/") for p in parts):
        raise ConfigError(f"{where}: {spec!r} must be '/host/path:/container/path[:ro]'")
    return parts[0], parts[1], mode == "ro"


def _validate_script(check: _Fields) -> ScriptSubmitter:
    check.strings("folder", "script", "image")
    submitter = ScriptSubmitter(**check.section)
    check_script(submitter, check.where)
    return submitter


def check_script(submitter: ScriptSubmitter, where: str) -> Path:
    """The script's path, or ConfigError when it does not exist or is not executable."""
    path = submitter.path
    if not path.is_file():
        raise ConfigError(f"{where}: script {path} does not exist")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"{where}: script {path} is not executable (chmod +x {path})")
    return path


# -- the per-user store ------------------------------------------------------------------------
def store_dir(create: bool = False) -> Path:
    """The configuration folder; with ``create`` it is made 0700 (and tightened if it was looser)."""
    folder = config_dir()
    if create:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            folder.chmod(0o700)
    return folder


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically as a 0600 file (mkstemp creates 0600; keep it so)."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _dump(kind: str, submitter) -> str:
    import yaml

    data = asdict(submitter)
    body = data if kind == "script" else {"config": data}
    return f"# registered by antgo submitter ({kind}); edit with 'antgo submitter update'\n" + (
        yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
    )


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file or raise ConfigError naming it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{at}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a submitter config") from None


def ssh_file(ip: str) -> Path:
    return store_dir() / f"ssh-{ip}-submit-config.yaml"


def _registered_path(kind: str, ip: str | None = None) -> Path:
    if kind == "ssh":
        return ssh_file(ip or "")
    return store_dir() / (DOCKER_FILE if kind == "docker" else SCRIPT_FILE)


def write_template(kind: str, folder: str | os.PathLike = ".", force: bool = False) -> Path:
    """Write the template of ``kind`` into ``folder``; refuse to overwrite unless ``force``."""
    name, text = TEMPLATES[kind]
    path = Path(folder) / name
    if path.exists() and not force:
        raise UsageError(f"{path} exists (edit it, or pass --force to overwrite it)")
    from antgo_mlflow.fileio import atomic_write_text

    atomic_write_text(path, text)
    return path


def register(kind: str, config: str | os.PathLike | None = None, data: dict | None = None):
    """Validate a submitter (a YAML file or a mapping) and store it; return it.

    The first SSH host registered becomes the selected one.
    """
    if config is not None:
        raw = read_yaml(config)
        where = str(config)
        folder = raw.get("folder") if kind == "script" and isinstance(raw, dict) else None
        if isinstance(folder, str) and folder and not Path(folder).expanduser().is_absolute():
            # a relative folder in submit-config.yaml is relative to that file
            raw["folder"] = str(Path(config).expanduser().absolute().parent / folder)
    else:
        raw, where = data or {}, f"--{kind}"
    submitter = validate(kind, raw, where)
    if kind == "script":
        submitter.folder = str(Path(submitter.folder).expanduser().absolute())
    if kind == "ssh" and submitter.key_file:
        key = Path(submitter.key_file).expanduser()
        if not key.is_file():
            raise ConfigError(f"{where}: key_file {key} does not exist")
    store_dir(create=True)
    _write_private(_registered_path(kind, getattr(submitter, "ip", None)), _dump(kind, submitter))
    if kind == "ssh" and not selected_ip():
        select(submitter.ip)
    return submitter


def registered_ssh() -> list[SSHSubmitter]:
    """Every registered SSH host, sorted by ip."""
    folder = store_dir()
    out = []
    for path in sorted(folder.glob("ssh-*-submit-config.yaml")):
        out.append(validate("ssh", read_yaml(path), str(path)))
    return sorted(out, key=lambda s: s.ip)


def load(kind: str, ip: str | None = None):
    """The registered submitter of ``kind`` (SSH: host ``ip``, default the selected one)."""
    if kind == "ssh":
        ip = ip or selected_ip()
        if not ip:
            raise UsageError(
                "no SSH submitter selected: register one with "
                "'antgo submitter update --ssh --config=ssh-submit-config.yaml'"
            )
        path = ssh_file(ip)
        if not path.is_file():
            known = ", ".join(s.ip for s in registered_ssh()) or "none"
            raise UsageError(
                f"--ip={ip}: no SSH submitter registered for this host (registered: {known}; "
                "add it with 'antgo submitter update --ssh --config=...')"
            )
        return validate("ssh", read_yaml(path), str(path))
    path = _registered_path(kind)
    if not path.is_file():
        how = (
            "antgo submitter --config=submit-config.yaml"
            if kind == "script"
            else (f"antgo submitter update --{kind} --config={DOCKER_FILE}")
        )
        raise UsageError(f"no {kind} submitter registered (register one with '{how}')")
    return validate(kind, read_yaml(path), str(path))


def resolve(kind: str, given: dict):
    """The submitter a ``--backend-config`` means: a registered one (SSH: by ``ip``; none: the
    selected host) with any other given fields laid over it, or, when nothing is registered
    under that name, the given fields as a whole config."""
    where = "--backend-config"
    if kind == "ssh":
        ip = given.get("ip")
        if (ip and ssh_file(str(ip)).is_file()) or (not ip and "username" not in given):
            base = asdict(load("ssh", ip))
        elif ip and "username" not in given:
            base = asdict(load("ssh", ip))  # raises: no submitter registered for this host
        else:
            base = {}
    elif _registered_path(kind).is_file():
        base = asdict(load(kind))
    elif not given:
        base = asdict(load(kind))  # raises: nothing registered
    else:
        base = {}
    return validate(kind, {**base, **given}, where)


def selected_ip() -> str | None:
    """The selected SSH host, or None."""
    path = store_dir() / SELECTED
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("ssh")
    except (json.JSONDecodeError, AttributeError):
        raise ConfigError(
            f"{path}: not valid JSON (delete it and run 'antgo submitter select')"
        ) from None
    return value or None


def select(ip: str) -> None:
    """Make registered host ``ip`` the default SSH submitter."""
    if not ssh_file(ip).is_file():
        load("ssh", ip)  # raises the one-line "not registered" error
    store_dir(create=True)
    _write_private(store_dir() / SELECTED, json.dumps({"ssh": ip}) + "\n")


def listing(kind: str | None = None) -> list[dict]:
    """Rows ``{kind, name, address, selected}`` for ``antgo submitter ls`` (no secrets in them)."""
    rows: list[dict] = []
    kinds = [kind] if kind else list(KINDS)
    if "ssh" in kinds:
        chosen = selected_ip()
        for s in registered_ssh():
            rows.append(
                {
                    "kind": "ssh",
                    "name": s.ip,
                    "address": s.address,
                    "remote_dir": s.remote_dir,
                    "selected": s.ip == chosen,
                }
            )
    for other in ("docker", "script"):
        if other in kinds and _registered_path(other).is_file():
            s = load(other)
            row = {"kind": other, "name": other, "address": s.address, "selected": True}
            if other == "docker":
                row["image"] = s.image
            rows.append(row)
    return rows
