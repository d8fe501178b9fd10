"""Model roles (product, expert, baseline) as Model Registry aliases, with a recorded history.

One registered model per project, named after the project. Aliases are the truth:

* product  -> alias ``production`` (one); legacy stage ``Production`` mirrored;
* baseline -> alias ``staging`` (one); legacy stage ``Staging`` mirrored;
* expert   -> tag ``antgo.role=expert`` on every expert version (many) and alias ``champion`` on
  the lead expert (the newest one added, unless ``keep_champion``).

Every change writes a model-version tag ``antgo.history.<utc time>`` holding JSON
``{role, action, from_version, to_version, version, who, when, note}`` so the history is visible in
the MLflow UI. Changes to one project are serialised by a lock that lives in MLflow itself: a
registered model ``<project>.antgo-role-lock`` that only one process can create at a time (the
registry's unique name is the atomic step); it is deleted when the change is done. The lock records
its holder (host, pid, process start time): a lock whose holder is provably gone (same host, process
no longer running) is broken at once, any other after ``LOCK_STALE_S``. Each change is idempotent:
re-applying it changes nothing and records nothing. Each change is all or nothing: its arguments
are checked before the first write, and if a write fails part-way the writes already made are
undone (``_Changes``), so a retry starts from the old state.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from antgo_mlflow.errors import TrackingError, UsageError
from antgo_mlflow.project.projects import (
    EXP_PREFIX,
    TAG_EXP,
    check_name,
    error_code,
    get_client,
    get_project,
    project_metric,
    utc_now,
    whoami,
)

ROLE_TAG = "antgo.role"
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HISTORY_PREFIX = "antgo.history."
LOCK_SUFFIX = ".antgo-role-lock"
LOCK_TIMEOUT_S = 60.0
LOCK_STALE_S = 120.0
#: Longest ``--note``: the history event holding it must fit every store's tag value limit.
NOTE_LIMIT = 2000


@dataclass(frozen=True)
class Role:
    """How one antgo role maps onto the registry."""

    name: str
    alias: str
    stage: str | None
    many: bool = False


ROLES: dict[str, Role] = {
    "product": Role("product", "production", "Production"),
    "expert": Role("expert", "champion", None, many=True),
    "baseline": Role("baseline", "staging", "Staging"),
}


@dataclass
class RoleChange:
    """The outcome of one role operation (``changed`` is False for a no-op)."""

    project: str
    role: str
    version: str | None
    changed: bool
    message: str
    previous: str | None = None
    event: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "project": self.project,
            "role": self.role,
            "version": self.version,
            "previous": self.previous,
            "changed": self.changed,
            "message": self.message,
        }


def get_role(name: str) -> Role:
    """The role called ``name``; one clear error for anything else."""
    if name not in ROLES:
        raise UsageError(f"--role={name}: no such role (choose product, expert or baseline)")
    return ROLES[name]


def model_uri(project: str, alias: str) -> str:
    """``models:/<project>@<alias>``: load it with ``mlflow.pytorch.load_model``."""
    return f"models:/{project}@{alias}"


# -- registry primitives -----------------------------------------------------------------------
def _is_missing(exc: Exception) -> bool:
    text = str(exc).lower()
    return error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
        error_code(exc) == "INVALID_PARAMETER_VALUE" and "not found" in text
    )


def alias_version(client, project: str, alias: str) -> str | None:
    """The version an alias points at, or None (no model, no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(project, alias).version)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise


def get_version(client, project: str, version: str | int):
    """Model version ``version`` of the project's registered model; one clear error if absent."""
    from mlflow.exceptions import MlflowException

    text = str(version).strip()
    if not text.isdigit():
        raise UsageError(f"--version={version}: expected a model version number")
    try:
        return client.get_model_version(project, text)
    except MlflowException as exc:
        if _is_missing(exc):
            raise TrackingError(
                f"--version={text}: project {project} has no model version {text}"
            ) from exc
        raise


def expert_versions(client, project: str) -> list[str]:
    """Versions tagged ``antgo.role=expert``, oldest first."""
    found = client.search_model_versions(f"name='{project}' and tags.`{ROLE_TAG}` = 'expert'")
    return sorted((str(mv.version) for mv in found), key=int)


def _ensure_registered_model(client, project: str) -> bool:
    """Create the project's registered model unless it exists; True if it was created."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            project,
            tags={"antgo.project": project},
            description=f"antgo project {project}: roles are aliases production/champion/staging",
        )
        return True
    except MlflowException as exc:
        if error_code(exc) not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
        return False


@contextlib.contextmanager
def _quiet_stages() -> Iterator[None]:
    # Stages are deprecated (FutureWarning on every call); we mirror them on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def sync_stage(client, project: str, version: str) -> None:
    """Mirror aliases onto the legacy stage: production->Production, staging->Staging, else Archived."""
    from mlflow.exceptions import MlflowException

    mv = client.get_model_version(project, version)
    aliases = set(mv.aliases or [])
    want = "Production" if "production" in aliases else "Staging" if "staging" in aliases else None
    current = mv.current_stage or "None"
    if want is None:
        want = "Archived" if current in ("Production", "Staging") else current
    if want == current:
        return
    try:
        with _quiet_stages():
            client.transition_model_version_stage(
                project, version, want, archive_existing_versions=False
            )
    except MlflowException:
        # A registry without stages (e.g. Unity Catalog): aliases alone carry the role.
        pass


def _record(client, project: str, version: str, event: dict) -> str:
    # The key sorts by time; the nanosecond suffix keeps two events of one change distinct.
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"
    key = HISTORY_PREFIX + stamp
    client.set_model_version_tag(project, version, key, json.dumps(event, sort_keys=True))
    return key


def _event(
    role: str, action: str, frm: str | None, to: str | None, version: str, note: str | None
) -> dict:
    return {
        "role": role,
        "action": action,
        "from_version": frm,
        "to_version": to,
        "version": version,
        "who": whoami(),
        "when": utc_now(),
        "pid": os.getpid(),
        "note": note or "",
    }


def check_note(note: str | None) -> None:
    """Refuse a ``--note`` that could not be recorded (before anything is changed)."""
    if note is None:
        return
    if not isinstance(note, str):
        raise UsageError(f"--note: expected text, got {type(note).__name__}")
    if len(note) > NOTE_LIMIT:
        raise UsageError(f"--note: {len(note)} characters; at most {NOTE_LIMIT} are recorded")


class _Changes:
    """The registry writes of one role change, undone in reverse order if a later write fails."""

    def __init__(self, client, project: str):
        self.client = client
        self.project = project
        self._undo: list = []

    def created_model(self) -> None:
        """The registered model did not exist before this change."""
        self._undo.append(lambda: self.client.delete_registered_model(self.project))

    def created_version(self, version: str) -> None:
        self._undo.append(lambda: self.client.delete_model_version(self.project, version))

    def set_alias(self, alias: str, version: str, previous: str | None) -> None:
        self.client.set_registered_model_alias(self.project, alias, version)
        self._undo.append(lambda: self._restore_alias(alias, previous))

    def delete_alias(self, alias: str, previous: str) -> None:
        self.client.delete_registered_model_alias(self.project, alias)
        self._undo.append(lambda: self._restore_alias(alias, previous))

    def _restore_alias(self, alias: str, version: str | None) -> None:
        if version is None:
            self.client.delete_registered_model_alias(self.project, alias)
        else:
            self.client.set_registered_model_alias(self.project, alias, version)

    def set_tag(self, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.project, version, key, value)
        self._undo.append(lambda: self.client.delete_model_version_tag(self.project, version, key))

    def delete_tag(self, version: str, key: str, previous: str) -> None:
        self.client.delete_model_version_tag(self.project, version, key)
        self._undo.append(
            lambda: self.client.set_model_version_tag(self.project, version, key, previous)
        )

    def record(self, version: str, event: dict) -> None:
        key = _record(self.client, self.project, version, event)
        self._undo.append(lambda: self.client.delete_model_version_tag(self.project, version, key))

    def sync_stage(self, version: str) -> None:
        previous = self.client.get_model_version(self.project, version).current_stage or "None"
        sync_stage(self.client, self.project, version)
        self._undo.append(lambda: _transition(self.client, self.project, version, previous))

    def rollback(self) -> None:
        """Undo every write made so far, newest first (best effort: each step on its own)."""
        from mlflow.exceptions import MlflowException

        while self._undo:
            step = self._undo.pop()
            with contextlib.suppress(MlflowException):
                step()


def _transition(client, project: str, version: str, stage: str) -> None:
    from mlflow.exceptions import MlflowException

    if (client.get_model_version(project, version).current_stage or "None") == stage:
        return
    with contextlib.suppress(MlflowException), _quiet_stages():
        client.transition_model_version_stage(
            project, version, stage, archive_existing_versions=False
        )


@contextlib.contextmanager
def _all_or_nothing(client, project: str) -> Iterator[_Changes]:
    """Yield a change log; if the block fails, what it wrote is undone and the error re-raised."""
    changes = _Changes(client, project)
    try:
        yield changes
    except BaseException:
        changes.rollback()
        raise


def _lock_holder_gone(tags: dict) -> str | None:
    from antgo_mlflow.owner import gone_reason

    owner = {k: tags.get(f"antgo.lock.{k}", "") for k in ("host", "pidns", "pid", "start")}
    return gone_reason(owner)


@contextlib.contextmanager
def role_lock(client, project: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the project's role lock (a registered model only one process can create)."""
    from mlflow.exceptions import MlflowException

    from antgo_mlflow.owner import current_owner

    name = project + LOCK_SUFFIX
    owner = f"{whoami()} pid {os.getpid()}"
    holder = {f"antgo.lock.{k}": v for k, v in current_owner().items()}
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(
                name,
                tags={
                    "antgo.lock.owner": owner,
                    "antgo.lock.since": f"{time.time():.3f}",
                    **holder,
                },
                description=f"antgo: lock for a role change of project {project}; "
                f"safe to delete if older than {int(LOCK_STALE_S)} s",
            )
            break
        except MlflowException as exc:
            code = error_code(exc)
            busy = "locked" in str(exc).lower()  # SQLite writer contention: just retry
            # MLflow's SQL store answers a duplicate name by reading the existing model back; if
            # its holder deleted it in between, the create fails with RESOURCE_DOES_NOT_EXIST.
            contended = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")
            if code not in contended and not busy:
                raise
        held_by = "another process"
        try:
            lock = client.get_registered_model(name)
            held_by = lock.tags.get("antgo.lock.owner", held_by)
            try:
                since = float(lock.tags.get("antgo.lock.since", "0") or 0)
            except ValueError:
                since = 0.0
            stale = since and time.time() - since > LOCK_STALE_S
            if stale or _lock_holder_gone(lock.tags):
                client.delete_registered_model(name)  # a crashed holder: break the lock
                continue
        except MlflowException:
            pass  # released between our create and get: try again
        if time.monotonic() > deadline:
            raise TrackingError(
                f"project {project}: a role change by {held_by} is still in progress after "
                f"{int(timeout)} s; retry, or delete registered model '{name}' if it is stale"
            )
        time.sleep(0.05 + random.random() * 0.15)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(name)


# -- runs -> model versions --------------------------------------------------------------------
def _known_exps(client, experiment) -> set[str]:
    names = {k[len(EXP_PREFIX) :] for k in experiment.tags if k.startswith(EXP_PREFIX)}
    return names


def check_exp(client, experiment, exp: str) -> None:
    """Fail unless ``exp`` is recorded on the project or tags at least one of its runs."""
    check_name(exp, "--exp")
    known = _known_exps(client, experiment)
    if exp in known:
        return
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{TAG_EXP}` = '{exp}'", max_results=1
    )
    if not runs:
        listed = ", ".join(sorted(known)) or "none recorded"
        raise TrackingError(
            f"--exp={exp}: project {experiment.name} has no such exp (known: {listed})"
        )


def get_run_in(client, experiment, run_id: str, exp: str | None = None):
    """Run ``run_id``, checked to belong to the project (and to ``exp`` when it is tagged)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        raise UsageError("--id is required (an MLflow run id)")
    if not _RUN_ID_RE.match(run_id):
        raise TrackingError(f"--id={run_id}: not an MLflow run id")
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if _is_missing(exc) or error_code(exc) == "INVALID_PARAMETER_VALUE":
            raise TrackingError(f"--id={run_id}: no such MLflow run") from exc
        raise
    if run.info.experiment_id != experiment.experiment_id:
        raise TrackingError(f"--id={run_id}: the run is not in project {experiment.name}")
    tagged = run.data.tags.get(TAG_EXP)
    if exp and tagged and tagged != exp:
        raise TrackingError(f"--id={run_id}: the run belongs to exp {tagged}, not {exp}")
    return run


def logged_model_of(client, experiment, run_id: str):
    """The model logged by run ``run_id`` (name ``model`` preferred, else the newest); error if none."""
    models = client.search_logged_models(
        [experiment.experiment_id], filter_string=f"source_run_id='{run_id}'"
    )
    models = [m for m in models if str(getattr(m, "status", "READY")).endswith("READY")] or list(
        models
    )
    if not models:
        raise TrackingError(
            f"--id={run_id}: the run has no logged model "
            "(log one with mlflow.pytorch.log_model(model, name='model'))"
        )
    named = [m for m in models if m.name == "model"]
    return max(named or models, key=lambda m: m.creation_timestamp or 0)


def best_run(client, experiment, exp: str):
    """The best finished run of ``exp`` that logged a model: by the project metric, else the newest."""
    metric = project_metric(experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_EXP}` = '{exp}' and attributes.status = 'FINISHED'",
        order_by=metric.order_by(),
        max_results=200,
    )
    if metric.name:
        # search_runs puts runs without the metric last already; keep that order.
        runs = sorted(runs, key=lambda r: metric.name not in r.data.metrics)
    for run in runs:
        found = client.search_logged_models(
            [experiment.experiment_id],
            filter_string=f"source_run_id='{run.info.run_id}'",
            max_results=1,
        )
        if found:
            return run
    raise TrackingError(f"--exp={exp}: no finished run of this exp has a logged model (give --id)")


def register_run(client, project: str, experiment, run_id: str, changes=None):
    """The model version of run ``run_id``'s model: an existing one is reused, else one is created.

    With ``changes`` (a ``_Changes`` log) what is created is undone if the role change fails.
    """
    model = logged_model_of(client, experiment, run_id)
    source = f"models:/{model.model_id}"
    if _ensure_registered_model(client, project) and changes is not None:
        changes.created_model()
    for mv in client.search_model_versions(f"name='{project}' and run_id='{run_id}'"):
        if mv.source == source or mv.source.endswith(f"/{model.model_id}"):
            return mv
    run = client.get_run(run_id)
    tags = {"antgo.run_id": run_id}
    if run.data.tags.get(TAG_EXP):
        tags[TAG_EXP] = run.data.tags[TAG_EXP]
    mv = client.create_model_version(
        project, source=source, run_id=run_id, model_id=model.model_id, tags=tags
    )
    if changes is not None:
        changes.created_version(str(mv.version))
    return mv


# -- role operations ---------------------------------------------------------------------------
def _set_single(
    changes: _Changes, project: str, role: Role, version: str, note: str | None
) -> RoleChange:
    client = changes.client
    current = alias_version(client, project, role.alias)
    if current == version:
        changes.sync_stage(version)
        return RoleChange(
            project,
            role.name,
            version,
            False,
            f"version {version} is already the {role.name}",
            current,
        )
    changes.set_alias(role.alias, version, current)
    event = _event(role.name, "promote", current, version, version, note)
    changes.record(version, event)
    if current is not None:
        # The companion record on the old holder: same change, seen from the replaced version.
        changes.record(current, {**event, "action": "replaced", "version": current})
        changes.sync_stage(current)
    changes.sync_stage(version)
    return RoleChange(
        project,
        role.name,
        version,
        True,
        f"version {version} is now the {role.name}",
        current,
        event,
    )


def _unset_single(
    changes: _Changes, project: str, role: Role, version: str | None, note: str | None
) -> RoleChange:
    current = alias_version(changes.client, project, role.alias)
    if current is None or (version is not None and current != version):
        what = f"version {version} is not the {role.name}" if version else f"no {role.name} is set"
        return RoleChange(project, role.name, version, False, f"{what}; nothing to do", current)
    changes.delete_alias(role.alias, current)
    event = _event(role.name, "demote", current, None, current, note)
    changes.record(current, event)
    changes.sync_stage(current)
    return RoleChange(
        project,
        role.name,
        current,
        True,
        f"version {current} is no longer the {role.name}",
        current,
        event,
    )


def _add_expert(
    changes: _Changes, project: str, version: str, note: str | None, keep_champion: bool
) -> RoleChange:
    client = changes.client
    mv = client.get_model_version(project, version)
    tagged = (mv.tags or {}).get(ROLE_TAG) == "expert"
    champion = alias_version(client, project, "champion")
    new_champion = champion if (keep_champion and champion) else version
    if tagged and champion == new_champion:
        return RoleChange(
            project, "expert", version, False, f"version {version} is already an expert", champion
        )
    if not tagged:
        changes.set_tag(version, ROLE_TAG, "expert")
    if champion != new_champion:
        changes.set_alias("champion", new_champion, champion)
    event = _event("expert", "promote", champion, new_champion, version, note)
    changes.record(version, event)
    lead = "" if new_champion != version else " and the champion"
    return RoleChange(
        project, "expert", version, True, f"version {version} is an expert{lead}", champion, event
    )


def _remove_expert(changes: _Changes, project: str, version: str, note: str | None) -> RoleChange:
    client = changes.client
    mv = client.get_model_version(project, version)
    champion = alias_version(client, project, "champion")
    if (mv.tags or {}).get(ROLE_TAG) != "expert" and champion != version:
        return RoleChange(
            project,
            "expert",
            version,
            False,
            f"version {version} is not an expert; nothing to do",
            champion,
        )
    if (mv.tags or {}).get(ROLE_TAG) == "expert":
        changes.delete_tag(version, ROLE_TAG, "expert")
    new_champion = champion
    if champion == version:
        rest = [v for v in expert_versions(client, project) if v != version]
        new_champion = rest[-1] if rest else None
        if new_champion:
            changes.set_alias("champion", new_champion, champion)
        else:
            changes.delete_alias("champion", champion)
    event = _event("expert", "demote", champion, new_champion, version, note)
    changes.record(version, event)
    return RoleChange(
        project,
        "expert",
        version,
        True,
        f"version {version} is no longer an expert",
        champion,
        event,
    )


def promote(
    project: str,
    version: str | int,
    role: str,
    note: str | None = None,
    keep_champion: bool = False,
) -> RoleChange:
    """Give model version ``version`` of ``project`` the role ``role`` (idempotent)."""
    spec = get_role(role)
    check_note(note)
    client = get_client()
    get_project(project, client)
    version = str(get_version(client, project, version).version)
    with role_lock(client, project), _all_or_nothing(client, project) as changes:
        if spec.many:
            return _add_expert(changes, project, version, note, keep_champion)
        return _set_single(changes, project, spec, version, note)


def demote(
    project: str, role: str, version: str | int | None = None, note: str | None = None
) -> RoleChange:
    """Take role ``role`` from ``version`` (for product/baseline: from whoever holds it)."""
    spec = get_role(role)
    check_note(note)
    client = get_client()
    get_project(project, client)
    if version is not None:
        version = str(get_version(client, project, version).version)
    elif spec.many:
        raise UsageError("--version (or --exp with --id) is required to remove an expert")
    with role_lock(client, project), _all_or_nothing(client, project) as changes:
        if spec.many:
            return _remove_expert(changes, project, version, note)
        return _unset_single(changes, project, spec, version, note)


def add_role(
    project: str,
    role: str,
    exp: str,
    run_id: str | None = None,
    note: str | None = None,
    keep_champion: bool = False,
) -> RoleChange:
    """``antgo add <role> --exp --id``: register the run's model (or reuse it) and give it the role.

    Without ``run_id`` (allowed for product only) the best finished run of ``exp`` with a model is
    used: best by the project metric (``antgo.metric``), or the newest when no metric is set.
    """
    spec = get_role(role)
    check_note(note)
    client = get_client()
    experiment = get_project(project, client)
    check_exp(client, experiment, exp)
    if run_id:
        get_run_in(client, experiment, run_id, exp)
    elif role == "product":
        run_id = best_run(client, experiment, exp).info.run_id
    else:
        raise UsageError(f"--id is required for 'add {role}' (the MLflow run id of the model)")
    logged_model_of(client, experiment, run_id)  # fail before taking the lock
    with role_lock(client, project), _all_or_nothing(client, project) as changes:
        version = str(register_run(client, project, experiment, run_id, changes).version)
        if spec.many:
            return _add_expert(changes, project, version, note, keep_champion)
        return _set_single(changes, project, spec, version, note)


def remove_role(
    project: str,
    role: str,
    exp: str | None = None,
    run_id: str | None = None,
    version: str | int | None = None,
    note: str | None = None,
) -> RoleChange:
    """``antgo del <role>``: by ``--version``, by ``--exp --id`` (the run's version), or the holder."""
    spec = get_role(role)
    client = get_client()
    experiment = get_project(project, client)
    if version is None and run_id:
        if exp:
            check_exp(client, experiment, exp)
        get_run_in(client, experiment, run_id, exp)
        found = client.search_model_versions(f"name='{project}' and run_id='{run_id}'")
        if not found:
            raise TrackingError(
                f"--id={run_id}: no model version of project {project} comes from this run"
            )
        holders = {alias_version(client, project, spec.alias)}
        if spec.many:
            holders |= set(expert_versions(client, project))
        match = [str(mv.version) for mv in found if str(mv.version) in holders]
        version = match[0] if match else str(found[0].version)
    return demote(project, role, version, note)


# -- reading -----------------------------------------------------------------------------------
def current_roles(project: str, client=None) -> dict:
    """``{role: [{version, run_id, exp, alias, uri, metric, champion}]}`` for the project."""
    client = client or get_client()
    experiment = get_project(project, client)
    metric = project_metric(experiment)
    out: dict[str, list[dict]] = {}

    def describe(version: str, alias: str | None) -> dict:
        mv = client.get_model_version(project, version)
        value = None
        if metric.name and mv.run_id:
            from mlflow.exceptions import MlflowException

            with contextlib.suppress(MlflowException):
                value = client.get_run(mv.run_id).data.metrics.get(metric.name)
        return {
            "version": str(mv.version),
            "run_id": mv.run_id,
            "exp": (mv.tags or {}).get(TAG_EXP),
            "alias": alias,
            "uri": model_uri(project, alias) if alias else f"models:/{project}/{mv.version}",
            "metric": {metric.name: value} if metric.name else {},
            "stage": mv.current_stage,
        }

    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(project)
    except MlflowException as exc:
        if _is_missing(exc):
            return {name: [] for name in ROLES}
        raise
    for name, spec in ROLES.items():
        holder = alias_version(client, project, spec.alias)
        if spec.many:
            versions = expert_versions(client, project)
            if holder and holder not in versions:
                versions.append(holder)
            out[name] = [
                {**describe(v, "champion" if v == holder else None), "champion": v == holder}
                for v in reversed(versions)
            ]
        else:
            out[name] = [describe(holder, spec.alias)] if holder else []
    return out


def role_history(project: str, client=None) -> list[dict]:
    """Every recorded role change of the project, oldest first."""
    client = client or get_client()
    get_project(project, client)
    events = []
    for mv in client.search_model_versions(f"name='{project}'"):
        for key, value in (mv.tags or {}).items():
            if key.startswith(HISTORY_PREFIX):
                try:
                    event = json.loads(value)
                except json.JSONDecodeError:
                    continue
                events.append(
                    {**event, "key": key[len(HISTORY_PREFIX) :], "tagged_version": str(mv.version)}
                )
    return sorted(events, key=lambda e: (e.get("when", ""), e["key"]))
