"""Python-file configs: ``Config.fromfile`` with ``_base_`` inheritance, dotted overrides, dump, flatten.

Example:
    >>> cfg = Config.fromfile("configs/config.py")
    >>> cfg.merge_overrides(["optimizer.lr=0.1", "data.train_dataloader.samples_per_gpu=64"])
    >>> cfg.optimizer.lr
    0.1
    >>> cfg.dump("used_config.py")  # reloads to an equal config
    >>> Config.from_data(config_to_data(cfg)) == cfg  # plain data: what checkpoints record
    True

A Python config file is code: ``fromfile`` executes it (as mmengine does), so load only configs
you trust. Checkpoints record the resolved config as plain data instead (``config_to_data``).
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import json
import os
import pprint
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import ConfigError

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
_PLAIN = (dict, list, tuple, str, int, float, bool, type(None))


class ConfigDict(dict):
    """A dict whose keys are also attributes (``cfg.model.backbone.depth``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = _wrap(value)

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __deepcopy__(self, memo):
        return type(self)({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        """A plain nested dict/list copy (for JSON, pickling-free transport and comparison)."""
        return _unwrap(self)


def _wrap(value: Any) -> Any:
    if isinstance(value, ConfigDict):
        return value
    if isinstance(value, Mapping):
        return ConfigDict({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    return value


def _merge(base: dict, child: Mapping) -> dict:
    """Merge ``child`` into a copy of ``base``; a child dict with ``_delete_=True`` replaces."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping):
            value = dict(value)
            if value.pop(DELETE_KEY, False) or not isinstance(out.get(key), Mapping):
                out[key] = _strip_delete(value)
            else:
                out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _strip_delete(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    return value


def parse_value(text: str) -> Any:
    """Parse an override value: Python literals (``0.1``, ``[1, 2]``, ``'x'``), true/false/none,
    otherwise the raw string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _read_file(path: Path, chain: tuple[Path, ...]) -> dict:
    if path.suffix != ".py":
        raise ConfigError(f"{path}: a config must be a .py file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path in chain:
        raise ConfigError(f"{path}: _base_ inheritance loops back to itself")
    source = path.read_text(encoding="utf-8")
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid Python in config: {exc.msg}") from exc
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "__antgo_config__"}
    try:
        exec(code, namespace)  # the user's own config file, like mmengine's Config.fromfile
    except Exception as exc:
        raise ConfigError(
            f"{path}: error while executing config: {type(exc).__name__}: {exc}"
        ) from exc
    data = {
        k: v
        for k, v in namespace.items()
        if (not k.startswith("_") or k == BASE_KEY) and isinstance(v, _PLAIN)
    }
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: dict = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        merged = _merge(merged, _read_file(base_path, chain + (path,)))
    return _merge(merged, data)


class Config(ConfigDict):
    """A loaded config: a ConfigDict that also remembers the file it came from."""

    def __init__(self, data: Mapping[str, Any] | None = None, filename: str | None = None):
        super().__init__({k: _wrap(v) for k, v in (data or {}).items()})
        object.__setattr__(self, "_filename", filename)

    @property
    def filename(self) -> str | None:
        """The file the config was loaded from, or None."""
        return object.__getattribute__(self, "_filename")

    @classmethod
    def fromfile(cls, path: str | os.PathLike) -> Config:
        """Load a Python-file config, following ``_base_`` files relative to it."""
        path = Path(path).expanduser().resolve()
        return cls(_read_file(path, ()), filename=str(path))

    @classmethod
    def from_data(cls, data: Any, where: str = "config") -> Config:
        """A Config from plain data (what :func:`config_to_data` made); nothing is executed.

        ConfigError naming ``where`` if ``data`` is not a dict of plain values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a dict of config keys, got {type(data).__name__}")
        try:
            plain = _plain(data, "")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return cls(plain, filename=None)

    def __deepcopy__(self, memo):
        return Config({k: copy.deepcopy(v, memo) for k, v in self.items()}, self.filename)

    def copy(self) -> Config:
        return copy.deepcopy(self)

    def _where(self) -> str:
        return self.filename or "config"

    # -- overrides ------------------------------------------------------------------------------
    def merge_overrides(self, overrides: Iterable[str] | Mapping[str, Any]) -> Config:
        """Apply dotted overrides (``"optimizer.lr=0.1"`` strings or a ``{dotted: value}`` dict).

        List items are addressed by index (``data.train.pipeline.2.size=64``). A new leaf key
        may be added to an existing dict; a missing intermediate key is an error.
        """
        if isinstance(overrides, Mapping):
            items = list(overrides.items())
        else:
            items = []
            for text in overrides:
                if "=" not in text:
                    raise ConfigError(f"--cfg-options {text!r}: expected key=value")
                key, value = text.split("=", 1)
                items.append((key.strip(), parse_value(value)))
        for key, value in items:
            self._set_dotted(key, value)
        return self

    def _set_dotted(self, dotted: str, value: Any) -> None:
        parts = dotted.split(".")
        if not all(parts):
            raise ConfigError(f"--cfg-options {dotted!r}: empty key component")
        node: Any = self
        walked: list[str] = []
        for part in parts[:-1]:
            node = self._step(node, part, walked, dotted)
            walked.append(part)
        last = parts[-1]
        if isinstance(node, dict):
            node[last] = _wrap(value)
        elif isinstance(node, list):
            index = self._index(node, last, walked, dotted)
            node[index] = _wrap(value)
        else:
            raise ConfigError(
                f"--cfg-options {dotted}: {'.'.join(walked)} in {self._where()} is a "
                f"{type(node).__name__}, not a dict or list"
            )

    def _step(self, node: Any, part: str, walked: list[str], dotted: str) -> Any:
        if isinstance(node, dict):
            if part not in node:
                where = ".".join(walked + [part])
                hint = difflib.get_close_matches(part, [str(k) for k in node], n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(
                    f"--cfg-options {dotted}: {self._where()} has no key {where!r}{suffix}"
                )
            return node[part]
        if isinstance(node, list):
            return node[self._index(node, part, walked, dotted)]
        raise ConfigError(
            f"--cfg-options {dotted}: {'.'.join(walked)} in {self._where()} is a "
            f"{type(node).__name__}, not a dict or list"
        )

    def _index(self, node: list, part: str, walked: list[str], dotted: str) -> int:
        try:
            index = int(part)
            node[index]
        except (ValueError, IndexError):
            raise ConfigError(
                f"--cfg-options {dotted}: {'.'.join(walked)} is a list of {len(node)}; "
                f"{part!r} is not a valid index"
            ) from None
        return index

    # -- output ---------------------------------------------------------------------------------
    @property
    def pretty_text(self) -> str:
        """Python source that reloads to an equal config."""
        lines = [f"# antgo-mlflow config (from {self.filename or 'memory'})"]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {pprint.pformat(value, indent=1, width=100, sort_dicts=False)}")
        return "\n".join(lines) + "\n"

    def to_data(self) -> dict | None:
        """The config as plain JSON-safe data, or None if part of it is not data (see
        :func:`config_to_data`): what a checkpoint records, so loading it runs no code."""
        return config_to_data(self)

    def dump(self, path: str | os.PathLike) -> None:
        """Write the config as a ``.py`` file (atomically)."""
        from antgo_mlflow.fileio import atomic_write_text

        atomic_write_text(path, self.pretty_text)

    def flatten(self, sep: str = ".") -> dict[str, Any]:
        """Flatten to ``{dotted.key: scalar}`` for logging as params.

        Dicts and lists of dicts recurse (``data.train.pipeline.0.type``); lists of scalars and
        other values become their ``repr``-like JSON text.
        """
        out: dict[str, Any] = {}

        def visit(prefix: str, value: Any) -> None:
            if isinstance(value, Mapping):
                if not value:
                    out[prefix] = "{}"
                for k, v in value.items():
                    visit(f"{prefix}{sep}{k}" if prefix else str(k), v)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
                for i, v in enumerate(value):
                    visit(f"{prefix}{sep}{i}", v)
            elif isinstance(value, (list, tuple)):
                out[prefix] = json.dumps(_unwrap(value))
            else:
                out[prefix] = value

        visit("", self)
        return out

    def hash(self) -> str:
        """A short stable digest of the config's content (for the ``antgo.config_hash`` tag)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return _normalise(self.to_dict()) == _normalise(_unwrap(other))
        return NotImplemented

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"Config({self.filename!r}, keys={list(self)})"


def config_to_data(cfg: Mapping[str, Any], strict: bool = False) -> dict | None:
    """The config as plain JSON-safe data (str keys; dicts, lists, str, int, float, bool, None).

    This is what a checkpoint records (``meta["config_dict"]``): data rebuilds the model with
    :meth:`Config.from_data` and, unlike config text, never runs as code. Tuples become lists.

    Args:
        cfg: a Config or any mapping.
        strict: raise ConfigError naming the first value that is not plain data (a class, a
            function, a non-string key); by default return None for such a config.

    Returns:
        the plain dict, or None (``strict=False``) when part of the config is not data.
    """
    try:
        return _plain(cfg, "")
    except ConfigError:
        if strict:
            raise
        return None


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where or 'config'}: key {key!r} is not a string")
            out[key] = _plain(item, f"{where}.{key}" if where else key)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ConfigError(f"{where}: {type(value).__name__} value is not plain data")


def _normalise(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value
