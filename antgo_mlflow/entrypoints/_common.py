"""Shared plumbing of the entry-point scripts: argparse with one-line errors, and the error wrapper."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from antgo_mlflow import env
from antgo_mlflow.errors import AntgoError, UsageError, one_line, os_error_line


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``<prog>: error: ...``) and exit 2.

    Every ``--dashed-option`` also answers to ``--dashed_option`` (not shown in ``--help``):
    ``mlflow run -P batch_size=32`` passes a parameter the MLproject does not declare as
    ``--batch_size 32``, and MLproject parameter names are identifiers.
    """

    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise UsageError(message)

    def add_argument(self, *names, **kwargs):
        action = super().add_argument(*names, **kwargs)
        aliases = [
            "--" + n[2:].replace("-", "_")
            for n in names
            if isinstance(n, str) and n.startswith("--") and "-" in n[2:]
        ]
        aliases = [a for a in aliases if a not in self._option_string_actions]
        if aliases:
            hidden = dict(kwargs, dest=action.dest, help=argparse.SUPPRESS)
            super().add_argument(*aliases, **hidden)
        return action


def run_main(
    prog: str, fn: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None
) -> None:
    """Run ``fn(argv)``; AntgoError -> one line on stderr + exit 2 (``ANTGO_DEBUG=1`` shows the traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # a new SQLite store announces its table creation at INFO on stderr; errors must stay one line
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def fail(message: object, code: int = 2) -> None:
        if env.debug():
            traceback.print_exc()
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)
        sys.exit(code)

    try:
        code = fn(args)
    except AntgoError as exc:
        fail(exc, exc.exit_code)
    except OSError as exc:  # a full disk, an unwritable --output: one line, not a traceback
        fail(os_error_line(exc))
    except RecursionError:
        fail("input nested too deeply to process")
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(code or 0)


def started_by_mlflow_run(run_id: str | None) -> str | None:
    """The ``--env-manager`` that ``mlflow run`` (or ``antgo train``) started run ``run_id``
    with (``local``, ``virtualenv``, ``uv``, ``conda``, ``docker``); None when this process was
    started directly (``python ...``)."""
    if not run_id or os.environ.get("MLFLOW_RUN_ID") != run_id:
        return None
    from mlflow import MlflowClient

    try:
        tags = MlflowClient().get_run(run_id).data.tags
    except Exception:  # the hint is a courtesy; never fail a finished run over it
        return None
    if tags.get("mlflow.source.type") != "PROJECT":
        return None
    # MLflow tags every environment it builds; a local run (--env-manager local) gets no tag.
    return tags.get("mlflow.project.env") or "local"


def project_dir_arg() -> str:
    """This project folder as the user's shell would name it (``.`` from the folder itself)."""
    here = os.getcwd()
    shell = os.environ.get("PWD")  # the shell's folder: `mlflow run` changes ours, not $PWD
    if not shell or os.path.realpath(shell) == os.path.realpath(here):
        return "."
    rel = os.path.relpath(here, shell)
    return rel if not rel.startswith("..") else here


def rerun_command(
    run_id: str | None,
    entry_point: str,
    params: Sequence[tuple[str, str]],
    direct: Sequence[str],
) -> str:
    """The command that runs ``entry_point`` with ``params`` the way run ``run_id`` was
    started: ``mlflow run <dir> -e <entry point> --env-manager <same> -P k=v ...`` after
    ``mlflow run`` / ``antgo train``, else ``direct`` (the plain ``python`` command)."""
    import shlex

    env = started_by_mlflow_run(run_id)
    if env is None:
        return shlex.join(direct)
    cmd = ["mlflow", "run", project_dir_arg(), "-e", entry_point]
    if env != "docker":  # a docker project has no --env-manager choice
        cmd += ["--env-manager", env]
    for key, value in params:
        cmd += ["-P", f"{key}={value}"]
    return shlex.join(cmd)


def optional(value: str | None) -> str | None:
    """MLproject passes every parameter; an empty string means "not given"."""
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def split_values(values: Sequence[str]) -> list[str]:
    """Repeated and comma-separated values (``--models a,b --models c``) as one list."""
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def parse_bool(flag: str, value: str | bool) -> bool:
    """``true/false/1/0/yes/no`` -> bool (MLproject parameters are strings)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{flag} must be true or false, got {value!r}")


def check_output(flag: str, value: str | None, folder: bool = False) -> str | None:
    """Check an output path before any work: a file path must not be an existing folder (and a
    folder path not an existing file), and its nearest existing parent must be a writable folder."""
    from pathlib import Path

    if value is None:
        return None
    path = Path(value).expanduser()
    if not folder and path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give the file to write")
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file; give a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path}: {parent} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"{flag} {path}: cannot write in {parent}")
            break
    return value


def parse_int(flag: str, value: str | None, minimum: int | None = None) -> int | None:
    """An optional integer parameter ('' = not given); UsageError naming ``flag`` if malformed."""
    value = optional(value)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{flag} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise UsageError(f"{flag} must be >= {minimum}, got {number}")
    return number


def parse_float(flag: str, value: str | None, positive: bool = False) -> float | None:
    """An optional float parameter ('' = not given)."""
    import math

    value = optional(value)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{flag} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise UsageError(
            f"{flag} must be a {'positive ' if positive else ''}finite number, got {value!r}"
        )
    return number


def _tokens(text: str) -> list[str]:
    """Split on whitespace outside quotes and brackets, keeping quotes (values are Python literals)."""
    out, cur, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            cur.append(ch)
        elif ch.isspace() and depth <= 0:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if quote or depth > 0:
        raise UsageError(f"--cfg-options: unbalanced quotes or brackets in {text!r}")
    if cur:
        out.append("".join(cur))
    return out


def split_options(flag: str, values: Sequence[str] | None) -> list[str]:
    """``--cfg-options`` tokens: ``k=v`` pairs given as separate words or in one string.

    Values are Python literals (``lr=0.1``, ``size=[32, 32]``, ``name='a b'``); spaces inside
    quotes or brackets do not split.
    """
    out: list[str] = []
    for value in values or []:
        value = optional(value)
        if value is None:
            continue
        for token in _tokens(value):
            if "=" not in token or token.startswith("="):
                raise UsageError(f"{flag}: expected key=value, got {token!r}")
            out.append(token)
    return out


TRUST_HELP = (
    "run an old checkpoint's config *text* and import its config's custom_imports "
    "(that is code: only for checkpoints you trust)"
)


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint-config`` alone, or with true/false (MLproject passes a value)."""
    parser.add_argument(
        "--trust-checkpoint-config", nargs="?", const="true", default="false", help=TRUST_HELP
    )


def trust_flag(value: str | None) -> bool:
    """The parsed ``--trust-checkpoint-config`` ('' = not given = false)."""
    return parse_bool("--trust-checkpoint-config", optional(value) or "false")
