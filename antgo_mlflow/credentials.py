"""Secrets never reach MLflow, logs or command lines: detect them, mask them, read them from files.

* A key is secret when its last part is a password/secret/token/API key name (``password``,
  ``ssh.passwd``, ``api_key``, ``LABEL_STUDIO_TOKEN``); ``password_file`` / ``password_env`` name
  where a secret lives and are not secrets themselves.
* Settings refuse secret values (:func:`find_secrets`); everything shown or logged goes through
  :func:`redact` (values become ``***``).
* Annotator passwords (``white_users``) come from a file only its owner can read (``0600``,
  ``name:password`` per line or comma-separated) or from an environment variable holding the same
  text (default ``ANTGO_WHITE_USERS``); settings and command lines name only users.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from antgo_mlflow import env as antgo_env
from antgo_mlflow.errors import ConfigError, UsageError

MASK = "***"
WHITE_USERS_ENV = antgo_env.ANTGO_WHITE_USERS
_SECRET = re.compile(
    r"(^|[._-])(pass(word|wd|phrase)?|secrets?|token|api[_-]?key|access[_-]?key|credentials?)$",
    re.IGNORECASE,
)


def is_secret_key(key: Any) -> bool:
    """True for a (dotted) key whose last part names a secret (``password``, ``api_key``, ...)."""
    return isinstance(key, str) and bool(_SECRET.search(key.rsplit(".", 1)[-1]))


def _secret_value(value: Any) -> bool:
    return value not in (None, "", [], {}) and not isinstance(value, bool)


def find_secrets(obj: Any, path: str = "") -> list[str]:
    """Dotted paths of every non-empty secret value in a nested dict/list (settings, configs)."""
    found: list[str] = []
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            where = f"{path}.{key}" if path else str(key)
            if is_secret_key(key) and _secret_value(value) and not isinstance(value, Mapping):
                found.append(where)
            else:
                found += find_secrets(value, where)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += find_secrets(value, f"{path}[{i}]")
    return found


def _redact_white_users(value: Any) -> Any:
    # antgo's forms: "name:password,..." and {name: "password"} / {name: {"password": ...}}
    if isinstance(value, str):
        return re.sub(r":[^,]*", ":" + MASK, value)
    if isinstance(value, Mapping):
        return {k: redact(v) if isinstance(v, Mapping) else MASK for k, v in value.items()}
    return value


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with every secret value replaced by ``***`` (dicts and lists walked)."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if k == "white_users":
                out[k] = _redact_white_users(v)
            elif is_secret_key(k) and _secret_value(v) and not isinstance(v, Mapping):
                out[k] = MASK
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj


def parse_user_passwords(text: str, where: str) -> dict[str, str]:
    """``name:password`` pairs (one per line or comma-separated) -> ``{name: password}``."""
    out: dict[str, str] = {}
    for n, part in enumerate(re.split(r"[\n,]", text), 1):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        name, sep, password = part.partition(":")
        if not sep or not name.strip() or not password:
            raise UsageError(f"{where}: entry {n} is not name:password")  # value not echoed
        out[name.strip()] = password
    return out


def read_secret_file(path: str | os.PathLike, flag: str) -> str:
    """The text of a secrets file, refused unless only its owner can read it (mode 0600/0400)."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
    except OSError:
        raise UsageError(f"{flag} {p}: no such file") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{flag} {p}: not a file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(
            f"{flag} {p}: readable by others (mode {stat.S_IMODE(mode):o}); run chmod 600 {p}"
        )
    return p.read_text(encoding="utf-8")


def white_user_passwords(
    names: Iterable[str] = (), file: str | os.PathLike | None = None, env: str | None = None
) -> dict[str, str]:
    """``{name: password}`` for annotators from a 0600 ``file`` or the environment variable ``env``
    (default ``ANTGO_WHITE_USERS``); ``names`` (if given) must all have a password there."""
    names = [n for n in names if n]
    if file:
        where, text = str(file), read_secret_file(file, "--white-users-file")
    else:
        env = env or WHITE_USERS_ENV
        where, text = f"${env}", antgo_env.text(env) or ""
        if not text and names:
            raise UsageError(
                f"white users {', '.join(names)}: no passwords given; put name:password lines in "
                f"a file only you can read (chmod 600) and pass --white-users-file, or set ${env}"
            )
    found = parse_user_passwords(text, where)
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise UsageError(f"{where}: no password for {', '.join(missing)}")
        found = {n: found[n] for n in names}
    return found


def check_no_inline_passwords(value: Any, where: str) -> list[str]:
    """The user names of a ``white_users`` value; ConfigError if it carries passwords.

    Accepted: ``["alice", "bob"]``, ``"alice,bob"`` or ``{"alice": {}}``; refused: antgo's
    ``{"alice": {"password": ...}}`` and ``"alice:secret"`` (the message never shows them).
    """
    hint = (
        "passwords are never stored in MLflow: list the user names and set white_users_file "
        f"(a 0600 file of name:password lines) or white_users_env (default ${WHITE_USERS_ENV})"
    )
    if value in (None, "", [], {}):
        return []
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
        if any(":" in n for n in names):
            raise ConfigError(f"{where}: white_users holds passwords; {hint}")
        return names
    if isinstance(value, Mapping):
        if any(_secret_value(v) for v in value.values()):
            raise ConfigError(f"{where}: white_users holds passwords; {hint}")
        return [str(k) for k in value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        if any(":" in v for v in value):
            raise ConfigError(f"{where}: white_users holds passwords; {hint}")
        return list(value)
    raise ConfigError(f"{where}: white_users must be a list of user names")
