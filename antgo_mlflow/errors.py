"""The AntgoError family: every user-facing failure, rendered once by the CLI as one line, exit 2."""

import re

_LONG_WORD = 160  # an echoed value is cut to about this many characters (a 1 MB --tags stays short)
_MAX_LINE = 1000
# "<dir>/.antgo-tmp-1a2b/<name>" -> "<dir>/<name>" (fileio.TMP_PREFIX; not imported: keep core flat)
_STAGING = re.compile(r"\.antgo-tmp-[^/\\\s'\"]*[/\\]")


class AntgoError(Exception):
    """Base of all errors a user can fix; the message is the one line the CLI prints."""

    exit_code = 2


class UsageError(AntgoError):
    """A flag or argument is missing, malformed or contradicts another."""


class ConfigError(AntgoError):
    """A config file or a config key is wrong (the message names the file and the key)."""


class RegistryError(ConfigError):
    """A registry lookup or build failed: unknown type, bad keyword, duplicate name."""


class DataError(AntgoError):
    """Input data is missing, unreadable or malformed (names the file and what is wrong)."""


class GTFormatError(DataError):
    """A standard ground-truth JSON file breaks schema 1 (names the sample index and field)."""


class ShardError(DataError):
    """A TFRecord/LMDB shard, its index or its manifest is missing or corrupt."""


class TrackingError(AntgoError):
    """An MLflow object (run, experiment, model, alias) does not exist or is in the wrong state."""


class ServiceError(AntgoError):
    """An external service (FiftyOne, Label Studio, mlflow server, sshd, docker) failed."""


class WorkerLost(AntgoError):
    """A worker process died mid-way (killed, or out of memory): nothing the input can fix."""

    exit_code = 1


class MissingDependencyError(AntgoError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional module or raise a one-line hint naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed: pip install 'antgo-mlflow[{extra}]' ({exc})"
        ) from exc


def _short_word(word: str) -> str:
    if len(word) <= _LONG_WORD:
        return word
    keep = _LONG_WORD // 2
    return f"{word[:keep]}...({len(word) - 2 * keep} chars)...{word[-keep:]}"


def one_line(text: object) -> str:
    """A message as one line: whitespace folded, huge values cut, staging folders hidden.

    A path inside a hidden staging folder (``out/.antgo-tmp-1a2b/annotation.json``) is shown as
    the path the user asked for (``out/annotation.json``).
    """
    words = [_short_word(w) for w in _STAGING.sub("", str(text)).split()]
    line = " ".join(words)
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def os_error_line(exc: OSError) -> str:
    """An OSError as ``<path>: <reason>`` (the reason alone when no path is known)."""
    what = exc.strerror or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n]
    return f"{': '.join(names)}: {what}" if names else f"{what} ({exc})"
