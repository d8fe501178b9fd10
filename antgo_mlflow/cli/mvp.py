"""`antgo create mvp`: scaffold a runnable experiment (antgo's cifar10 layout + an MLproject)."""

from __future__ import annotations

from pathlib import Path

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

    In a folder that already has an mvp, the new experiment is added beside the others
    (shared MLproject, README.md, install.sh, launch.sh, system.py, requirements.txt).

    \b
    Example:
      antgo create mvp --name=mycls
      python3 ./mycls/main.py --exp=mycls --gpu-id=-1 --process=train
      mlflow run . -e train --env-manager local
      antgo create mvp --name=mydet --task=detection
      antgo create mvp --name=mycls2
      mlflow run . -e train --env-manager local -P exp=mycls2
    """
    from antgo_mlflow.tools.scaffold import create_mvp, experiments_in

    folder = create_mvp(name=name, tgt=tgt, force=force, task=task)
    others = [e for e in experiments_in(folder.parent) if e != name]
    beside = f"beside {', '.join(others)} " if others else ""
    click.echo(
        f"created {folder} {beside}(MLproject, README.md, launch.sh, ... in {folder.parent})"
    )
    click.echo(f"train:  python3 {folder / 'main.py'} --exp={name} --gpu-id=-1 --process=train")
    where = "" if Path(tgt).resolve() == Path.cwd() else f"{tgt} "
    exp = f" -P exp={name}" if others else ""
    click.echo(f"or:     mlflow run {where or '. '}-e train --env-manager local{exp}")
