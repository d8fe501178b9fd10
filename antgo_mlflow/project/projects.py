"""Projects as MLflow experiments: create, look up, list, and keep settings in ``antgo.*`` tags.

Layout of a project in MLflow (nothing is stored anywhere else):

* the experiment is named after the project and tagged ``antgo.project=<name>``, ``antgo.kind=project``;
* ``antgo.git``, ``antgo.image``, ``antgo.auto``, ``antgo.metric``/``antgo.metric_mode`` (the metric
  that ranks runs), ``antgo.created_by``/``antgo.created_at`` are experiment tags;
* each recorded exp is a tag ``antgo.exp.<exp>`` (JSON), each data registration a tag
  ``antgo.data.<split>.<tag>`` (JSON), each setting a tag ``antgo.settings.<kind>`` (JSON);
* a setting too large for a tag is a JSON artifact of the project's *settings run* (a finished run
  tagged ``antgo.kind=settings``) and the tag holds ``{"$ref": "runs:/…", "sha256": …}``.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from antgo_mlflow.errors import TrackingError, UsageError

TAG_PROJECT = "antgo.project"
TAG_KIND = "antgo.kind"
TAG_EXP = "antgo.exp"
TAG_GIT = "antgo.git"
TAG_IMAGE = "antgo.image"
TAG_AUTO = "antgo.auto"
TAG_METRIC = "antgo.metric"
TAG_METRIC_MODE = "antgo.metric_mode"
EXP_PREFIX = "antgo.exp."
DATA_PREFIX = "antgo.data."
SETTINGS_PREFIX = "antgo.settings."
KIND_PROJECT = "project"
KIND_SETTINGS = "settings"

#: The metric that ranks runs when ``create project`` is given none (what the recipes log).
DEFAULT_METRIC = "val/top_1"
#: Longest JSON kept inline in an experiment tag; larger settings go to the settings run.
TAG_VALUE_LIMIT = 4000

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# -- small shared helpers ----------------------------------------------------------------------
def get_client():
    """An ``MlflowClient`` for the current ``MLFLOW_TRACKING_URI`` (MLflow's default without it)."""
    from mlflow import MlflowClient

    return MlflowClient()


def check_name(value: str | None, flag: str) -> str:
    """Validate a project/exp/tag name given by ``flag``; letters, digits, ``._-`` only."""
    if not value:
        raise UsageError(f"{flag} is required")
    if not _NAME_RE.match(value):
        raise UsageError(
            f"{flag}={value!r}: use letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )
    return value


def whoami() -> str:
    """``user@host`` of the caller, recorded with every role change and registration."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = os.environ.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


def utc_now() -> str:
    """The current UTC time as ISO 8601 with microseconds."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def error_code(exc: Exception) -> str:
    """The MLflow error code of an exception ('' for anything else)."""
    return str(getattr(exc, "error_code", "") or "")


@contextlib.contextmanager
def mlflow_errors() -> Iterator[None]:
    """Turn an unexpected ``MlflowException`` into a one-line ``TrackingError`` for the CLI."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        from mlflow import get_tracking_uri

        first = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()
        raise TrackingError(
            f"MLflow ({get_tracking_uri()}): {first[0] if first else type(exc).__name__}"
        ) from exc


# -- projects ----------------------------------------------------------------------------------
@dataclass
class Metric:
    """The metric that ranks a project's runs: a name and ``max`` or ``min``."""

    name: str | None
    mode: str = "max"

    def order_by(self) -> list[str]:
        """``search_runs`` ordering: best metric first, then newest."""
        order = (
            []
            if not self.name
            else [f"metrics.`{self.name}` {'DESC' if self.mode == 'max' else 'ASC'}"]
        )
        return order + ["attributes.start_time DESC"]


def parse_metric(text: str | None) -> Metric:
    """``NAME`` or ``NAME:max|min``; a name containing 'loss' or 'error' defaults to min."""
    if not text:
        return Metric(None)
    name, _, mode = text.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"--metric={text!r}: expected NAME or NAME:max|min")
    if not mode:
        mode = "min" if ("loss" in name.lower() or "error" in name.lower()) else "max"
    if mode not in ("max", "min"):
        raise UsageError(f"--metric={text!r}: the mode after ':' must be max or min")
    return Metric(name, mode)


def project_metric(experiment) -> Metric:
    """The project's ranking metric from its tags (no name: rank by start time)."""
    return Metric(
        experiment.tags.get(TAG_METRIC) or None, experiment.tags.get(TAG_METRIC_MODE) or "max"
    )


def get_project(name: str, client=None):
    """The MLflow experiment of project ``name``; one clear error if there is none."""
    check_name(name, "--project")
    client = client or get_client()
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.tags.get(TAG_PROJECT) != name:
        known = ", ".join(p.name for p in list_projects(client)[:10]) or "none yet"
        raise TrackingError(
            f"--project={name}: no such antgo project (known: {known}; create one with "
            f"'antgo create project --name={name}')"
        )
    if exp.lifecycle_stage != "active":
        raise TrackingError(
            f"--project={name}: its MLflow experiment is deleted (restore it with "
            f"'mlflow experiments restore --experiment-id {exp.experiment_id}')"
        )
    return exp


def list_projects(client=None) -> list:
    """All active antgo projects (experiments tagged ``antgo.kind=project``), by name."""
    client = client or get_client()
    found = client.search_experiments(filter_string=f"tags.`{TAG_KIND}` = '{KIND_PROJECT}'")
    return sorted(found, key=lambda e: e.name)


def git_basename(url: str) -> str:
    """``https://host/a/b.git`` -> ``b``; the default project name of ``--git``."""
    base = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return base[:-4] if base.endswith(".git") else base


def create_project(
    name: str | None = None,
    git: str | None = None,
    image: str | None = None,
    auto: bool = False,
    metric: str | None = None,
    clone: bool = False,
    clone_dir: str | os.PathLike | None = None,
) -> Any:
    """Create project ``name`` (default: the git URL's basename) as an MLflow experiment.

    An existing plain MLflow experiment of that name is adopted (tags added); an existing antgo
    project is an error. With ``clone`` the repository is cloned into ``clone_dir`` (default
    ``./<name>``) with ``git clone`` run without a shell. Returns the experiment.
    """
    if not name and not git:
        raise UsageError("--name is required (or --git, whose basename becomes the name)")
    name = check_name(name or git_basename(git or ""), "--name")
    if clone and not git:
        raise UsageError("--clone needs --git=<url>")
    if git and git.startswith("-"):
        raise UsageError(f"--git={git!r}: not a repository URL")
    # The shipped recipes log val/top_1; other tasks name theirs with --metric.
    parsed_metric = parse_metric(metric or DEFAULT_METRIC)
    client = get_client()
    existing = client.get_experiment_by_name(name)
    if existing is not None and existing.tags.get(TAG_PROJECT):
        raise TrackingError(
            f"--name={name}: project already exists (see 'antgo show project --project={name}')"
        )
    if existing is not None and existing.lifecycle_stage != "active":
        raise TrackingError(
            f"--name={name}: an MLflow experiment of that name is deleted; restore it with "
            f"'mlflow experiments restore --experiment-id {existing.experiment_id}' or pick another name"
        )
    target = None
    if clone:
        target = os.path.abspath(clone_dir or name)
        if os.path.exists(target):
            raise UsageError(f"--clone: {target} already exists")
        if shutil.which("git") is None:
            raise UsageError("--clone: git is not installed")
    tags = {
        TAG_PROJECT: name,
        TAG_KIND: KIND_PROJECT,
        TAG_AUTO: "true" if auto else "false",
        "antgo.created_by": whoami(),
        "antgo.created_at": utc_now(),
    }
    if git:
        tags[TAG_GIT] = git
    if image:
        tags[TAG_IMAGE] = image
    if parsed_metric.name:
        tags[TAG_METRIC] = parsed_metric.name
        tags[TAG_METRIC_MODE] = parsed_metric.mode
    if target:
        # Clone first: a failed clone leaves no half-made project behind.
        proc = subprocess.run(
            ["git", "clone", "--", git, target], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            raise UsageError(f"--git={git}: git clone failed: {last}")
    from mlflow.exceptions import MlflowException

    if existing is not None:
        for key, value in tags.items():
            client.set_experiment_tag(existing.experiment_id, key, value)
        experiment_id = existing.experiment_id
    else:
        try:
            experiment_id = client.create_experiment(name, tags=tags)
        except MlflowException as exc:
            if error_code(exc) in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise TrackingError(f"--name={name}: project already exists") from exc
            raise
    return client.get_experiment(experiment_id)


# -- settings (small: tag; large: artifact of the settings run) --------------------------------
def settings_run_id(client, experiment) -> str:
    """The project's settings run (created finished on first use)."""
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_SETTINGS}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment.experiment_id,
        run_name="antgo-settings",
        tags={TAG_KIND: KIND_SETTINGS, TAG_PROJECT: experiment.name},
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def put_json_tag(client, experiment, key: str, value: Any) -> None:
    """Store ``value`` under experiment tag ``key``: inline JSON, or a settings-run artifact."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if len(text) > TAG_VALUE_LIMIT:
        run_id = settings_run_id(client, experiment)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        path = f"settings/{key}-{digest[:12]}.json"
        client.log_text(run_id, text, path)
        text = json.dumps({"$ref": f"runs:/{run_id}/{path}", "sha256": digest})
    client.set_experiment_tag(experiment.experiment_id, key, text)


def read_json_tag(experiment, key: str, client=None) -> Any:
    """The JSON value stored by ``put_json_tag`` (None when unset)."""
    text = experiment.tags.get(key)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrackingError(f"project {experiment.name}: tag {key} is not valid JSON") from exc
    if isinstance(value, dict) and "$ref" in value:
        import mlflow.artifacts

        body = mlflow.artifacts.load_text(value["$ref"])
        if hashlib.sha256(body.encode("utf-8")).hexdigest() != value.get("sha256"):
            raise TrackingError(
                f"project {experiment.name}: {value['$ref']} does not match its sha256"
            )
        value = json.loads(body)
    return value


def delete_tag(client, experiment, key: str) -> None:
    """Remove an experiment tag if present."""
    if key in experiment.tags:
        client.delete_experiment_tag(experiment.experiment_id, key)


def prefixed(experiment, prefix: str) -> dict[str, str]:
    """Tags of ``experiment`` under ``prefix``, keyed by the rest of the key."""
    return {k[len(prefix) :]: v for k, v in experiment.tags.items() if k.startswith(prefix)}
