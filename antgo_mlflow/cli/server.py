"""`antgo server`: run the automation loop in the foreground (the work is in ``antgo_mlflow.server``)."""

from __future__ import annotations

import os
import time

import click

from antgo_mlflow.cli.options import (
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    FiniteFloat,
)


@click.command("server")
@click.option(
    "--project",
    "projects",
    multiple=True,
    help="Project to serve (repeatable; default: every project created with --auto).",
)
@click.option(
    "--root",
    default=None,
    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI), as antgo's --root.",
)
@click.option(
    "--workdir",
    default="./antgo-server",
    show_default=True,
    help="Folder for the iterations' files (<workdir>/<project>/iteration-<n>/).",
)
@click.option(
    "--interval",
    default=60.0,
    show_default=True,
    type=POSITIVE_FLOAT,
    help="Seconds between passes.",
)
@click.option("--once", is_flag=True, help="One pass, then exit (for cron and tests).")
@click.option(
    "--iterate",
    is_flag=True,
    help="Start an iteration now on the latest train/unlabel data, then exit.",
)
@click.option(
    "--budget",
    default=None,
    type=POSITIVE_INT,
    help="Labels per iteration (default: project/activelearning budget).",
)
@click.option(
    "--threshold",
    default=0.95,
    show_default=True,
    type=FiniteFloat(0, 1),  # 0: every pseudo-label trains (the end-to-end test uses it)
    help="Pseudo-label confidence a sample needs to train without a person.",
)
@click.option(
    "--margin",
    default=0.0,
    show_default=True,
    type=FiniteFloat(),
    help="Top-1 the candidate must gain over the product to be promoted.",
)
@click.option(
    "--retries",
    default=2,
    show_default=True,
    type=NON_NEGATIVE_INT,
    help="Retries of a failing step before the iteration is marked failed.",
)
@click.option(
    "--label-studio",
    default=None,
    help="Label Studio URL (token in $LABEL_STUDIO_API_KEY; default $ANTGO_LABEL_STUDIO_URL).",
)
@click.option(
    "--label-timeout",
    default=None,
    type=POSITIVE_FLOAT,
    help="Seconds to wait for labelling; then --label-policy applies.",
)
@click.option(
    "--label-policy",
    type=click.Choice(["partial", "fail"]),
    default="partial",
    show_default=True,
    help="After --label-timeout: train on what is labelled, or fail.",
)
@click.option(
    "--stage",
    type=click.Choice(["auto", "supervised", "semi", "distillation"]),
    default="auto",
    show_default=True,
    help="Training stage of the candidate.",
)
@click.option(
    "-P",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Entry-point parameter of the candidate's training (repeatable).",
)
def server(projects, root, workdir, interval, once, iterate, budget, threshold, margin, retries,
           label_studio, label_timeout, label_policy, stage, params) -> None:  # fmt: skip
    """Run the data-driven iteration loop: for each new train/unlabel registration the experts
    pseudo-label it, active learning picks what people label (Label Studio), the labels and
    confident pseudo-labels are registered, the product's exp trains (semi-supervised /
    distillation settings apply), and the candidate replaces the product only if it is better.
    State lives in MLflow: a restart (even after kill -9) continues where it stopped.
    SIGTERM / Ctrl-C stop cleanly.

    \b
    Example:
      antgo create project --name=digits --auto
      antgo add train/unlabel --project=digits --address=batch1/annotation.json --tags=batch1
      LABEL_STUDIO_API_KEY=... antgo server --project=digits --budget=60 \\
          --label-studio=http://127.0.0.1:8080 --once
    """
    from antgo_mlflow.errors import AntgoError, UsageError
    from antgo_mlflow.project.projects import get_client, mlflow_errors
    from antgo_mlflow.server import lock
    from antgo_mlflow.server.loop import LoopOptions, auto_projects, reap_dead_runs, serve_once

    if root:
        os.environ["MLFLOW_TRACKING_URI"] = root
    train_params = {}
    for p in params:
        if "=" not in p:
            raise UsageError(f"-P {p}: expected NAME=VALUE")
        k, v = p.split("=", 1)
        train_params[k] = v

    def echo(line: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {line}")

    opts = LoopOptions(
        root=workdir, threshold=threshold, budget=budget, margin=margin, retries=retries,
        label_studio=label_studio, label_timeout=label_timeout, label_policy=label_policy,
        stage=stage, train_params=train_params, echo=echo,
    )  # fmt: skip
    with mlflow_errors():
        client = get_client()
        names = list(projects) or auto_projects(client)
        if not names:
            raise UsageError("--project: none given and no project was created with --auto")
        from antgo_mlflow.project.projects import get_project

        for name in names:
            get_project(name, client)  # an unknown project: one line, before the lock
        try:
            with lock.server_lock(client, names):
                reaped = reap_dead_runs(client, names)
                if reaped:
                    echo(f"ended {len(reaped)} run(s) a stopped server left running")
                echo(f"serving {', '.join(names)}")
                while True:
                    results = serve_once(names, opts, iterate=iterate, client=client)
                    if once or iterate:
                        break
                    time.sleep(interval)
        except KeyboardInterrupt:
            echo("stopped")
            return
    errors = [r for r in results if r["state"] in ("error", "failed")]
    if errors:  # for cron: a pass that could not do its work exits 2 (reasons printed above)
        first = errors[0]
        raise AntgoError(f"{first['project']}: {first['note']}")
