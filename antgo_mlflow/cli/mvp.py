"""`antgo create mvp`: scaffold a runnable experiment (antgo's cifar10 layout + an MLproject)."""

from __future__ import annotations

import click


@click.command("mvp")
@click.option("--name", default="cifar10", show_default=True, help="Experiment (code folder) name.")
@click.option("--tgt", default=".", show_default=True, help="Folder to write into.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option(
    "--task",
    default="classification",
    show_default=True,
    help="classification (digits/CIFAR-10) or detection (an FCOS on the embedded shapes).",
)
def mvp_cmd(name: str, tgt: str, force: bool, task: str) -> None:
    """Scaffold a runnable experiment: <name>/main.py, configs, models, MLproject.

    \b
    Example:
      antgo create mvp --name=mycls
      python3 ./mycls/main.py --exp=mycls --gpu-id=-1 --process=train
      mlflow run . -e train --env-manager local
      antgo create mvp --name=mydet --task=detection
    """
    from antgo_mlflow.tools.scaffold import create_mvp

    folder = create_mvp(name=name, tgt=tgt, force=force, task=task)
    click.echo(f"created {folder} (and MLproject, README.md, launch.sh, ... in {folder.parent})")
    click.echo(f"train:  python3 {folder / 'main.py'} --exp={name} --gpu-id=-1 --process=train")
    click.echo("or:     mlflow run . -e train --env-manager local")
