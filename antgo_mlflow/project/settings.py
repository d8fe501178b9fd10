"""Project settings: ``antgo update project/submitter|label|semi|distillation|activelearning``.

Each setting is ``{method, config, source, sha256, updated_by, updated_at}`` stored as project tag
``antgo.settings.<kind>`` (or, when large, as a JSON artifact of the settings run; see
``projects.put_json_tag``). ``--name`` picks a built-in method, ``--config`` a Python config file;
both empty clears the setting. Later workflows read them with ``get_setting``.

Secrets are never stored: a config value under a password/secret/token key is refused, and
annotators (``white_users``) are stored as user names only - their passwords stay in a file only
its owner can read (``white_users_file``) or in an environment variable (``white_users_env``,
default ``ANTGO_WHITE_USERS``), read when labelling starts (``antgo_mlflow.credentials``).
``project/activelearning``: ``--name`` is a registered acquisition strategy (ACQUISITIONS:
``hybrid``, ``margin``, ``kcenter``, ...; antgo's ``ac`` is ``hybrid``); ``--config=ac_config.py``
may set ``strategy`` (a name or ``dict(type=..., **options)``), ``budget`` (antgo's
``sampling_num``), ``pool_factor``, ``models``, ``batch_size`` and ``seed``, nothing else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from antgo_mlflow.errors import ConfigError, UsageError
from antgo_mlflow.project.projects import (
    SETTINGS_PREFIX,
    delete_tag,
    get_client,
    get_project,
    put_json_tag,
    read_json_tag,
    utc_now,
    whoami,
)

#: Built-in method names per setting (antgo's names); ``--config`` may name any method.
BUILTINS: dict[str, tuple[str, ...]] = {
    "submitter": ("local", "ssh", "docker", "custom"),
    "label": (),
    "semi": ("fixmatch", "mpl"),  # dense/detmpl (detection) are refused with a reason
    "distillation": ("kd",),
    "activelearning": (),  # the ACQUISITIONS registry's names, see builtin_names()
}
KINDS = tuple(BUILTINS)
#: Annotator keys a label/activelearning config may hold (names and where passwords live).
WHITE_USER_KEYS = ("white_users", "white_users_file", "white_users_env")
LABEL_TYPES = ("CLASS", "RECT", "POINT", "POLYGON", "SKELETON")
ACTIVE_KEYS = ("strategy", "budget", "sampling_num", "pool_factor", "models", "batch_size", "seed")


def builtin_names(kind: str) -> tuple[str, ...]:
    """The names ``--name`` accepts for setting ``kind``."""
    if kind == "activelearning":
        from antgo_mlflow.registry import ACQUISITIONS

        return tuple(ACQUISITIONS)
    return BUILTINS[kind]


def _check_kind(kind: str) -> str:
    if kind not in BUILTINS:
        raise UsageError(
            f"project/{kind}: no such setting (choose {', '.join('project/' + k for k in KINDS)})"
        )
    return kind


def validate_label(cfg: dict, where: str) -> dict:
    """Check a label config: ``type`` in CLASS..SKELETON, ``category`` names, ``meta.skeleton`` pairs.

    SKELETON requires a non-empty ``meta.skeleton`` (antgo's check was inverted).
    """
    kind = cfg.get("type")
    if kind not in LABEL_TYPES:
        raise ConfigError(f"{where}: type={kind!r} must be one of {', '.join(LABEL_TYPES)}")
    category = cfg.get("category", [])
    if not isinstance(category, (list, tuple)) or not all(
        isinstance(c, str) and c for c in category
    ):
        raise ConfigError(f"{where}: category must be a list of class names")
    if len(set(category)) != len(category):
        raise ConfigError(f"{where}: category has duplicate names")
    if kind in ("CLASS", "RECT", "POLYGON") and not category:
        raise ConfigError(f"{where}: type={kind} needs a non-empty category list")
    meta = cfg.get("meta", {}) or {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: meta must be a dict")
    skeleton = meta.get("skeleton", [])
    if kind == "SKELETON" and not skeleton:
        raise ConfigError(f"{where}: type=SKELETON needs meta.skeleton=[[i, j], ...]")
    if skeleton:
        ok = isinstance(skeleton, (list, tuple)) and all(
            isinstance(p, (list, tuple))
            and len(p) == 2
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in p)
            for p in skeleton
        )
        if not ok:
            raise ConfigError(
                f"{where}: meta.skeleton must be a list of [i, j] pairs of point indices"
            )
    return {
        "type": kind,
        "category": list(category),
        "meta": {**meta, "skeleton": [list(p) for p in skeleton]},
        **{k: cfg[k] for k in WHITE_USER_KEYS if k in cfg},  # checked by _load_config
    }


def _validate_submitter(cfg: dict, where: str) -> dict:
    method = cfg.get("method", "local")
    if method not in BUILTINS["submitter"]:
        raise ConfigError(
            f"{where}: method={method!r} must be one of {', '.join(BUILTINS['submitter'])}"
        )
    for key in ("gpu_num", "cpu_num", "memory"):
        value = cfg.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: {key}={value!r} must be an integer >= 0")
    return cfg


def _white_users(cfg: dict, where: str) -> dict:
    """The annotator part of a settings config: user names and where their passwords live."""
    from antgo_mlflow.credentials import check_no_inline_passwords, white_user_passwords

    out: dict[str, Any] = {}
    names = check_no_inline_passwords(cfg.get("white_users"), where)
    file, env = cfg.get("white_users_file"), cfg.get("white_users_env")
    for key, value in (("white_users_file", file), ("white_users_env", env)):
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise ConfigError(f"{where}: {key} must be a file path / variable name")
    if names:
        out["white_users"] = names
        if file:  # checked now (0600, every user listed), stored as its path only
            try:
                white_user_passwords(names, file=file)
            except UsageError as exc:
                raise ConfigError(f"{where}: white_users_file: {exc}") from None
    if file:
        out["white_users_file"] = file
    if env:
        out["white_users_env"] = env
    return out


def _refuse_secrets(data: dict, where: str) -> None:
    from antgo_mlflow.credentials import find_secrets

    found = find_secrets(data)
    if found:
        raise ConfigError(
            f"{where}: {found[0]} holds a secret; secrets are never stored in MLflow (name a "
            "0600 file or an environment variable that holds it instead)"
        )


def _positive_int(cfg: dict, key: str, where: str) -> None:
    value = cfg.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{where}: {key}={value!r} must be a positive integer")


def validate_activelearning(cfg: dict, where: str, name: str | None = None) -> dict:
    """Check an active-learning config (keys in ``ACTIVE_KEYS``); ``strategy`` becomes a dict.

    The strategy (``--name`` or ``strategy``, default ``hybrid``) is built once from ACQUISITIONS
    so that an unknown name or option fails here, naming the key.
    """
    from antgo_mlflow.registry import ACQUISITIONS

    # annotators and antgo's label metas ride along: the labelling of selected samples reads them
    unknown = sorted(set(cfg) - set(ACTIVE_KEYS) - set(WHITE_USER_KEYS) - {"metas"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (project/activelearning takes "
            f"{', '.join(ACTIVE_KEYS)})"
        )
    out = dict(cfg)
    if "sampling_num" in out:  # antgo's name for the number of samples to select
        if "budget" in out:
            raise ConfigError(f"{where}: give budget or antgo's sampling_num, not both")
        out["budget"] = out.pop("sampling_num")
    for key in ("budget", "batch_size"):
        _positive_int(out, key, where)
    seed = out.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{where}: seed={seed!r} must be an integer")
    models = out.get("models")
    if models is not None and (
        not isinstance(models, (list, tuple)) or not all(isinstance(m, str) and m for m in models)
    ):
        raise ConfigError(f"{where}: models must be a list of model URIs")
    if "metas" in out and not isinstance(out["metas"], dict):
        raise ConfigError(f"{where}: metas must be a dict (e.g. dict(category=[...]))")
    strategy = out.get("strategy", name or "hybrid")
    strategy = dict(strategy) if isinstance(strategy, dict) else {"type": strategy}
    if name and strategy.get("type") != name:
        raise ConfigError(f"{where}: strategy {strategy.get('type')!r} contradicts --name={name}")
    if "pool_factor" in out:
        strategy.setdefault("pool_factor", out.pop("pool_factor"))
    if not isinstance(strategy.get("type"), str):
        raise ConfigError(f"{where}: strategy must be a strategy name or dict(type=name, ...)")
    ACQUISITIONS.build(strategy, path=f"{where}: strategy")
    out["strategy"] = strategy
    return out


def _load_config(path: str, kind: str) -> tuple[dict, str]:
    from antgo_mlflow.config import Config

    cfg = Config.fromfile(path)
    data = cfg.to_dict()
    if not data:
        raise ConfigError(f"{cfg.filename}: the config for project/{kind} defines nothing")
    where = cfg.filename or path
    users = _white_users(data, where)  # names only: their passwords stay outside MLflow
    data = {k: v for k, v in data.items() if k not in WHITE_USER_KEYS} | users
    _refuse_secrets(data, where)
    return data, where


def update_setting(
    project: str,
    kind: str,
    config: str | None = None,
    name: str | None = None,
    values: dict[str, Any] | None = None,
) -> dict | None:
    """Validate and store setting ``kind`` of ``project``; ``name``, ``config`` and ``values`` all
    empty clears it. ``values`` (e.g. ``--gpu --cpu --memory`` of project/submitter) are laid over
    the config file's, or over the stored setting's when neither ``name`` nor ``config`` is given.

    Returns the stored setting, or None after clearing.
    """
    _check_kind(kind)
    client = get_client()
    experiment = get_project(project, client)
    key = SETTINGS_PREFIX + kind
    values = {k: v for k, v in (values or {}).items() if v is not None}
    if values and not name and not config:
        current = read_json_tag(experiment, key, client) or {}
        name = current.get("method") or (BUILTINS[kind][0] if BUILTINS[kind] else None)
        values = {**(current.get("config") or {}), **values}
    if not name and not config:
        delete_tag(client, experiment, key)
        return None
    if kind in ("semi", "distillation"):
        return _store(client, experiment, key, *_semi_data(kind, name, config, values))
    names = builtin_names(kind)
    if name and names and not config and name not in names:
        raise UsageError(
            f"--name={name}: no built-in project/{kind} (choose {', '.join(names)} or give --config)"
        )
    if kind == "label" and not config:
        raise UsageError(
            "project/label needs --config=<label_config.py> (type, category, meta.skeleton)"
        )
    data: dict[str, Any] = {}
    source = None
    if config:
        data, source = _load_config(config, kind)
    data.update(values)
    if kind == "label" and config:
        data = validate_label(data, source)
    elif kind == "submitter":
        data = _validate_submitter(data, source or "project/submitter")
    elif kind == "activelearning":
        data = validate_activelearning(data, source or f"--name={name}", name)
    method = name or data.get("method") or data.get("type") or "custom"
    if kind == "activelearning":
        method = name or data["strategy"]["type"]
    return _store(client, experiment, key, method, data, source)


def _semi_data(kind: str, name: str | None, config: str | None, values: dict) -> tuple:
    """``(method, config data, source)`` of a project/semi or project/distillation update:
    implemented methods only (``training_config.validate_setting``)."""
    from antgo_mlflow.project.training_config import validate_setting

    data, source = _load_config(config, kind) if config else ({}, None)
    data.update(values)
    data = validate_setting(kind, name, data, source or f"--name={name}")
    return data["method"], data, source


def _store(client, experiment, key: str, method: str, data: dict, source: str | None) -> dict:
    text = json.dumps(data, sort_keys=True, default=str)
    setting = {
        "method": method,
        "config": json.loads(text),
        "source": source,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "updated_by": whoami(),
        "updated_at": utc_now(),
    }
    put_json_tag(client, experiment, key, setting)
    return setting


def get_setting(project: str, kind: str, client=None) -> dict | None:
    """The stored setting ``kind`` of ``project`` (None when unset)."""
    _check_kind(kind)
    client = client or get_client()
    return read_json_tag(get_project(project, client), SETTINGS_PREFIX + kind, client)


def all_settings(project: str, client=None) -> dict[str, dict | None]:
    """Every setting kind of ``project``: ``{kind: setting or None}``, secrets masked (a setting
    stored by an older version may still hold some)."""
    from antgo_mlflow.credentials import redact

    client = client or get_client()
    experiment = get_project(project, client)
    return {
        kind: redact(read_json_tag(experiment, SETTINGS_PREFIX + kind, client)) for kind in KINDS
    }
