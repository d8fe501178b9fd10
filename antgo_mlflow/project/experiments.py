"""Experiments ("exps") of a project: scaffold + record, list runs as a table, and run ``train``.

An exp is a group of the project's runs tagged ``antgo.exp=<exp>``; ``antgo create exp`` also
records it as project tag ``antgo.exp.<exp>`` (JSON ``{recipe, folder, created_by, created_at}``).

How a folder is marked as belonging to an antgo project (used by ``context_provider`` and by
``antgo train``): an ``antgo:`` section in its ``MLproject`` file::

    antgo:
      project: mycls
      exp: mycls1

``create exp`` writes that section (``project`` only: a project root holds several exps side
by side, ``<root>/mycls1/``, ``<root>/mycls2/``, picked by the MLproject's ``exp`` parameter);
environment variables ``ANTGO_PROJECT`` / ``ANTGO_EXP`` override it (``antgo train`` sets them for
the child process).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from antgo_mlflow import env
from antgo_mlflow.errors import TrackingError, UsageError
from antgo_mlflow.fileio import atomic_write_text
from antgo_mlflow.project.projects import (
    EXP_PREFIX,
    KIND_SETTINGS,
    TAG_EXP,
    TAG_KIND,
    TAG_PROJECT,
    check_name,
    get_client,
    get_project,
    project_metric,
    utc_now,
    whoami,
)

ENV_PROJECT = env.ANTGO_PROJECT
ENV_EXP = env.ANTGO_EXP
MLPROJECT = "MLproject"


# -- MLproject marker --------------------------------------------------------------------------
def read_marker(mlproject: Path) -> dict[str, str]:
    """The ``antgo:`` section of an MLproject file (``{}`` when absent)."""
    import yaml

    data = yaml.safe_load(mlproject.read_text(encoding="utf-8")) or {}
    section = data.get("antgo") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        return {}
    return {k: str(v) for k, v in section.items() if k in ("project", "exp") and v}


def write_marker(mlproject: Path, project: str, exp: str | None) -> None:
    """Add or replace the ``antgo:`` section of an MLproject file, keeping the rest verbatim."""
    lines = mlproject.read_text(encoding="utf-8").splitlines()
    out, skipping = [], False
    for line in lines:
        if line.startswith("antgo:"):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    # Quoted: names such as "1e5" or "null" must stay strings.
    section = [
        "",
        "# antgo project marker: runs started here get tags antgo.project / antgo.exp",
        "antgo:",
        f'  project: "{project}"',
    ]
    if exp:
        section.append(f'  exp: "{exp}"')
    atomic_write_text(mlproject, "\n".join(out + section) + "\n")


def find_marker(start: str | os.PathLike | None = None) -> dict[str, str]:
    """``{project, exp}`` for a folder: env vars first, then the nearest MLproject upwards."""
    found: dict[str, str] = {}
    here = Path(start or os.getcwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / MLPROJECT
        if candidate.is_file():
            found = read_marker(candidate)
            break
    if project := env.text(ENV_PROJECT):
        found = {"project": project}
    if exp := env.text(ENV_EXP):
        found["exp"] = exp
    return found


# -- create / list -----------------------------------------------------------------------------
def _scaffold(name: str, root: Path, recipe: str | None) -> None:
    """Write exp ``name`` into project root ``root`` (``create mvp``: beside its other exps)."""
    from antgo_mlflow.tools.scaffold import create_mvp

    create_mvp(name, str(root), force=False, recipe=recipe or "cifar10")


def create_exp(
    project: str, name: str, recipe: str | None = None, tgt: str | os.PathLike = "."
) -> dict:
    """Scaffold exp ``name`` as ``<tgt>/<name>/`` in project root ``tgt`` (the ``create mvp``
    layout: one MLproject, README.md, install.sh, ... shared by the exps beside each other) and
    record it on ``project``; the root's MLproject gets the antgo marker.

    ``mlflow run . -e train -P exp=<name>`` or ``antgo train --exp=<name>`` from ``tgt`` trains it.
    """
    check_name(name, "--name")
    if recipe:
        check_name(recipe, "--recipe")
    client = get_client()
    experiment = get_project(project, client)
    if EXP_PREFIX + name in experiment.tags:
        raise TrackingError(f"--name={name}: project {project} already has this exp")
    root = Path(tgt).absolute()
    folder = root / name
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} already exists and is not empty")
    mlproject = root / MLPROJECT
    owner = read_marker(mlproject).get("project") if mlproject.is_file() else None
    if owner and owner != project:
        raise UsageError(
            f"{mlproject}: this folder holds exps of project {owner}; create exps of {project} "
            "in another folder (--tgt)"
        )
    _scaffold(name, root, recipe)
    if mlproject.is_file():
        write_marker(mlproject, project, None)
    record = {
        "recipe": recipe or "cifar10",
        "folder": str(root),
        "created_by": whoami(),
        "created_at": utc_now(),
    }
    client.set_experiment_tag(
        experiment.experiment_id, EXP_PREFIX + name, json.dumps(record, sort_keys=True)
    )
    return {"exp": name, **record}


def list_exps(project: str, client=None) -> dict[str, dict]:
    """Exps of the project: recorded ones plus any exp name found on its runs."""
    client = client or get_client()
    experiment = get_project(project, client)
    out: dict[str, dict] = {}
    for key, value in experiment.tags.items():
        if key.startswith(EXP_PREFIX):
            try:
                out[key[len(EXP_PREFIX) :]] = json.loads(value)
            except json.JSONDecodeError:
                out[key[len(EXP_PREFIX) :]] = {}
    for run in _project_runs(client, experiment):
        name = run.data.tags.get(TAG_EXP)
        if name and name not in out:
            out[name] = {"recorded": False}
    return dict(sorted(out.items()))


def _project_runs(client, experiment, max_results: int = 1000) -> list:
    runs = client.search_runs(
        [experiment.experiment_id],
        order_by=project_metric(experiment).order_by(),
        max_results=max_results,
    )
    return [r for r in runs if r.data.tags.get(TAG_KIND) != KIND_SETTINGS]


_KEY_PARAMS = (
    "lr",
    "optimizer.lr",
    "epochs",
    "max_epochs",
    "batch_size",
    "data.train_dataloader.samples_per_gpu",
    "model.type",
)


def _key_params(params: dict[str, str], limit: int = 4) -> dict[str, str]:
    # Training runs log the whole flattened config; show the few knobs people compare.
    filled = {k: v for k, v in params.items() if v not in ("", "None")}
    keys = [k for k in _KEY_PARAMS if k in filled] or sorted(filled)
    return {k: filled[k] for k in keys[:limit]}


def _key_metrics(metrics: dict[str, float], first: str | None, limit: int = 4) -> dict[str, float]:
    # The ranking metric, then validation metrics, then losses, then the rest.
    def rank(name: str) -> tuple:
        return (name != first, not name.startswith(("val", "test")), "loss" not in name, name)

    return {k: metrics[k] for k in sorted(metrics, key=rank)[:limit]}


def runs_table(
    project: str, exp: str | None = None, metric: str | None = None, client=None
) -> list[dict]:
    """Rows ``{id, exp, status, start, duration_s, params, metrics}`` sorted by the project metric.

    RUNNING runs whose trainer is gone are marked KILLED first (``antgo_mlflow.engine.run_owner``).
    """
    client = client or get_client()
    experiment = get_project(project, client)
    rank = project_metric(experiment)
    if metric:
        from antgo_mlflow.project.projects import parse_metric

        rank = parse_metric(metric)
    runs = _project_runs(client, experiment)
    from antgo_mlflow.credentials import redact
    from antgo_mlflow.engine.run_owner import reap

    if reap(client, runs):  # runs whose trainer died are KILLED, not RUNNING forever
        runs = _project_runs(client, experiment)
    if exp:
        runs = [r for r in runs if r.data.tags.get(TAG_EXP) == exp]
    if rank.name:
        sign = -1 if rank.mode == "max" else 1
        runs.sort(
            key=lambda r: (
                rank.name not in r.data.metrics,
                sign * r.data.metrics.get(rank.name, 0.0),
                -r.info.start_time,
            )
        )
    rows = []
    for run in runs:
        info = run.info
        end = info.end_time or (int(time.time() * 1000) if info.status == "RUNNING" else None)
        metrics = _key_metrics(run.data.metrics, rank.name)
        rows.append(
            {
                "id": info.run_id,
                "exp": run.data.tags.get(TAG_EXP, ""),
                "name": info.run_name,
                "status": info.status,
                "start": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start_time / 1000))
                if info.start_time
                else "",
                "duration_s": round((end - info.start_time) / 1000, 1)
                if end and info.start_time
                else None,
                "params": redact(_key_params(run.data.params)),
                "metrics": metrics,
            }
        )
    return rows


def best_runs(project: str, client=None) -> dict[str, dict]:
    """The best run per exp (first row per exp of ``runs_table``, finished runs first)."""
    best: dict[str, dict] = {}
    rows = runs_table(project, client=client)
    for row in sorted(rows, key=lambda r: r["status"] != "FINISHED"):
        if row["exp"] and row["exp"] not in best:
            best[row["exp"]] = row
    return best


# -- train -------------------------------------------------------------------------------------
def exp_folder(
    project: str, exp: str, experiment=None, cwd: str | os.PathLike | None = None
) -> Path:
    """The folder whose MLproject runs exp ``exp``: ``./<exp>`` (a root of its own), then the
    recorded project root, then ``.`` (a root holding ``./<exp>/`` beside other exps)."""
    cwd = Path(cwd or os.getcwd()).absolute()
    candidates = [cwd / exp]
    if experiment is not None and EXP_PREFIX + exp in experiment.tags:
        try:
            folder = json.loads(experiment.tags[EXP_PREFIX + exp]).get("folder")
        except json.JSONDecodeError:
            folder = None
        if folder:
            candidates.append(Path(folder))
    candidates.append(cwd)
    for folder in candidates:
        if not (folder / MLPROJECT).is_file():
            continue
        # a shared root trains the exp folder its `exp` parameter names: it must be there
        if folder == candidates[0] or (folder / exp).is_dir() or not _has_exp_parameter(folder):
            return folder
    raise UsageError(
        f"--exp={exp}: no MLproject in {candidates[0]} or {cwd} (run 'antgo create exp' first)"
    )


def _has_exp_parameter(folder: Path) -> bool:
    import yaml

    try:
        spec = yaml.safe_load((folder / MLPROJECT).read_text(encoding="utf-8")) or {}
        return "exp" in ((spec.get("entry_points") or {}).get("train") or {}).get("parameters", {})
    except (yaml.YAMLError, AttributeError, OSError):
        return False


def _new_train_run(
    project: str,
    exp: str,
    gpu_id: str | None,
    params: dict[str, Any] | None,
    entry_point: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_run=None,
) -> tuple:
    """Check the exp's entry point and parameters, then create its tagged run (plus ``tags``).

    ``run_id``: train into this existing run instead (a resumed one: nothing new is created or
    logged). ``on_run(run_id)`` is called once the run exists, before anything trains.
    Returns ``(client, experiment, folder, params, run_id)``; nothing is created on bad input.
    """
    from mlflow.entities import Param, SourceType
    from mlflow.exceptions import ExecutionException
    from mlflow.projects.utils import load_project
    from mlflow.utils.mlflow_tags import (
        MLFLOW_PROJECT_ENTRY_POINT,
        MLFLOW_SOURCE_NAME,
        MLFLOW_SOURCE_TYPE,
    )

    from antgo_mlflow.credentials import is_secret_key

    check_name(exp, "--exp")
    client = get_client()
    experiment = get_project(project, client)
    folder = exp_folder(project, exp, experiment)
    spec = load_project(str(folder))
    if entry_point not in spec._entry_points and not entry_point.endswith((".py", ".sh")):
        raise UsageError(
            f"{folder / MLPROJECT}: no entry point {entry_point!r} (has {', '.join(spec._entry_points) or 'none'})"
        )
    params = {k: str(v) for k, v in (params or {}).items()}
    secret = [k for k in params if is_secret_key(k)]
    if secret:  # -P values are MLflow params and `mlflow run` arguments: visible to everyone
        raise UsageError(
            f"-P {secret[0]}: secrets never go into params; use an environment variable"
        )
    entry = spec._entry_points.get(entry_point)
    declared = entry.parameters if entry is not None else {}
    if "exp" in declared:  # a project root with several exps side by side
        params.setdefault("exp", exp)
    if gpu_id is not None:
        for name in ("gpu-id", "gpu_id"):
            if name in declared:
                params.setdefault(name, str(gpu_id))
    if entry is not None:
        try:  # missing/ill-typed parameters fail here, before any run exists
            entry.compute_parameters(params, storage_dir=None)
        except ExecutionException as exc:
            raise UsageError(f"{folder / MLPROJECT}: {str(exc).splitlines()[0]}") from exc
    if run_id is not None:  # resuming: the run has its tags, params and datasets already
        client.get_run(run_id)  # (and must exist)
        if on_run is not None:
            on_run(run_id)
        return client, experiment, folder, params, run_id
    logged = {name: p.default for name, p in declared.items() if p.default is not None}
    logged.update(params)
    # An empty value means "not given" to our entry points: logging it would only show ''.
    logged = {k: v for k, v in logged.items() if str(v).strip() not in ("", "''", '""')}
    # The run is created here, tagged from its first second (mlflow.projects would create it
    # without run-context tags), and handed to mlflow.projects like `mlflow run --run-id`.
    run = client.create_run(
        experiment.experiment_id,
        tags={
            TAG_PROJECT: project,
            TAG_EXP: exp,
            MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.PROJECT),
            MLFLOW_SOURCE_NAME: str(folder),
            MLFLOW_PROJECT_ENTRY_POINT: entry_point,
            **(tags or {}),
        },
    )
    run_id = run.info.run_id
    if logged:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in logged.items()])
    from antgo_mlflow.project.data_registry import log_project_datasets

    log_project_datasets(run_id, project, client=client)  # the project's registered data
    if on_run is not None:
        on_run(run_id)
    return client, experiment, folder, params, run_id


def _staged_params(
    project: str, exp: str, stage: str | None, params: dict[str, Any], entry_point: str, tmp: str
) -> tuple[dict[str, Any], str]:
    """``(params, stage)``: for a semi-supervised or distillation stage, ``config`` points at the
    config :func:`~antgo_mlflow.project.training_config.build_training_config` wrote into
    ``tmp``; a supervised stage leaves the parameters alone."""
    from mlflow.projects.utils import load_project

    from antgo_mlflow.project.settings import get_setting
    from antgo_mlflow.project.training_config import build_training_config, resolve_stage

    client = get_client()
    experiment = get_project(project, client)
    settings = {k: get_setting(project, k, client) for k in ("semi", "distillation")}
    stage = resolve_stage(stage, settings)
    if stage == "supervised":
        return params, stage
    folder = exp_folder(project, exp, experiment)
    entry = load_project(str(folder))._entry_points.get(entry_point)
    declared = entry.parameters if entry is not None else {}
    if "config" not in declared:
        raise UsageError(
            f"--stage={stage}: {folder / MLPROJECT} entry point {entry_point!r} has no config "
            "parameter to pass the semi-supervised/distillation config through"
        )
    base = (params or {}).get("config") or declared["config"].default
    if not base:
        raise UsageError(f"--stage={stage}: give the exp's base config with -P config=<file>")
    base_path = Path(base) if Path(base).is_absolute() else folder / base
    cfg = build_training_config(base_path, project, stage, settings=settings, client=client)
    out = Path(tmp) / f"{exp}-{stage}.py"
    cfg.dump(out)
    return {**(params or {}), "config": str(out)}, stage


def train(
    project: str,
    exp: str,
    gpu_id: str | None = None,
    params: dict[str, Any] | None = None,
    entry_point: str = "train",
    stage: str | None = None,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_run=None,
) -> dict:
    """Run the exp's MLproject ``train`` entry point locally into the project's experiment.

    The run is tagged ``antgo.project``/``antgo.exp`` and gets the project's registered data
    as ``mlflow.data`` inputs (context = split); ``gpu_id`` sets ``CUDA_VISIBLE_DEVICES``
    (and a ``gpu-id``/``gpu_id`` parameter when the entry point declares one). ``stage``
    (``supervised``/``semi``/``distillation``; default: the one of ``project/semi`` and
    ``project/distillation`` the project has) trains the config ``build_training_config``
    makes from the exp's ``config`` parameter, the setting and the registered data. ``run_id``,
    ``tags``, ``on_run``: see :func:`_new_train_run` (the automation server records the run before
    it trains, and resumes it after a restart). Returns ``{run_id, status}``; a failed run raises
    one line naming the run.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="antgo-train-") as tmp:
        params, stage = _staged_params(project, exp, stage, dict(params or {}), entry_point, tmp)
        result = _train_local(
            project, exp, gpu_id, params, entry_point, run_id=run_id, tags=tags, on_run=on_run
        )
    return {**result, "stage": stage}


def _train_local(
    project: str,
    exp: str,
    gpu_id: str | None,
    params: dict[str, Any],
    entry_point: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_run=None,
) -> dict:
    from mlflow.exceptions import ExecutionException

    from antgo_mlflow.project.child_run import run_entry_point

    client, experiment, folder, params, run_id = _new_train_run(
        project, exp, gpu_id, params, entry_point, run_id=run_id, tags=tags, on_run=on_run
    )
    env_backup = {
        k: os.environ.get(k) for k in (ENV_PROJECT, ENV_EXP, "CUDA_VISIBLE_DEVICES", "PATH")
    }
    os.environ[ENV_PROJECT], os.environ[ENV_EXP] = project, exp
    # With env_manager="local" the entry point runs `python` from PATH: put this interpreter's
    # folder first so an un-activated virtualenv still trains with the antgo that called it.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    if gpu_id is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = "" if str(gpu_id) == "-1" else str(gpu_id)
    failure = None
    try:  # SIGTERM/Ctrl-C reach the child's process group; the run then ends KILLED
        run_entry_point(str(folder), entry_point, params, experiment.experiment_id, run_id)
    except ExecutionException as exc:
        failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if client.get_run(run_id).info.status == "RUNNING":  # never leave it RUNNING
            client.set_terminated(run_id, "FAILED")
    status = client.get_run(run_id).info.status
    if failure is not None or status != "FINISHED":
        raise TrackingError(
            f"train run {run_id} of exp {exp} failed (status {status}); see its output above"
        )
    return {"run_id": run_id, "status": status, "folder": str(folder)}


# -- train --cloud -----------------------------------------------------------------------------
#: project/submitter method -> submitter kind (antgo's "custom" is the team's own script)
CLOUD_METHODS = {"ssh": "ssh", "docker": "docker", "custom": "script", "script": "script"}


def watch_hint(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to watch a run: its URL on a tracking server, or the ``mlflow ui`` command."""
    from antgo_mlflow.submit.backend import redact

    tracking_uri = redact(tracking_uri)
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return (
        f"mlflow ui --backend-store-uri {tracking_uri}  (experiment {experiment_id}, run {run_id})"
    )


def submit_train(
    project: str,
    exp: str,
    kind: str | None = None,
    ip: str | None = None,
    gpu_id: str | None = None,
    params: dict[str, Any] | None = None,
    entry_point: str = "train",
    on_submitted=None,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_run=None,
) -> dict:
    """``antgo train --cloud``: submit the exp's entry point through a registered submitter and wait.

    ``kind`` is ssh, docker or script (default: the project's ``project/submitter`` method);
    ``ip`` picks an SSH host (default: the selected one). The run is created and tagged as for
    a local ``train``; the project's resource request (``gpu_num``, ``cpu_num``, ``memory`` of
    ``project/submitter``) goes to the submitter. ``on_submitted(info)`` is called as soon as
    the job started (``{run_id, submitter, watch}``). Ctrl-C or SIGTERM cancel the job (KILLED).
    ``run_id``, ``tags``, ``on_run``: see :func:`_new_train_run`.
    """
    import mlflow

    from antgo_mlflow.errors import AntgoError, ServiceError
    from antgo_mlflow.project.settings import get_setting
    from antgo_mlflow.submit import config as submit_config
    from antgo_mlflow.submit.backend import TAG_HOST

    setting = get_setting(project, "submitter") or {}
    if kind is None:
        kind = CLOUD_METHODS.get(setting.get("method", ""))
        if kind is None:
            raise UsageError(
                "--cloud: choose --ssh, --docker or --script (or store one with "
                "'antgo update project/submitter --project=... --name=ssh')"
            )
    fields = {"ip": ip} if ip else {}
    submit_config.resolve(kind, fields)  # an unregistered host or a missing script: no run yet
    config = setting.get("config") or {}
    resources = {k: config.get(k, 0) for k in ("gpu_num", "cpu_num", "memory")}
    client, experiment, folder, params, run_id = _new_train_run(
        project, exp, gpu_id, params, entry_point, run_id=run_id, tags=tags, on_run=on_run
    )
    env = {ENV_PROJECT: project, ENV_EXP: exp}
    if gpu_id is not None:
        env["CUDA_VISIBLE_DEVICES"] = "" if str(gpu_id) == "-1" else str(gpu_id)
    backend_config = {**fields, "run_id": run_id, "resources": resources, "env": env}
    from antgo_mlflow import submit
    from antgo_mlflow.submit.backend import wait_in_foreground

    builders = {
        "ssh": submit.ssh_backend,
        "docker": submit.docker_backend,
        "script": submit.script_backend,
    }
    tracking_uri = mlflow.get_tracking_uri()
    try:
        job = builders[kind]().run(
            str(folder),
            entry_point,
            params,
            None,
            backend_config,
            tracking_uri,
            experiment.experiment_id,
        )
    except AntgoError as exc:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FAILED")
        raise ServiceError(str(exc)) from None
    info = {
        "run_id": run_id,
        "submitter": f"{submit.BACKENDS[kind]} {client.get_run(run_id).data.tags.get(TAG_HOST, '')}",
        "watch": watch_hint(tracking_uri, experiment.experiment_id, run_id),
    }
    if on_submitted is not None:
        on_submitted(info)
    wait_in_foreground(job)
    status = client.get_run(run_id).info.status
    if status != "FINISHED":
        raise TrackingError(
            f"train run {run_id} of exp {exp} ended {status} on {info['submitter']}; "
            "see its output above and the logs/remote.log artifact"
        )
    return {**info, "status": status, "folder": str(folder)}
