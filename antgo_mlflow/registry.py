"""One Registry class and the named registries (the root list lives here, in one place).

Example:
    >>> from antgo_mlflow.registry import MODELS
    >>> @MODELS.register_module()
    ... class TinyNet:
    ...     def __init__(self, width=8): ...
    >>> MODELS.build(dict(type="TinyNet", width=16))
"""

from __future__ import annotations

import contextvars
import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from antgo_mlflow.errors import RegistryError

# The config path of the object being built and its config, so that nested builds made inside a
# constructor (ImageClassifier building its backbone) can name `model.backbone.type` in errors.
_BUILDING: contextvars.ContextVar[tuple[str, Any] | None] = contextvars.ContextVar(
    "antgo_building", default=None
)


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``choices`` to ``name``, or ``''``."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in choices}
        match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        match = [lowered[m] for m in match]
    return f" (did you mean {match[0]!r}?)" if match else ""


def current_build() -> tuple[str, Any] | None:
    """The ``(config path, config)`` of the object being built right now, or None."""
    return _BUILDING.get()


def current_path(default: str) -> str:
    """The config path of the object being built right now (``model.head.loss``), else ``default``.

    Constructors use it so that errors raised after the Registry's own checks (a depth that is
    not 6n+4, a class_weight of the wrong length) still name the key the user has to edit.
    """
    current = _BUILDING.get()
    return current[0] if current else default


def _child_path(cfg: Any) -> str | None:
    """Find where ``cfg`` sits inside the config being built, by identity then by equality."""
    current = _BUILDING.get()
    if current is None:
        return None
    parent_path, parent = current
    if not isinstance(parent, Mapping):
        return None
    for same in (lambda a, b: a is b, lambda a, b: a == b):
        for key, value in parent.items():
            if same(value, cfg):
                return f"{parent_path}.{key}"
            if isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if same(item, cfg):
                        return f"{parent_path}.{key}.{i}"
    return None


class Registry:
    """A name → class (or factory function) table that builds objects from ``type=`` configs.

    Args:
        name: what the registry holds, used in error messages ("model", "transform").
        locations: modules imported on first lookup so that their ``register_module``
            decorators have run (keeps ``import antgo_mlflow`` free of torch).
    """

    def __init__(self, name: str, locations: tuple[str, ...] | list[str] = ()):
        self.name = name
        self.locations = list(locations)
        self._modules: dict[str, Any] = {}
        self._imported = False

    # -- registration -------------------------------------------------------------------------
    def register_module(
        self, name: str | list[str] | None = None, force: bool = False, module: Any = None
    ):
        """Register a class or function, as a decorator (``@X.register_module()``) or a call.

        Raises RegistryError on a duplicate name unless ``force=True``.
        """
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj):
            self._register(obj, name, force)
            return obj

        return decorator

    def _register(self, obj: Any, name: str | list[str] | None, force: bool) -> None:
        # Our own modules register first, so a user module registering a name we also provide
        # (the scaffold's WideResNet) is a duplicate it must force, whatever the import order.
        self.import_locations()
        if not callable(obj):
            raise RegistryError(f"{self.name} registry: {obj!r} is not a class or function")
        names = [name] if isinstance(name, str) or name is None else list(name)
        for n in names:
            key = n or obj.__name__
            if not force and key in self._modules and self._modules[key] is not obj:
                raise RegistryError(
                    f"{self.name} registry: {key!r} is already registered "
                    f"(by {self._modules[key].__module__}); pass force=True to replace it"
                )
            self._modules[key] = obj

    # -- lookup -------------------------------------------------------------------------------
    def import_locations(self) -> None:
        """Import the modules that populate this registry (once)."""
        if self._imported:
            return
        self._imported = True
        for location in self.locations:
            try:
                importlib.import_module(location)
            except ModuleNotFoundError as exc:
                # A location not written yet is skipped; a missing dependency inside it is not.
                if exc.name is None or not location.startswith(exc.name):
                    raise

    def get(self, name: str) -> Any:
        """Return the registered object called ``name`` or None."""
        if name not in self._modules:
            self.import_locations()
        return self._modules.get(name)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __len__(self) -> int:
        self.import_locations()
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        self.import_locations()
        return iter(sorted(self._modules))

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern`` (``'*Flip*'``)."""
        return [n for n in self if fnmatch.fnmatchcase(n, pattern)]

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self._modules)} entries)"

    # -- build --------------------------------------------------------------------------------
    def build(
        self,
        cfg: Mapping[str, Any],
        path: str | None = None,
        default_args: Mapping[str, Any] | None = None,
    ) -> Any:
        """Build an object from ``cfg['type']`` and the remaining keys as keyword arguments.

        Keyword arguments are checked against the constructor's signature before calling it;
        errors name the config path (``model.backbone.type``) and suggest the closest name.
        """
        path = path or _child_path(cfg) or self.name
        if not isinstance(cfg, Mapping):
            raise RegistryError(f"{path}: expected a dict with a 'type' key, got {cfg!r}")
        kwargs = dict(default_args or {})
        kwargs.update(cfg)
        if "type" not in kwargs:
            raise RegistryError(f"{path}: missing 'type' (one of the registered {self.name}s)")
        obj_type = kwargs.pop("type")
        if isinstance(obj_type, str):
            obj = self.get(obj_type)
            if obj is None:
                raise RegistryError(
                    f"{path}.type: unknown {self.name} {obj_type!r}{did_you_mean(obj_type, list(self))}"
                )
            type_name = obj_type
        elif callable(obj_type):
            obj, type_name = obj_type, getattr(obj_type, "__name__", repr(obj_type))
        else:
            raise RegistryError(f"{path}.type: expected a name or a class, got {obj_type!r}")
        check_kwargs(obj, kwargs, path, type_name)
        token = _BUILDING.set((path, cfg))
        try:
            return obj(**kwargs)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(f"{path}: building {type_name} failed: {exc}") from exc
        finally:
            _BUILDING.reset(token)


def check_kwargs(obj: Callable, kwargs: Mapping[str, Any], path: str, type_name: str) -> None:
    """Raise RegistryError if ``kwargs`` do not fit ``obj``'s signature (unknown or missing)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    params = sig.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        n: p
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    if not accepts_any:
        for key in kwargs:
            if key not in named:
                raise RegistryError(
                    f"{path}.{key}: {type_name} has no argument {key!r}{did_you_mean(key, named)}"
                )
    has_var_positional = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values())
    for n, p in named.items():
        if p.default is inspect.Parameter.empty and n not in kwargs and not has_var_positional:
            raise RegistryError(f"{path}: {type_name} needs argument {n!r}")


# The named registries. `locations` are imported on first lookup.
# inference.teacher registers PretrainedModel (a frozen model from any URI the shared loader
# resolves): models build a distillation teacher through the registry, never importing upwards.
MODELS = Registry("model", locations=("antgo_mlflow.models", "antgo_mlflow.inference.teacher"))
LOSSES = Registry("loss", locations=("antgo_mlflow.models.losses",))
DATASETS = Registry(
    "dataset",
    locations=(
        "antgo_mlflow.data.datasets",
        "antgo_mlflow.data.gt_dataset",
        "antgo_mlflow.data.concat",
    ),
)
TRANSFORMS = Registry("transform", locations=("antgo_mlflow.data.transforms",))
HOOKS = Registry("hook", locations=("antgo_mlflow.engine.hooks",))
METRICS = Registry(
    "metric", locations=("antgo_mlflow.engine.metrics", "antgo_mlflow.engine.detection_metrics")
)
OPTIMIZERS = Registry("optimizer", locations=("antgo_mlflow.engine.optim",))
SCHEDULERS = Registry("scheduler", locations=("antgo_mlflow.engine.optim",))
ACQUISITIONS = Registry("acquisition", locations=("antgo_mlflow.active.strategies",))
LOOPS = Registry("loop", locations=("antgo_mlflow.engine.loops",))
SAMPLERS = Registry("sampler", locations=("antgo_mlflow.data.samplers",))
COLLATE = Registry("collate function", locations=("antgo_mlflow.data.collate",))

ROOT_REGISTRIES = {
    "MODELS": MODELS,
    "LOSSES": LOSSES,
    "DATASETS": DATASETS,
    "TRANSFORMS": TRANSFORMS,
    "HOOKS": HOOKS,
    "METRICS": METRICS,
    "OPTIMIZERS": OPTIMIZERS,
    "SCHEDULERS": SCHEDULERS,
    "ACQUISITIONS": ACQUISITIONS,
    "LOOPS": LOOPS,
    "SAMPLERS": SAMPLERS,
    "COLLATE": COLLATE,
}
