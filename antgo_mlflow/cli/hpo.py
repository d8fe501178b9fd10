"""`antgo hpo`: hyper-parameter search on a training config (parse and print; the work is in
``antgo_mlflow.hpo.study``)."""

from __future__ import annotations

import json

import click


@click.command("hpo")
@click.option("--config", default=None, help="Training config .py with an hpo = dict(...) section.")
@click.option("--trials", default=8, show_default=True, type=int, help="Trials to run.")
@click.option(
    "--workers", default=1, show_default=True, type=int, help="Worker processes on one study."
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage: sqlite:///f.db, postgresql://user@host/db or a journal file path "
    "(default: next to the MLflow store; SQLite for 1 worker, a journal file for more).",
)
@click.option("--study", default=None, help="Study name (an existing one continues).")
@click.option("--timeout", default=None, type=float, help="Start no trial after this many seconds.")
@click.option("--sampler", default=None, help="tpe | random | cmaes | grid (default tpe).")
@click.option("--pruner", default=None, help="median | hyperband | none (default median).")
@click.option(
    "--seed",
    default=None,
    type=int,
    help="Sampler seed (each worker and continuation draws its own sequence).",
)
@click.option(
    "--cfg-options", multiple=True, help="Override the base config: key=value (repeatable)."
)
@click.option("--experiment", default=None, help="MLflow experiment (default: the config's).")
@click.option("--work-dir", default=None, help="Trial folders (default output/hpo/<study>).")
@click.option(
    "--heartbeat",
    default=10,
    show_default=True,
    type=int,
    help="Seconds between trial heartbeats; a trial silent for 3x this is retried.",
)
@click.option("--gpu-id", default=None, help="GPU of the trials (-1: CPU).")
@click.option("--show", is_flag=True, help="Print the trials of --study (or list the studies).")
@click.option("--json", "as_json", is_flag=True, help="With --show, or after a run: print JSON.")
def hpo(
    config,
    trials,
    workers,
    storage,
    study,
    timeout,
    sampler,
    pruner,
    seed,
    cfg_options,
    experiment,
    work_dir,
    heartbeat,
    gpu_id,
    show,
    as_json,
) -> None:
    """Search hyper-parameters with Optuna; the study is an MLflow run, each trial a child run.

    The search space and the objective live in the config:

    \b
      hpo = dict(metric='val/top_1', direction='maximize', space={
          'optimizer.lr': dict(type='float', low=1e-4, high=0.3, log=True),
          'model.backbone.widen_factor': dict(type='int', low=1, high=4)})

    \b
    Examples:
      antgo hpo --config=recipes/digits/config.py --trials=8
      antgo hpo --config=recipes/digits/config.py --trials=16 --workers=2 --study=digits-lr
      antgo hpo --config=cfg.py --trials=64 --workers=4 --storage=postgresql://me@db/optuna
      antgo hpo --show --study=digits-lr --json
      optuna-dashboard sqlite:///optuna.db      # or the journal file / PostgreSQL URL
    """
    from antgo_mlflow.errors import UsageError
    from antgo_mlflow.project.projects import mlflow_errors

    if show:
        from antgo_mlflow.hpo.study import show_study
        from antgo_mlflow.hpo.table import format_table

        with mlflow_errors():
            result = show_study(study, storage)
        if as_json:
            click.echo(json.dumps(result, indent=2, default=str))
        elif "studies" in result:
            for s in result["studies"]:
                click.echo(
                    f"{s['study']}: {s['trials']} trials, {s['direction']}, best "
                    f"{s['best_value']} {s['best_params'] or ''}"
                )
        else:
            click.echo(
                f"study {result['study']} ({result['metric']}, {result['direction']}; "
                f"MLflow run {result['mlflow_run_id']}; storage {result['storage']})"
            )
            click.echo(format_table(result["trials"]))
            if result["best_trial"] is not None:
                click.echo(f"best trial: {result['best_trial']}")
        return
    if not config:
        raise UsageError("--config is required (a training config with an hpo section)")
    from antgo_mlflow.hpo.study import HpoOptions, run_study

    options = HpoOptions(
        config=config,
        trials=trials,
        workers=workers,
        storage=storage,
        study=study,
        timeout=timeout,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        cfg_options=list(cfg_options),
        experiment=experiment,
        work_dir=work_dir,
        heartbeat=heartbeat,
        gpu_id=gpu_id,
    )
    with mlflow_errors():
        summary = run_study(options)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    best = summary["best"]
    if best:
        click.echo(
            f"best trial {best['number']}: {best['value']:.6g} {best['params']} "
            f"run {best['mlflow_run_id']}"
        )
