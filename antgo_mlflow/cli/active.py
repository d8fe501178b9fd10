"""`antgo active rank|issues`: pick the next samples to label; find label errors (cleanlab)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from antgo_mlflow.cli.options import POSITIVE_INT, FiniteFloat


def _csv(values) -> list[str]:
    return [p.strip() for v in values or () for p in str(v).split(",") if p.strip()]


def _default_tgt(kind: str) -> str:
    return str(Path("output") / f"active-{kind}" / time.strftime("%Y%m%d-%H%M%S"))


def _run(fn, *args, **kwargs):
    from antgo_mlflow.project.projects import mlflow_errors

    with mlflow_errors():
        return fn(*args, **kwargs)


models_opt = click.option(
    "--models",
    multiple=True,
    help="Model URIs or files, comma-separated or repeated (runs:/…, models:/name@alias, "
    ".onnx, .pth) [default: the project's setting, else its champion + experts].",
)
project_opt = click.option(
    "--project", default=None, help="Project: default models/settings, and its experiment."
)
trust_opt = click.option(
    "--trust-checkpoint-config",
    is_flag=True,
    help="Let an old checkpoint's recorded config text run (it is code).",
)


@click.group()
def active() -> None:
    """Active learning: rank unlabelled samples to label next, find label errors.

    \b
    Example:
      antgo active rank --src=pool/annotation.json --models=runs:/$RUN_ID --budget=100 --tgt=round1
    """


@active.command("rank")
@click.option(
    "--src", required=True, help="Unlabelled pool: GT JSON (or folder), shards or manifest."
)
@models_opt
@click.option("--budget", type=int, default=None, help="How many samples to select.")
@click.option(
    "--strategy",
    default=None,
    help="hybrid (default), margin, least_confidence, entropy, activelab, kcenter, "
    "disagreement (2+ models), random.",
)
@click.option("--tgt", default=None, help="Output folder [default: output/active-rank/<time>].")
@click.option("--labeled", default=None, help="Labelled GT: ActiveLab's term, k-center's centers.")
@project_opt
@click.option(
    "--pool-factor",
    type=FiniteFloat(min=1),
    default=None,
    help="hybrid: uncertain candidates = F × budget.",
)
@click.option("--seed", type=int, default=None, help="Seed of random and tie-breaking [default 0].")
@click.option(
    "--batch-size", type=POSITIVE_INT, default=None, help="Images per inference batch [64]."
)
@click.option("--config", default=None, help="Config that builds .pth checkpoints without one.")
@trust_opt
def rank_cmd(
    src,
    models,
    budget,
    strategy,
    tgt,
    labeled,
    project,
    pool_factor,
    seed,
    batch_size,
    config,
    trust_checkpoint_config,
):
    """Rank an unlabelled pool and select the BUDGET samples to label next.

    Writes selected.json and rest.json (standard GT with `predictions`, `al_score` — higher means
    label sooner — and `al_rank`), scores.csv and meta.json into --tgt, together, and logs an
    MLflow run (params, counts, score histogram, the files). A budget larger than the pool is an
    error.

    \b
    Example:
      antgo active rank --src=pool/annotation.json --models=runs:/$RUN_ID --budget=100 --tgt=round1
      antgo active rank --src=pool/ --project=digits --budget=100 --strategy=margin --tgt=round2
      antgo tool browser/images --src=round1/selected.json     # sort by al_score in the App
    """
    from antgo_mlflow.active.rank import rank

    result = _run(
        rank,
        src,
        tgt or _default_tgt("rank"),
        models=_csv(models),
        budget=budget,
        strategy=strategy,
        labeled=labeled,
        project=project,
        pool_factor=pool_factor,
        seed=seed,
        batch_size=batch_size,
        config=config,
        trust_checkpoint_config=trust_checkpoint_config,
    )
    strategy_name = result.options.strategy["type"]
    click.echo(
        f"{strategy_name}: selected {result.budget} of {result.pool_size} samples; "
        f"wrote {result.files['selected.json']}, rest.json, scores.csv"
        + (f"; MLflow run {result.run_id}" if result.run_id else "")
    )


@active.command("issues")
@click.option("--src", required=True, help="Labelled GT JSON (or folder) or shards.")
@models_opt
@click.option(
    "--cv-folds",
    type=int,
    default=None,
    help="Train K fold models through the engine (needs --config) and use their held-out "
    "probabilities instead of --models.",
)
@click.option("--config", default=None, help="Training config for --cv-folds.")
@click.option(
    "--epochs", type=POSITIVE_INT, default=None, help="--cv-folds: epochs per fold model."
)
@click.option(
    "--cfg-options", multiple=True, help="--cv-folds: a config override key=value (repeatable)."
)
@click.option("--tgt", default=None, help="Output folder [default: output/active-issues/<time>].")
@project_opt
@click.option("--seed", type=int, default=0, show_default=True, help="Fold and training seed.")
@click.option(
    "--batch-size", type=POSITIVE_INT, default=64, show_default=True, help="Inference batch."
)
@trust_opt
def issues_cmd(
    src,
    models,
    cv_folds,
    config,
    epochs,
    cfg_options,
    tgt,
    project,
    seed,
    batch_size,
    trust_checkpoint_config,
):
    """Find likely label errors in a labelled set (cleanlab find_label_issues).

    The probabilities must be out of sample: models that trained on --src learnt its labels,
    wrong ones included, and flatter them. Give models that never saw --src, or --cv-folds=K
    with a training --config (K models trained through the engine, each scoring its held-out
    fold). Writes issues.json (suspects, worst first, with suggested_label and label_quality),
    label_quality.csv and meta.json; logs an MLflow run.

    \b
    Example:
      antgo active issues --src=train/annotation.json --cv-folds=3 --config=recipes/digits/config.py --tgt=qa
      antgo active issues --src=new_labels.json --models=models:/digits@champion --tgt=qa2
    """
    from antgo_mlflow.active.label_issues import find_issues

    result = _run(
        find_issues,
        src,
        tgt or _default_tgt("issues"),
        models=_csv(models),
        cv_folds=cv_folds,
        config=config,
        project=project,
        seed=seed,
        epochs=epochs,
        cfg_options=list(cfg_options),
        batch_size=batch_size,
        trust_checkpoint_config=trust_checkpoint_config,
        log=True,
    )
    click.echo(
        f"{result.num_issues} suspected label errors of {len(result.quality)} samples "
        f"({result.source}); wrote {result.files['issues.json']}"
        + (f"; MLflow run {result.run_id}" if result.run_id else "")
    )
