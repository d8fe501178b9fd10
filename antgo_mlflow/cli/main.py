"""`antgo`: the root command. Errors from the AntgoError family become one line and exit 2."""

from __future__ import annotations

import sys
import traceback

import click

from antgo_mlflow import __version__, env
from antgo_mlflow.cli.lazy import LazyGroup
from antgo_mlflow.errors import one_line as _one_line
from antgo_mlflow.errors import os_error_line

# name -> ("module:attribute", short help). Modules are imported only when the command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "tool": ("antgo_mlflow.cli.tool:tool", "Data tools: extract/*, package/*, browser/*, label/*."),
    "create": ("antgo_mlflow.cli.create:create", "Scaffold an mvp, a project or an experiment."),
    "show": ("antgo_mlflow.cli.projects:show", "Show projects and experiments (MLflow)."),
    "add": ("antgo_mlflow.cli.projects:add", "Add a model role or a data registration."),
    "del": ("antgo_mlflow.cli.projects:delete", "Remove a model role or a data registration."),
    "update": ("antgo_mlflow.cli.projects:update", "Store project settings (label, semi, ...)."),
    "promote": ("antgo_mlflow.cli.projects:promote", "Give a model version a role (alias)."),
    "demote": ("antgo_mlflow.cli.projects:demote", "Take a role (alias) from a model version."),
    "train": ("antgo_mlflow.cli.projects:train", "Run an experiment's train entry point."),
    "active": (
        "antgo_mlflow.cli.active:active",
        "Active learning: rank a pool, find label errors.",
    ),
    "server": (
        "antgo_mlflow.cli.server:server",
        "Run the automation loop (predict, select, label, train, promote).",
    ),
    "hpo": ("antgo_mlflow.cli.hpo:hpo", "Hyper-parameter search (Optuna), trials as MLflow runs."),
    "submitter": (
        "antgo_mlflow.cli.submitter:submitter",
        "Register where jobs run: SSH hosts, Docker, a submit script.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="antgo-mlflow")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
def cli(debug: bool) -> None:
    """antgo on MLflow: data tools, training, export and model roles.

    \b
    Examples:
      antgo tool extract/images --src=./raw --tgt=./dataset --max-size=256
      antgo tool package/tfrecord --src=./dataset/annotation.json --tgt=./shards --prefix=train
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and turn known errors into one line + exit code.

    SIGTERM is handled like Ctrl-C (cleanup runs, nothing half-written stays). Operating-system
    errors (a full disk, a folder without write permission) and absurdly nested input are one
    line and exit 2 as well; ``--debug`` (or ``ANTGO_DEBUG=1``) adds the traceback.
    """
    from antgo_mlflow.errors import AntgoError
    from antgo_mlflow.interrupts import Terminated, sigterm_raises

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or env.debug()

    def fail(message: str, code: int = 2) -> None:
        if debug:
            traceback.print_exc()
        click.echo(f"antgo: error: {_one_line(message)}", err=True)
        sys.exit(code)

    try:
        with sigterm_raises():
            rv = cli.main(args=args, prog_name="antgo", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"antgo: error: {_one_line(exc.format_message())}{where}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"antgo: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 1)
    except (click.Abort, KeyboardInterrupt) as exc:
        # click turns an interruption into Abort; SIGTERM (Terminated) stays its cause
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
            click.echo("antgo: terminated", err=True)
            sys.exit(Terminated.exit_code)
        click.echo("antgo: interrupted", err=True)
        sys.exit(130)
    except AntgoError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:
        fail(os_error_line(exc))
    except RecursionError:
        fail("input nested too deeply to process")
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
