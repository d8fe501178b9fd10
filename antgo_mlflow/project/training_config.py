"""The one helper that builds an experiment's training config: base config + the project's
``project/semi`` or ``project/distillation`` setting + its registered ``train/label`` and
``train/unlabel`` data. ``antgo train`` and the automation server both call
:func:`build_training_config`.

Settings (``antgo update project/semi --name=fixmatch|mpl`` or ``--config=semi_config.py``;
``antgo update project/distillation --name=kd`` or ``--config=distill_config.py``) are overlay
configs: ``model`` holds the algorithm's arguments (the exp's own model becomes its ``model``),
``strong_pipeline`` the unlabelled strong view (default RandAugment + cutout), and any other
top-level key (``train_cfg``, ``optimizer``, ``lr_config``, ``data``...) is laid over the base::

    # semi_config.py
    method = "fixmatch"                                  # or "mpl"
    model = dict(threshold=0.95, lambda_u=1.0, mu=7)
    train_cfg = dict(type="IterBasedTrainLoop", max_iters=2000, val_interval=200)

    # distill_config.py
    model = dict(alpha=0.9, T=4.0)                       # teacher: models:/<project>@champion

Registered data: ``train/label`` is added to the base's training data (shards to its
``data_path_list``, GT JSON as ``GTDataset``s; mixed kinds become a ``ConcatDataset``);
``train/unlabel`` becomes the ``unlabeled`` source, with weak/strong views for semi-supervised
methods (the base's train pipeline up to ``ToTensor`` is the weak view).

Example:
    >>> cfg = build_training_config("mycls1/configs/config.py", project="mycls", stage="semi")
    >>> cfg.model.type, list(cfg.data.train)       # ('FixMatch', ['labeled', 'unlabeled'])
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

from antgo_mlflow.errors import ConfigError, UsageError

STAGES = ("supervised", "semi", "distillation")
#: implemented method names -> MODELS type, per setting kind
METHODS: dict[str, dict[str, str]] = {
    "semi": {"fixmatch": "FixMatch", "mpl": "MetaPseudoLabels"},
    "distillation": {"kd": "Distiller"},
}
#: names antgo knows that nothing implements here (yet): refused with these reasons
NOT_IMPLEMENTED: dict[str, dict[str, str]] = {
    "semi": {
        "dense": "detection dense-teacher comes later (with the detection semi-supervised work): "
        "dense-teacher is not implemented yet",
        "detmpl": "detection MPL comes later (with the detection semi-supervised work): "
        "Meta Pseudo Labels is not implemented yet for detection",
    },
    "distillation": {"reviewkd": "ReviewKD is not implemented; use --name=kd (Hinton KD)"},
}
DEFAULT_STRONG = [
    {"type": "RandAugment", "num_ops": 2, "magnitude": 10, "keys": ["image"]},
    {"type": "RandomErasingImage", "prob": 1.0, "sl": 0.02, "sh": 0.25, "r1": 1.0, "fill": 127},
]
DISTILL_UNLABELED_RATIO = 4  # unlabelled images per labelled one in a distillation batch
_OVERLAY_SKIP = ("method", "type", "model", "strong_pipeline")


# -- settings ---------------------------------------------------------------------------------
def method_type(kind: str, name: str, where: str) -> str:
    """The MODELS type of method ``name`` of setting ``kind``; UsageError for unknown ones."""
    methods = METHODS[kind]
    if name in methods:
        return methods[name]
    by_type = {t: n for n, t in methods.items()}
    if name in by_type:
        return name
    reason = NOT_IMPLEMENTED[kind].get(name)
    if reason:
        raise UsageError(f"{where}: method {name!r} is not available: {reason}")
    raise UsageError(
        f"{where}: unknown project/{kind} method {name!r} (choose {', '.join(methods)})"
    )


def validate_setting(kind: str, name: str | None, data: Mapping[str, Any], where: str) -> dict:
    """Check a ``project/semi`` / ``project/distillation`` setting before it is stored.

    Returns the config data with ``method`` set (``fixmatch``, ``mpl``, ``kd``).
    """
    from antgo_mlflow.registry import MODELS, check_kwargs

    data = dict(data)
    model = data.get("model") or {}
    if not isinstance(model, Mapping):
        raise ConfigError(f"{where}: model must be a dict of the method's arguments")
    name = name or data.get("method") or model.get("type") or next(iter(METHODS[kind]))
    model_type = method_type(kind, str(name), where)
    method = {t: n for n, t in METHODS[kind].items()}[model_type]
    args = {k: v for k, v in model.items() if k != "type"}
    if "model" in args:
        raise ConfigError(f"{where}: model.model: the exp's own model is wrapped; remove it")
    cls = MODELS.get(model_type)
    check_kwargs(cls, {**args, "model": {}}, f"{where}: model", model_type)
    _check_ranges(model_type, args, f"{where}: model")
    strong = data.get("strong_pipeline")
    if strong is not None and not (
        isinstance(strong, list) and all(isinstance(s, Mapping) and "type" in s for s in strong)
    ):
        raise ConfigError(f"{where}: strong_pipeline must be a list of transform dicts")
    data["method"] = method
    return data


def _check_ranges(model_type: str, args: Mapping[str, Any], where: str) -> None:
    from antgo_mlflow.models.semi.common import (
        check_fraction,
        check_non_negative,
        check_positive,
        check_threshold,
    )

    checks = {
        "threshold": check_threshold if model_type != "Distiller" else check_fraction,
        "mu": check_positive,
        "T": check_positive,
        "lambda_u": check_non_negative,
        "alpha": check_fraction,
        "feature_weight": check_non_negative,
    }
    for key, check in checks.items():
        if key in args:
            check(args[key], f"{where}.{key}")
    if args.get("ema_decay") is not None:
        check_fraction(args["ema_decay"], f"{where}.ema_decay")


# -- the helper -------------------------------------------------------------------------------
def _settings(project: str | None, client) -> dict[str, dict | None]:
    if not project:
        return {"semi": None, "distillation": None}
    from antgo_mlflow.project.settings import get_setting

    return {k: get_setting(project, k, client) for k in ("semi", "distillation")}


def resolve_stage(stage: str | None, settings: Mapping[str, Any]) -> str:
    """``supervised`` / ``semi`` / ``distillation`` for ``stage`` (``None``/``auto``: the one
    setting the project has; neither: supervised; both: UsageError)."""
    if stage not in (None, "auto", *STAGES):
        raise UsageError(f"--stage={stage}: choose {', '.join(STAGES)}")
    if stage not in (None, "auto"):
        if stage != "supervised" and not settings.get(stage):
            raise UsageError(
                f"--stage={stage}: the project has no project/{stage} setting "
                f"(antgo update project/{stage} --name=... or --config=...)"
            )
        return stage
    present = [k for k in ("semi", "distillation") if settings.get(k)]
    if len(present) > 1:
        raise UsageError(
            "--stage: the project has both project/semi and project/distillation; "
            "choose --stage=semi or --stage=distillation"
        )
    return present[0] if present else "supervised"


def _registered(project: str | None, client) -> dict[str, list[dict]]:
    if not project:
        return {"train/label": [], "train/unlabel": []}
    from antgo_mlflow.project.data_registry import list_data

    return list_data(project, client)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(out.get(k), v) if isinstance(v, Mapping) else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def _split_pipeline(pipeline: Sequence, where: str) -> tuple[list, list]:
    """``(weak part, tensor part)``: the ops before the first ``ToTensor``, and the rest."""
    steps = list(pipeline or [])
    for i, step in enumerate(steps):
        if isinstance(step, Mapping) and step.get("type") == "ToTensor":
            return steps[:i], steps[i:]
    raise ConfigError(
        f"{where}.pipeline: no ToTensor step to put the strong augmentation before; give "
        "data.train.unlabeled with weak_pipeline/strong_pipeline in the semi config"
    )


def _source_cfg(records: list[dict], template: Mapping[str, Any], where: str) -> dict:
    """A dataset config for registered data ``records``, reading like ``template``."""
    keep = {k: v for k, v in template.items() if k in ("pipeline", "inputs_def")}
    shards = [r["address"] for r in records if r.get("kind") == "shards"]
    gts = [r["address"] for r in records if r.get("kind") != "shards"]
    parts = []
    if shards:
        kind = template.get("type") if template.get("type") in ("TFDataset", "KVDataset") else None
        description = template.get("description") or {"image": "numpy", "label": "int"}
        parts.append(
            {"type": kind or "TFDataset", "data_path_list": shards, "description": description}
            | copy.deepcopy(keep)
        )
    if gts:
        parts.append({"type": "GTDataset", "ann_file": gts} | copy.deepcopy(keep))
    if not parts:
        raise ConfigError(f"{where}: no registered data")
    return parts[0] if len(parts) == 1 else {"type": "ConcatDataset", "datasets": parts}


def _with_registered(source: Mapping | None, records: list[dict], template, where) -> dict | None:
    """``source`` plus the registered ``records`` (shards appended to its data_path_list when
    both are shard datasets of one type, else a ConcatDataset)."""
    if not records:
        return dict(source) if source else None
    added = _source_cfg(records, template, where)
    if not source:
        return added
    source = copy.deepcopy(dict(source))
    if (
        added.get("type") == source.get("type")
        and added.get("type") in ("TFDataset", "KVDataset")
        and "data_path_list" in source
    ):
        paths = source["data_path_list"]
        paths = [paths] if isinstance(paths, str) else list(paths)
        source["data_path_list"] = paths + added["data_path_list"]
        return source
    return {"type": "ConcatDataset", "datasets": [source, added]}


def _views(source: dict, template: Mapping[str, Any], strong: list, where: str) -> dict:
    """``source`` with FixMatch-style weak/strong views (unless it already has them)."""
    if source.get("type") == "ConcatDataset":
        source["datasets"] = [_views(d, template, strong, where) for d in source["datasets"]]
        return source
    if source.get("weak_pipeline") or source.get("strong_pipeline"):
        return source
    weak, tensor = _split_pipeline(source.get("pipeline") or template.get("pipeline"), where)
    source.update(weak_pipeline=weak, strong_pipeline=copy.deepcopy(strong), pipeline=tensor)
    return source


def build_training_config(
    base,
    project: str | None = None,
    stage: str | None = "auto",
    settings: Mapping[str, Any] | None = None,
    registrations: Mapping[str, list[dict]] | None = None,
    client=None,
):
    """The training config of an experiment (see the module docstring).

    Args:
        base: the exp's config (a ``Config`` or a path to its ``.py`` file).
        project: the project whose settings and registered data apply (None: none).
        stage: ``supervised``, ``semi``, ``distillation``, or ``auto`` (the project's one
            setting; supervised when it has none).
        settings: ``{"semi": setting, "distillation": setting}`` instead of the project's.
        registrations: ``{"train/label": [...], "train/unlabel": [...]}`` instead of the
            project's (records as ``antgo show data`` lists them).
        client: an MlflowClient (default: a new one).

    Returns:
        a new ``Config``; the base is not modified. ConfigError / UsageError (one line) when
        the combination cannot train (no unlabelled data for a semi stage, ...).
    """
    from antgo_mlflow.config import Config

    cfg = Config.fromfile(base) if isinstance(base, (str, os.PathLike)) else base.copy()
    settings = dict(settings) if settings is not None else _settings(project, client)
    stage = resolve_stage(stage, settings)
    regs = registrations if registrations is not None else _registered(project, client)
    data = dict(cfg.get("data") or {})
    train = data.get("train")
    if not isinstance(train, Mapping):
        raise ConfigError(f"data.train: missing from {cfg.filename or 'the base config'}")
    named = "type" not in train and all(isinstance(v, Mapping) for v in train.values())
    labeled = dict(train.get("labeled") or {}) if named else dict(train)
    unlabeled = dict(train.get("unlabeled") or {}) if named else None
    template = labeled if labeled.get("type") != "ConcatDataset" else labeled["datasets"][0]
    labeled = _with_registered(labeled, regs.get("train/label") or [], template, "train/label")
    if stage == "supervised":
        if not named:
            data["train"] = labeled
            cfg.data = data
        else:
            data["train"] = dict(train, labeled=labeled)
            cfg.data = data
        return cfg

    setting = settings[stage] or {}
    overlay = dict(setting.get("config") or {})
    method = setting.get("method") or overlay.get("method")
    where = f"project/{stage} ({setting.get('source') or method})"
    model_type = method_type(stage, str(method), where)
    unlabeled = _with_registered(
        unlabeled, regs.get("train/unlabel") or [], template, "train/unlabel"
    )
    if not unlabeled:
        if stage == "semi":
            raise ConfigError(
                f"data.train.unlabeled: {where} needs unlabelled data: register it with "
                f"'antgo add train/unlabel --project={project or '<project>'} --address=...' "
                "or give data.train.unlabeled in the base config"
            )
    args = {k: v for k, v in (overlay.get("model") or {}).items() if k != "type"}
    base_model = cfg.get("model")
    if isinstance(base_model, Mapping) and base_model.get("type") == model_type:
        model = _merge(base_model, args)  # the base already wraps its model in this method
    else:
        model = {"type": model_type, "model": copy.deepcopy(base_model), **args}
    if model_type == "Distiller" and not model.get("teacher") and project:
        model["teacher"] = f"models:/{project}@champion"
    cfg.model = model

    batch = _labeled_batch(data)
    sources = {"labeled": labeled}
    if unlabeled:
        if stage == "semi":
            strong = overlay.get("strong_pipeline") or DEFAULT_STRONG
            unlabeled = _views(unlabeled, template, strong, "data.train.unlabeled")
            mu = model.get("mu", 7)
            ratio = float(mu)
        else:
            ratio = DISTILL_UNLABELED_RATIO
        sources["unlabeled"] = unlabeled
        data.setdefault("unlabeled_dataloader", {})
        data["unlabeled_dataloader"] = dict(
            data["unlabeled_dataloader"], samples_per_gpu=max(1, round(ratio * batch))
        )
    data["labeled_dataloader"] = dict(data.get("labeled_dataloader") or {}, samples_per_gpu=batch)
    data["train"] = sources
    cfg.data = data
    if model_type == "MetaPseudoLabels" and "optimizer" not in overlay:
        opt = cfg.get("optimizer")
        if isinstance(opt, Mapping) and "type" in opt:
            cfg.optimizer = {"teacher": copy.deepcopy(dict(opt)), "student": dict(opt)}
    for key, value in overlay.items():
        if key in _OVERLAY_SKIP:
            continue
        setattr(cfg, key, _merge(cfg.get(key), value) if isinstance(value, Mapping) else value)
    return cfg


def _labeled_batch(data: Mapping[str, Any]) -> int:
    for key in ("labeled_dataloader", "train_dataloader"):
        opts = data.get(key) or {}
        if isinstance(opts, Mapping) and isinstance(opts.get("samples_per_gpu"), int):
            return int(opts["samples_per_gpu"])
    return 32
