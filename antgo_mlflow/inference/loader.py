"""Load any model for inference: ``runs:/``, ``models:/<name>@<alias>``, ``models:/m-…``, ``.onnx``, ``.pth``.

Forms (``uri``):
- ``model.onnx`` — run with ONNX Runtime.
- ``best.pth`` — a checkpoint; the model is rebuilt from the config *data* it records
  (``meta["config_dict"]``) or from ``config`` (a config file the caller trusts).
- ``runs:/<run_id>`` — that training run's checkpoint (``best.pth``, else ``latest.pth``, else the
  newest ``epoch_N.pth``, from its ``checkpoints/`` artifacts or its local work_dir).
- ``runs:/<run_id>/<path>.pth`` / ``.onnx`` — that artifact file.
- ``runs:/<run_id>/<model>``, ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
  ``models:/m-<id>`` — an MLflow model (ONNX or PyTorch flavor); ``from_checkpoint=True`` rebuilds
  the torch module from the checkpoint of the model's training run instead (embeddings, a teacher).

A checkpoint never runs code: its config is plain data, and modules that data names in
``custom_imports`` are not imported (only ones already imported count). Old checkpoints record
their config as Python *text*; that is executed only with ``trust_checkpoint_config=True``
(``--trust-checkpoint-config``), and the text's or the data's ``custom_imports`` are imported only
then. A pickle-format MLflow PyTorch model, or one that ships code, loads only when the user has
set ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`` (MLflow's own switch; pt2 models are checked
to be pickle-free).

Example:
    >>> p = load_model("models:/digits@champion")
    >>> p.predict_proba(images).shape, p.num_classes     # ((N, 10), 10)
    >>> teacher = load_torch_module("runs:/0a1b...")      # frozen nn.Module: logits
    >>> models = load_models(["a.onnx", "runs:/0a1b..."]) # one line if class counts differ
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antgo_mlflow import env
from antgo_mlflow.errors import RegistryError, TrackingError, UsageError
from antgo_mlflow.inference.predictor import (
    DEFAULT_BATCH,
    ModelInfo,
    Predictor,
    check_same_classes,
    predictor_class,
)
from antgo_mlflow.inference.preprocess import Preprocess, preprocess_from_params, preprocess_of

TRUST_FLAG = "--trust-checkpoint-config"
PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
_CHECKPOINT_SUFFIXES = (".pth", ".pt")


# -- checkpoints ------------------------------------------------------------------------------
@dataclass
class CheckpointModel:
    """A model rebuilt from a checkpoint: the module (weights loaded, eval mode), config, meta."""

    model: Any  # torch.nn.Module
    cfg: Any  # antgo_mlflow.config.Config
    meta: dict[str, Any]
    path: Path


def checkpoint_config(
    meta: Mapping[str, Any],
    path: Path | str,
    config: str | os.PathLike | None = None,
    trust_checkpoint_config: bool = False,
    flag: str = "--checkpoint",
):
    """The config that rebuilds a checkpoint's model, and whether it is trusted (may import code).

    ``config`` (the caller's own file) wins; else the checkpoint's config data; else its config
    text, executed only when ``trust_checkpoint_config``. UsageError (one line) otherwise.

    Args:
        meta: the checkpoint's ``meta`` dict.
        path: the checkpoint as the user named it (for messages).
        config: the caller's own config file, if any.
        trust_checkpoint_config: allow config text to run.
        flag: the option named in messages.

    Returns:
        ``(Config, trusted)``.
    """
    from antgo_mlflow.config import Config

    if config:
        if not Path(config).expanduser().is_file():
            raise UsageError(f"--config: {config} not found")
        return Config.fromfile(config), True
    data = meta.get("config_dict")
    if data is not None:
        return Config.from_data(data, where=f"{flag}: {path} (meta.config_dict)"), bool(
            trust_checkpoint_config
        )
    text = meta.get("config")
    if isinstance(text, str) and text.strip():
        if not trust_checkpoint_config:
            raise UsageError(
                f"{flag}: {path} records its config as Python text, which would run as code; "
                f"pass --config <its training config>, or {TRUST_FLAG} if you trust this file"
            )
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "config.py"
            file.write_text(text, encoding="utf-8")
            cfg = Config.fromfile(file)
        return Config(cfg.to_dict(), filename=f"{path} (meta.config)"), True
    raise UsageError(f"{flag}: {path} records no config as plain data; pass --config")


def custom_import_names(cfg: Mapping[str, Any]) -> list[str]:
    """The module names of a config's ``custom_imports`` (``dict(imports=[...])`` or a list)."""
    spec = cfg.get("custom_imports")
    names = spec.get("imports") if isinstance(spec, Mapping) else spec
    if isinstance(names, str):
        names = [names]
    return [n for n in names or [] if isinstance(n, str) and n]


def import_custom_modules(cfg: Mapping[str, Any], trusted: bool) -> list[str]:
    """Import a config's ``custom_imports`` when ``trusted``; return the names left unimported.

    The rule for untrusted configs (a checkpoint's data): a module is never imported because data
    names it (importing runs the module's code, and a name can resolve to a file in the working
    directory); a module that is already imported is simply there.
    """
    if trusted:
        from antgo_mlflow.engine.run_setup import import_custom_modules as import_all

        import_all(cfg)
        return []
    return [name for name in custom_import_names(cfg) if name not in sys.modules]


def build_from_checkpoint(
    path: str | os.PathLike,
    config: str | os.PathLike | None = None,
    trust_checkpoint_config: bool = False,
    flag: str = "--checkpoint",
    name: str | None = None,
) -> CheckpointModel:
    """Rebuild a ``.pth`` checkpoint's model and load its weights; nothing in the file runs.

    Args:
        path: the checkpoint (read with ``weights_only=True``).
        config: a config file to build the model from instead of the checkpoint's own.
        trust_checkpoint_config: allow an old checkpoint's config *text* to run, and the
            checkpoint config's ``custom_imports`` to be imported.
        flag: the option named in error messages.
        name: how messages name the checkpoint (default ``path``; e.g. the URI it came from).

    Returns:
        CheckpointModel (model in eval mode, on the CPU).
    """
    from antgo_mlflow.engine.checkpoint import load_checkpoint, load_weights
    from antgo_mlflow.registry import MODELS

    path = Path(path).expanduser()
    name = name or str(path)
    ckpt = load_checkpoint(path, f"{flag} {name}" if name != str(path) else flag)
    meta = dict(ckpt.get("meta") or {}) if isinstance(ckpt.get("meta"), Mapping) else {}
    cfg, trusted = checkpoint_config(meta, name, config, trust_checkpoint_config, flag)
    skipped = import_custom_modules(cfg, trusted)
    if not isinstance(cfg.get("model"), Mapping):
        raise UsageError(f"{flag}: {name}: its config has no model dict; pass --config")
    model_cfg, prefix = _inference_config(cfg.model)
    try:
        model = MODELS.build(model_cfg, path="model")
    except RegistryError as exc:
        if not skipped:
            raise
        raise UsageError(
            f"{flag}: {name}: {exc}; its config's custom_imports {skipped} are not imported "
            f"from a checkpoint: pass --config, or {TRUST_FLAG} if you trust this file"
        ) from None
    load_weights(model, path, flag, prefix=prefix)
    return CheckpointModel(model.eval(), cfg, meta, path)


def _inference_config(model_cfg: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The config of the module a checkpoint's model exports, and its state-dict prefix: a
    semi-supervised or distillation wrapper names its EMA copy or student
    (``inference_spec``), so the wrapper (and its teacher) is never built for inference."""
    from antgo_mlflow.registry import MODELS

    cls = MODELS.get(model_cfg.get("type")) if isinstance(model_cfg.get("type"), str) else None
    spec = getattr(cls, "inference_spec", None)
    found = spec(model_cfg) if callable(spec) else None
    return (found[0], found[1]) if found else (model_cfg, "")


def run_checkpoint_name(run_id: str, path: Path, tmp: Path) -> str:
    """How messages name a run's checkpoint: ``<run id>: checkpoints/best.pth`` (not a temp path)."""
    try:
        return f"{run_id}: {path.relative_to(tmp).as_posix()}"
    except ValueError:  # found in the run's local work_dir: a path the user knows
        return str(path)


def pick_checkpoint(names: Sequence[str]) -> str | None:
    """``best.pth``, else ``latest.pth``, else the newest ``epoch_N.pth`` among ``names``."""
    for wanted in ("best.pth", "latest.pth"):
        for name in names:
            if name.rsplit("/", 1)[-1] == wanted:
                return name
    from antgo_mlflow.engine.checkpoint import epoch_number

    epochs = sorted((e, n) for n in names if (e := epoch_number(n)) is not None)
    return epochs[-1][1] if epochs else None


def checkpoint_of_run(run_id: str, dst: Path, flag: str = "--run-id") -> tuple[Path, Any]:
    """Download (or find locally) the checkpoint of ``run_id``; TrackingError if there is none.

    Returns:
        ``(local checkpoint path, the MLflow Run)``.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(
            f"{flag} {run_id}: no such run in the tracking store "
            f"({exc.message.splitlines()[0][:160]})"
        ) from None
    try:
        names = [f.path for f in client.list_artifacts(run_id, "checkpoints")]
    except (MlflowException, OSError):
        names = []
    chosen = pick_checkpoint(names)
    if chosen:
        with quiet_downloads():
            return Path(client.download_artifacts(run_id, chosen, str(dst))), run
    work_dir = run.data.tags.get("antgo.work_dir")
    if work_dir and Path(work_dir).is_dir():
        chosen = pick_checkpoint([p.name for p in Path(work_dir).glob("*.pth")])
        if chosen:
            return Path(work_dir) / chosen, run
    raise TrackingError(
        f"{flag} {run_id}: the run has no checkpoint (no checkpoints/*.pth artifact"
        f"{', nothing in ' + work_dir if work_dir else ''}); "
        "train with checkpoint_config.log_artifacts='best' or pass --checkpoint"
    )


def class_names_of(cfg: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> list[str]:
    """Class names a checkpoint or config records (``class_names``/``classes``), else the names
    in the manifests of its data's shards (when they exist here), else ``[]``."""
    for source in (meta or {}, cfg):
        for key in ("class_names", "classes"):
            names = source.get(key)
            if isinstance(names, (list, tuple)) and names:
                return [str(n) for n in names]
    data = cfg.get("data")
    for split in ("test", "val", "train"):
        section = data.get(split) if isinstance(data, Mapping) else None
        if not isinstance(section, Mapping):
            continue
        names = _manifest_names(section)
        if names:
            return names
    return []


def _manifest_names(section: Mapping[str, Any]) -> list[str]:
    from antgo_mlflow.data.datasets import resolve_source
    from antgo_mlflow.errors import AntgoError

    fmt = {"TFDataset": "tfrecord", "KVDataset": "kv"}.get(str(section.get("type")))
    entries = section.get("data_path_list") or section.get("data_folder") or []
    if fmt is None:
        return []
    for entry in [entries] if isinstance(entries, str) else list(entries):
        try:
            source = resolve_source(str(entry), fmt)
        except (AntgoError, OSError, ValueError):  # data that is not on this machine
            continue
        for manifest in source.manifests:
            if manifest.get("class_names"):
                return [str(n) for n in manifest["class_names"]]
    return []


# -- MLflow models ----------------------------------------------------------------------------
@contextlib.contextmanager
def _resolving(uri: str) -> Iterator[None]:
    """MLflow's failures to find ``uri`` as one TrackingError line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise TrackingError(
            f"model URI {uri!r} does not resolve: {exc.message.splitlines()[0]}"
        ) from None
    except OSError as exc:
        raise TrackingError(f"model URI {uri!r} does not resolve: {exc}") from None


def _model_info(uri: str):
    import mlflow

    with _resolving(uri):
        return mlflow.models.get_model_info(uri)


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """MLflow's download progress bars off while inside when ``ANTGO_PROGRESS=0``."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if env.progress_enabled() or name in os.environ:
        yield
        return
    os.environ[name] = "false"
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextlib.contextmanager
def _pickle_refused() -> Iterator[bool]:
    """MLflow refuses pickle payloads while inside, unless the user allowed them explicitly."""
    allowed = os.environ.get(PICKLE_ENV)
    if allowed is not None and allowed.strip().lower() in ("true", "1"):
        yield False
        return
    os.environ[PICKLE_ENV] = "false"
    try:
        yield True
    finally:
        if allowed is None:
            os.environ.pop(PICKLE_ENV, None)
        else:
            os.environ[PICKLE_ENV] = allowed


def _load_pytorch_flavor(uri: str, conf: Mapping[str, Any], flag: str):
    import mlflow
    from mlflow.exceptions import MlflowException

    hint = (
        f"set {PICKLE_ENV}=true if you trust it, or load its training run's checkpoint "
        "(runs:/<run id>)"
    )
    with _pickle_refused() as refused:
        if refused and conf.get("code"):
            raise UsageError(f"{flag}: {uri} ships Python code (code_paths) that could run; {hint}")
        try:
            with quiet_downloads():
                return mlflow.pytorch.load_model(uri, map_location="cpu")
        except MlflowException as exc:
            first = exc.message.splitlines()[0]
            if refused and "pickle" in first.lower():
                raise UsageError(
                    f"{flag}: {uri} is a pickle-format PyTorch model (loading it runs code); {hint}"
                ) from None
            raise TrackingError(f"model URI {uri!r} does not load: {first[:300]}") from None


def _run_params(run_id: str | None) -> dict[str, str]:
    if not run_id:
        return {}
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return dict(MlflowClient().get_run(run_id).data.params)
    except (MlflowException, OSError):  # the model's run lives in another store
        return {}


# -- the one entry point ------------------------------------------------------------------------
@dataclass
class _Loaded:
    info: ModelInfo
    runtime: Any
    preprocess: Preprocess
    class_names: list[str]
    task: str | None = None


def _is_local(uri: str) -> bool:
    return "://" not in uri and ":/" not in uri


def _split_runs_uri(uri: str) -> tuple[str, str] | None:
    """``runs:/<id>[/<path>]`` -> (id, path) for a run or an artifact *file*; None for a model."""
    if not uri.startswith("runs:/"):
        return None
    run_id, _, path = uri[len("runs:/") :].strip("/").partition("/")
    if not run_id:
        raise UsageError(f"{uri}: expected runs:/<run id>[/<artifact path>]")
    if not path or path.endswith(_CHECKPOINT_SUFFIXES) or path.endswith(".onnx"):
        return run_id, path
    return None


def _from_checkpoint_file(uri, path, config, trust, device, flag, run_id=None, name=None):
    from antgo_mlflow.inference.runtime import TorchRuntime

    built = build_from_checkpoint(path, config, trust, flag, name or uri)
    meta = built.meta
    info = ModelInfo(
        uri, "checkpoint", run_id or meta.get("mlflow_run_id"), str(built.path), dict(meta)
    )
    return _Loaded(
        info,
        TorchRuntime(built.model, device),
        Preprocess.from_dict(preprocess_of(built.cfg)),
        class_names_of(built.cfg, meta),
        built.cfg.get("task") if isinstance(built.cfg.get("task"), str) else None,
    )


def _from_onnx_file(uri, path, device, metadata=None, kind="onnx-file", run_id=None) -> _Loaded:
    from antgo_mlflow.inference.runtime import OnnxRuntime

    runtime = OnnxRuntime(path, device)
    metadata = {**runtime.metadata, **(metadata or {})}  # the MLflow model's metadata wins
    pre = dict(metadata.get("antgo.preprocess") or {})
    if not pre and run_id:
        pre = preprocess_from_params(_run_params(run_id))
    if runtime.input_size:  # a graph with a fixed input size says best what it takes
        pre["size"] = list(runtime.input_size)
    names = metadata.get("antgo.class_names") or []
    return _Loaded(
        ModelInfo(uri, kind, run_id, None, metadata),
        runtime,
        Preprocess.from_dict(pre),
        [str(n) for n in names] if isinstance(names, list) else [],
        metadata.get("antgo.task"),
    )


def _resolve(uri, config, trust, device, from_checkpoint, flag, tmp: Path) -> _Loaded:
    if _is_local(uri):
        path = Path(uri).expanduser()
        if not path.is_file():
            raise UsageError(f"{flag}: {uri} is neither a model URI (runs:/, models:/) nor a file")
        if path.suffix == ".onnx":
            return _from_onnx_file(uri, path, device)
        if path.suffix in _CHECKPOINT_SUFFIXES:
            return _from_checkpoint_file(uri, path, config, trust, device, flag)
        raise UsageError(f"{flag}: {uri}: expected a .onnx or .pth file")
    run_file = _split_runs_uri(uri)
    if run_file is not None:
        run_id, artifact = run_file
        if not artifact:
            path, _ = checkpoint_of_run(run_id, tmp, flag=flag)
            name = f"{uri} ({run_checkpoint_name(run_id, path, tmp)})"
            return _from_checkpoint_file(uri, path, config, trust, device, flag, run_id, name)
        local = Path(_download(uri, tmp))
        if artifact.endswith(".onnx"):
            return _from_onnx_file(uri, local, device, run_id=run_id)
        return _from_checkpoint_file(uri, local, config, trust, device, flag, run_id)

    info = _model_info(uri)
    flavors = info.flavors or {}
    metadata = dict(info.metadata or {})
    run_id = metadata.get("antgo.source_run") or info.run_id
    if from_checkpoint:
        if not run_id:
            raise UsageError(f"{flag}: {uri} names no training run to take a checkpoint from")
        path, _ = checkpoint_of_run(run_id, tmp, flag=flag)
        name = f"{uri} (run {run_checkpoint_name(run_id, path, tmp)})"
        return _from_checkpoint_file(uri, path, config, trust, device, flag, run_id, name)
    if "onnx" in flavors:
        local = Path(_download(uri, tmp))
        files = [local] if local.is_file() else sorted(local.rglob("*.onnx"))
        if not files:
            raise TrackingError(f"model URI {uri!r}: the ONNX flavor has no .onnx file")
        return _from_onnx_file(uri, files[0], device, metadata, "mlflow-onnx", run_id)
    if "pytorch" in flavors:
        from antgo_mlflow.inference.runtime import TorchRuntime

        module = _load_pytorch_flavor(uri, flavors["pytorch"], flag)
        pre = dict(metadata.get("antgo.preprocess") or {}) or preprocess_from_params(
            _run_params(run_id)
        )
        names = metadata.get("antgo.class_names") or []
        return _Loaded(
            ModelInfo(uri, "mlflow-pytorch", run_id, None, metadata),
            TorchRuntime(module, device),
            Preprocess.from_dict(pre),
            [str(n) for n in names] if isinstance(names, list) else [],
            metadata.get("antgo.task"),
        )
    raise UsageError(
        f"{flag}: {uri} is a {'/'.join(sorted(flavors)) or 'unknown'} model; "
        "expected an ONNX or PyTorch model"
    )


def _download(uri: str, tmp: Path) -> str:
    import mlflow

    with _resolving(uri), quiet_downloads():
        return mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp))


def load_model(
    uri: str | os.PathLike,
    config: str | os.PathLike | None = None,
    trust_checkpoint_config: bool = False,
    task: str | None = None,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH,
    from_checkpoint: bool = False,
    flag: str = "--models",
) -> Predictor:
    """Load one model (any form in the module docstring) as the predictor of its task.

    Args:
        uri: a model URI or a local ``.onnx``/``.pth`` file.
        config: a config file that builds checkpoints (instead of their recorded config).
        trust_checkpoint_config: let an old checkpoint's config text run, and its config's
            ``custom_imports`` be imported (``--trust-checkpoint-config``).
        task: the predictor to use (``PREDICTORS``); default: the model's ``antgo.task``
            metadata, its config's ``task``, the module's ``task`` attribute, else
            ``"classification"``.
        device: ``"cpu"`` or ``"cuda[:N]"`` (torch models; ONNX Runtime uses CUDA if it has it).
        batch_size: images per inference batch.
        from_checkpoint: for an MLflow model URI, rebuild the module from its training run's
            checkpoint (what ``extract_features`` and a trainable teacher need).
        flag: the option named in error messages.

    Returns:
        a Predictor (``ClassificationPredictor`` for classification models).
    """
    uri = str(uri).strip()
    if not uri:
        raise UsageError(f"{flag}: an empty model URI")
    with tempfile.TemporaryDirectory(prefix="antgo-model-") as tmp:
        # Files fetched into tmp are read into memory (ORT session, torch module) before it goes.
        loaded = _resolve(
            uri, config, trust_checkpoint_config, device, from_checkpoint, flag, Path(tmp)
        )
    module = loaded.runtime.module
    name = task or loaded.task or getattr(module, "task", None)
    cls = predictor_class(name if isinstance(name, str) else None)
    return cls(
        loaded.info,
        loaded.runtime,
        loaded.preprocess,
        class_names=loaded.class_names,
        batch_size=batch_size,
    )


def load_models(uris: Sequence[str], **kwargs) -> list[Predictor]:
    """:func:`load_model` for each URI; DataError (one line) if they disagree on the class count."""
    predictors = [load_model(uri, **kwargs) for uri in uris]
    check_same_classes(predictors)
    return predictors


def load_torch_module(
    uri: str | os.PathLike, freeze: bool = True, flag: str = "--teacher", **kwargs
):
    """An in-process torch module (e.g. a distillation teacher): logits from ``forward(image)``
    on already-preprocessed (N, 3, H, W) tensors.

    Args:
        uri: as for :func:`load_model`.
        freeze: wrap it so that it stays in eval mode with no gradients, also when a
            surrounding model calls ``.train()``; False returns the module itself (eval mode).
        flag: the option named in error messages.
        **kwargs: the other arguments of :func:`load_model` (``config``,
            ``trust_checkpoint_config``, ``device``, ``from_checkpoint``: for an MLflow model URI,
            rebuild the full model from its training run's checkpoint instead of the pt2 graph).
    """
    module = load_model(uri, flag=flag, **kwargs).module
    if module is None:
        raise UsageError(
            f"{flag}: {uri} is an ONNX model, not a torch module; give a .pth, runs:/<run id> "
            "or a PyTorch model"
        )
    if not freeze:
        return module
    from antgo_mlflow.inference.runtime import frozen

    return frozen(module)


__all__ = [
    "CheckpointModel",
    "build_from_checkpoint",
    "check_same_classes",
    "checkpoint_config",
    "checkpoint_of_run",
    "class_names_of",
    "custom_import_names",
    "import_custom_modules",
    "load_model",
    "load_models",
    "load_torch_module",
    "pick_checkpoint",
    "quiet_downloads",
    "run_checkpoint_name",
]
