"""`antgo submitter ...`: register where jobs run (SSH hosts, a Docker engine, a submit script).

The work is in ``antgo_mlflow.submit.config``; files live in ``~/.config/antgo-mlflow/``.
"""

from __future__ import annotations

import json

import click

from antgo_mlflow.errors import UsageError


def _kind(ssh: bool, docker: bool, script: bool, default: str) -> str:
    chosen = [name for name, on in (("ssh", ssh), ("docker", docker), ("script", script)) if on]
    if len(chosen) > 1:
        raise UsageError(f"choose one of --ssh, --docker, --script (got --{' --'.join(chosen)})")
    return chosen[0] if chosen else default


def kind_options(fn):
    fn = click.option("--script", is_flag=True, help="The custom submit script.")(fn)
    fn = click.option("--docker", is_flag=True, help="The Docker submitter.")(fn)
    return click.option("--ssh", is_flag=True, help="SSH hosts.")(fn)


def _registered_line(kind: str, sub) -> str:
    where = f"{sub.address}" + (f", image {sub.image}" if kind == "docker" else "")
    return f"registered {kind} submitter {getattr(sub, 'ip', kind)} ({where})"


@click.group(invoke_without_command=True)
@click.option(
    "--config",
    default=None,
    help="Register a custom submit script from submit-config.yaml (antgo's form).",
)
@click.pass_context
def submitter(ctx: click.Context, config: str | None) -> None:
    """Register where training jobs run: SSH hosts, a Docker engine, or your own submit script.

    Without a subcommand: write submit-config.yaml (the custom-script template), or with
    --config register it. Files are kept in ~/.config/antgo-mlflow/ (0700; ANTGO_CONFIG_DIR
    moves it).

    \b
    Examples:
      antgo submitter template --ssh          # writes ssh-submit-config.yaml
      antgo submitter update --ssh --config=ssh-submit-config.yaml
      antgo submitter ls --ssh
      antgo submitter select --ip=192.168.1.10 --ssh
      antgo submitter                          # writes submit-config.yaml
      antgo submitter --config=submit-config.yaml
      antgo train --exp=mycls1 --project=mycls --cloud --ssh
    """
    from antgo_mlflow.submit import config as cfg

    if ctx.invoked_subcommand is not None:
        if config:
            raise UsageError(
                "--config goes after the subcommand: antgo submitter update --config=..."
            )
        return
    if config:
        sub = cfg.register("script", config=config)
        click.echo(_registered_line("script", sub))
        return
    path = cfg.write_template("script")
    click.echo(f"wrote {path}: set folder and script, then 'antgo submitter --config={path}'")


@submitter.command("template")
@kind_options
@click.option("--tgt", default=".", show_default=True, help="Folder to write the template into.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def template_cmd(ssh: bool, docker: bool, script: bool, tgt: str, force: bool) -> None:
    """Write a submitter template: ssh-submit-config.yaml, docker-submit-config.yaml or submit-config.yaml.

    \b
    Example:
      antgo submitter template --ssh
      antgo submitter template --docker
      antgo submitter template                # the custom-script template
    """
    from antgo_mlflow.submit import config as cfg

    kind = _kind(ssh, docker, script, default="script")
    path = cfg.write_template(kind, tgt, force=force)
    flag = "" if kind == "script" else f" --{kind}"
    click.echo(f"wrote {path}: edit it, then 'antgo submitter update{flag} --config={path}'")


@submitter.command("update")
@kind_options
@click.option("--config", default=None, help="The submitter YAML file to register.")
@click.option("--ip", default=None, help="SSH host (instead of --config).")
@click.option("--user", default=None, help="SSH login (with --ip).")
@click.option("--port", type=int, default=None, help="SSH port (with --ip; default 22).")
@click.option("--key-file", default=None, help="Private key file (with --ip).")
def update_cmd(ssh, docker, script, config, ip, user, port, key_file) -> None:
    """Check a submitter config and register it (SSH hosts by IP; the first becomes the selected one).

    \b
    Example:
      antgo submitter update --ssh --config=ssh-submit-config.yaml
      antgo submitter update --ssh --ip=192.168.1.10 --user=me --key-file=~/.ssh/id_ed25519
      antgo submitter update --docker --config=docker-submit-config.yaml
    """
    from antgo_mlflow.submit import config as cfg

    kind = _kind(ssh, docker, script, default="ssh")
    flags = {"ip": ip, "username": user, "port": port, "key_file": key_file}
    given = {k: v for k, v in flags.items() if v is not None}
    if config and given:
        raise UsageError("give --config or --ip/--user, not both")
    if given and kind != "ssh":
        raise UsageError("--ip/--user/--port/--key-file describe an SSH host (add --ssh)")
    if not config and not given:
        raise UsageError(
            f"update needs --config=<file> (write one with 'antgo submitter template --{kind}')"
        )
    sub = cfg.register(kind, config=config) if config else cfg.register("ssh", data=given)
    click.echo(_registered_line(kind, sub))


@submitter.command("ls")
@kind_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(ssh: bool, docker: bool, script: bool, as_json: bool) -> None:
    """List registered submitters (SSH: one host per line, * = selected).

    \b
    Example:
      antgo submitter ls --ssh
      antgo submitter ls --json
    """
    from antgo_mlflow.submit import config as cfg

    chosen = [k for k, on in (("ssh", ssh), ("docker", docker), ("script", script)) if on]
    if len(chosen) > 1:
        raise UsageError("choose at most one of --ssh, --docker, --script")
    rows = cfg.listing(chosen[0] if chosen else None)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        what = f"{chosen[0]} submitter" if chosen else "submitter"
        click.echo(f"no {what} registered (see 'antgo submitter --help')")
    for row in rows:
        mark = "*" if row["selected"] and row["kind"] == "ssh" else " "
        extra = f"  image {row['image']}" if row.get("image") else ""
        name = row["name"] if row["kind"] == "ssh" else row["kind"]
        click.echo(f"{mark} {name}  {row['address']}{extra}")


@submitter.command("select")
@click.option("--ip", required=True, help="A registered SSH host.")
@click.option("--ssh", is_flag=True, help="SSH (the only kind with several entries).")
def select_cmd(ip: str, ssh: bool) -> None:
    """Make a registered SSH host the default one jobs go to.

    \b
    Example:
      antgo submitter select --ip=192.168.1.10 --ssh
    """
    from antgo_mlflow.submit import config as cfg

    cfg.select(ip)
    click.echo(f"selected SSH submitter {ip}")
