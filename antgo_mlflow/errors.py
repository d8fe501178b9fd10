"""The AntgoError family: every user-facing failure, rendered once by the CLI as one line, exit 2."""


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
