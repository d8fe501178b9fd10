"""``antgo active rank``: rank an unlabelled pool with the models and pick the next ``budget`` to label.

Steps: resolve the options (flags over ``project/activelearning`` over defaults) → check every input
(budget, pool, images, labelled set) → run the models (probabilities; embeddings for diversity) →
the strategy (ACQUISITIONS) orders the pool → ``selected.json``, ``rest.json``, ``scores.csv``,
``meta.json`` written together → one MLflow run with the parameters, counts, the score histogram
and the files.

A budget larger than the pool is an error (the message gives the pool size to use instead), so a
typo never silently sends the whole pool to labelling.

Example:
    >>> result = rank("pool/annotation.json", "round3/", models=["runs:/0a1b.../model"],
    ...               budget=100, strategy="hybrid")
    >>> result.files["selected.json"], result.run_id
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antgo_mlflow.active import outputs
from antgo_mlflow.active.settings import ActiveOptions, resolve_options
from antgo_mlflow.active.strategies import Pool, Selection, terms
from antgo_mlflow.errors import UsageError

PROCESS = "active-rank"


@dataclass
class RankResult:
    """What :func:`rank` did."""

    files: dict[str, Path]
    run_id: str | None
    options: ActiveOptions
    selection: Selection
    pool_size: int
    budget: int


def build_strategy(options: ActiveOptions):
    """The ACQUISITIONS strategy of ``options``, checked against the number of models."""
    from antgo_mlflow.registry import ACQUISITIONS

    strategy = ACQUISITIONS.build(options.strategy, path="--strategy")
    if len(options.models) < strategy.min_models:
        raise UsageError(
            f"--strategy={options.strategy['type']} needs {strategy.min_models} or more models, "
            f"got {len(options.models)}"
        )
    return strategy


def check_budget(budget, pool_size: int | None = None) -> int:
    """A positive integer no larger than the pool (UsageError otherwise)."""
    if budget is None:
        raise UsageError("--budget: required (or set budget in project/activelearning)")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise UsageError(f"--budget must be a positive integer, got {budget!r}")
    if pool_size is not None and budget > pool_size:
        raise UsageError(
            f"--budget={budget} is larger than the pool ({pool_size} samples); "
            f"use --budget={pool_size} to select all of them"
        )
    return int(budget)


def standard_terms(pool: Pool) -> dict[str, np.ndarray]:
    """Columns every scores.csv carries: the uncertainty terms (and disagreement for ensembles)."""
    mean = pool.mean_probs
    out = {
        "least_confidence": terms.least_confidence(mean),
        "margin": terms.margin(mean),
        "entropy": terms.entropy(mean),
    }
    if pool.num_models > 1:
        out["disagreement_kl"] = terms.kl_to_mean(pool.probs)
    return out


def select(pool: Pool, budget: int, strategy, seed: int = 0) -> Selection:
    """Order ``pool`` with ``strategy`` (its terms plus the standard ones in ``terms``)."""
    selection = strategy.select(pool, budget, np.random.default_rng(seed))
    selection.terms = {**standard_terms(pool), **selection.terms}
    return selection


def rank(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    models: Sequence[str] | None = None,
    budget: int | None = None,
    strategy: str | None = None,
    labeled: str | os.PathLike | None = None,
    project: str | None = None,
    pool_factor: float | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    config: str | None = None,
    trust_checkpoint_config: bool = False,
    log: bool = True,
) -> RankResult:
    """Rank the pool ``src`` and write the files to ``tgt`` (see the module docstring).

    Args:
        src: unlabelled GT JSON (or folder), TFRecord shards or their manifest.
        tgt: output folder (must not hold a previous ``selected.json``).
        models: model URIs/files; default: the project's setting, else its champion + experts.
        budget: how many samples to select.
        strategy: a registered strategy name (default: the project's, else ``hybrid``).
        labeled: a labelled GT: ActiveLab's labelled term and k-center's starting centers.
        project: read defaults from this project and log the run into its experiment.
        pool_factor: hybrid's candidates = ``pool_factor × budget``.
        seed: seeds the random strategy and tie-breaking (default 0).
        batch_size: images per inference batch.
        config: config that builds ``.pth`` checkpoints without a recorded config.
        trust_checkpoint_config: let old checkpoints' config text run (see the loader).
        log: log an MLflow run.
    """
    from antgo_mlflow.active.inputs import check_classification, labels_of, read_set
    from antgo_mlflow.active.predict import load_predictors, predict

    options = resolve_options(project, models, strategy, budget, pool_factor, batch_size, seed)
    check_budget(options.budget)
    acquisition = build_strategy(options)
    target = Path(tgt).expanduser()
    if (target / outputs.SELECTED_FILE).exists():
        raise UsageError(
            f"--tgt: {target} already holds {outputs.SELECTED_FILE}; choose another folder"
        )
    data = read_set(src, "--src")
    n = check_budget(options.budget, len(data.samples))
    check_classification(data, "--src")
    lab = None
    if labeled:
        lab = read_set(labeled, "--labeled")
        check_classification(lab, "--labeled")
        labels_of(lab, "--labeled")

    need_features = acquisition.needs_embeddings
    predictors = load_predictors(
        options.models, need_features, options.batch_size, config, trust_checkpoint_config
    )
    pred = predict(predictors, data, need_features, desc="rank: pool")
    pool_kwargs = {}
    if lab is not None:
        lab_pred = predict(predictors, lab, need_features, desc="rank: labelled")
        pool_kwargs = dict(
            labeled_probs=lab_pred.probs,
            labeled_labels=labels_of(lab, "--labeled", pred.probs.shape[2]),
            labeled_embeddings=lab_pred.embeddings,
        )
    pool = Pool(pred.probs, embeddings=pred.embeddings, **pool_kwargs)
    selection = select(pool, n, acquisition, options.seed)

    ranked = outputs.RankedPool(
        samples=data.samples,
        probs=pool.mean_probs,
        scores=selection.scores,
        order=selection.order,
        budget=n,
        strategy=options.strategy["type"],
        terms=selection.terms,
        models=pred.uris,
        class_names=pred.class_names,
    )
    meta = _input_meta(data)
    files = outputs.write_outputs(ranked, target, data.base, data.image_bytes, meta)
    run_id = log_rank(ranked, files, options, src, labeled, len(data.samples)) if log else None
    return RankResult(files, run_id, options, selection, len(data.samples), n)


def _input_meta(data) -> dict | None:
    if data.base is None:
        return None
    from antgo_mlflow.gt import read_meta

    return read_meta(data.base)


def log_rank(ranked, files, options: ActiveOptions, src, labeled, pool_size: int) -> str:
    """Log parameters, counts, the score histogram and the files; return the run id."""
    import tempfile

    from antgo_mlflow.active.tracking import step_run

    scores = ranked.scores
    chosen = np.zeros(len(scores), dtype=bool)
    chosen[ranked.selected] = True

    def mean(mask):
        values = scores[mask & np.isfinite(scores)]
        return float(values.mean()) if len(values) else math.nan

    strategy = options.strategy
    params = {
        "active.strategy": strategy["type"],
        "active.strategy_options": {k: v for k, v in strategy.items() if k != "type"},
        "active.budget": ranked.budget,
        "active.models": ",".join(ranked.models),
        "active.src": str(src),
        "active.labeled": str(labeled or ""),
        "active.seed": options.seed,
        "active.tgt": str(Path(files[outputs.SELECTED_FILE]).parent.resolve()),
    }
    margins = ranked.terms.get("margin")
    metrics = {
        "active/pool_size": pool_size,
        "active/selected": int(chosen.sum()),
        "active/rest": int((~chosen).sum()),
        "active/score_mean_selected": mean(chosen),
        "active/score_mean_rest": mean(~chosen),
    }
    if margins is not None:
        metrics["active/margin_mean_selected"] = float(margins[chosen].mean())
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    name = f"active-rank-{strategy['type']}"
    with step_run(PROCESS, name, options.project) as run:
        run.log(params, metrics, {"antgo.active.strategy": strategy["type"]})
        for path in files.values():
            run.log_artifact(path, "active")
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / outputs.HISTOGRAM_FILE
            title = f"{strategy['type']}: {int(chosen.sum())} selected of {pool_size}"
            png.write_bytes(outputs.histogram_png(scores, ranked.selected, title))
            run.log_artifact(png, "active")
        return run.run_id
