"""`antgo show|add|del|update|promote|demote|train` and `antgo create project|exp`: parse and print.

The work is in ``antgo_mlflow.project``; every command talks to ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import json

import click

from antgo_mlflow.errors import UsageError
from antgo_mlflow.project.data_registry import SPLITS as DATA_SPLITS
from antgo_mlflow.project.roles import ROLES
from antgo_mlflow.project.settings import KINDS as SETTING_KINDS

ROLE_NAMES = tuple(ROLES)


def _run(fn, *args, **kwargs):
    from antgo_mlflow.project.projects import mlflow_errors

    with mlflow_errors():
        return fn(*args, **kwargs)


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _fmt_metrics(metrics: dict) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if v is not None
    )


project_opt = click.option("--project", required=True, help="Project name (an MLflow experiment).")
note_opt = click.option("--note", default=None, help="Why: recorded in the role history.")


# -- show --------------------------------------------------------------------------------------
@click.group()
def show() -> None:
    """Show projects and experiments.

    \b
    Example:
      antgo show project --project=mycls
      antgo show exp --project=mycls
    """


@show.command("project")
@click.option("--project", default=None, help="Show this project; without it list all projects.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_project(project: str | None, as_json: bool) -> None:
    """List projects, or show one: roles, exps, best runs, data, settings.

    \b
    Example:
      antgo show project
      antgo show project --project=mycls --json
    """
    from antgo_mlflow.project.summary import describe_project, projects_overview

    if not project:
        rows = _run(projects_overview)
        if as_json:
            _echo_json(rows)
            return
        if not rows:
            click.echo("no projects yet (create one with 'antgo create project --name=<p>')")
        for row in rows:
            extra = f"  git: {row['git']}" if row["git"] else ""
            click.echo(f"{row['project']}  (experiment {row['experiment_id']}){extra}")
        return
    info = _run(describe_project, project)
    info["loop"] = _run(_loop_state, info["experiment_id"])
    if as_json:
        _echo_json(info)
        return
    metric = info["metric"]
    head = f"project {info['project']} (experiment {info['experiment_id']})"
    head += (
        f"  metric: {metric['name']} ({metric['mode']})"
        if metric
        else "  metric: none (runs ranked by start time)"
    )
    click.echo(head)
    click.echo(f"  git: {info['git'] or '-'}  image: {info['image'] or '-'}  auto: {info['auto']}")
    click.echo("roles:")
    for role, holders in info["roles"].items():
        if not holders:
            click.echo(f"  {role:<9} -")
        for h in holders:
            star = "*" if h.get("champion") else ""
            click.echo(
                f"  {role:<9} v{h['version']}{star:<2} run {h['run_id']}  exp {h['exp'] or '-'}  "
                f"{_fmt_metrics(h['metric'])}  {h['uri']}".rstrip()
            )
    click.echo("exps:" + ("" if info["exps"] else " none"))
    for name in info["exps"]:
        best = info["best"].get(name)
        tail = f"best run {best['id']} {_fmt_metrics(best['metrics'])}" if best else "no runs yet"
        click.echo(f"  {name:<16} {tail}")
    click.echo("data:")
    for split, records in info["data"].items():
        for r in records:
            click.echo(
                f"  {split:<13} {r['tag']:<12} num={r['num']}  {r['kind']}  {r['address']}  sha256:{r['digest'][:12]}"
            )
        if not records:
            click.echo(f"  {split:<13} -")
    click.echo("settings:")
    for kind, setting in info["settings"].items():
        value = (
            f"{setting['method']}"
            + (f" ({setting['source']})" if setting and setting.get("source") else "")
            if setting
            else "-"
        )
        click.echo(f"  {kind:<15} {value}")
    loop = info["loop"]
    if not loop.get("iterations"):
        click.echo("loop: no iterations yet")
    else:
        click.echo(
            f"loop: iteration {loop['iteration']} {loop['state']}  step: {loop['current_step']}"
            f"  (pipeline run {loop['run_id']})"
        )
        if loop.get("note"):
            click.echo(f"  {loop['note']}")
        if loop.get("last_promotion"):
            click.echo(f"  last evaluation: {loop['last_promotion']}")


def _loop_state(experiment_id: str) -> dict:
    from antgo_mlflow.project.projects import get_client
    from antgo_mlflow.server.state import loop_state

    return loop_state(get_client(), experiment_id)


@show.command("exp")
@project_opt
@click.option("--exp", default=None, help="Only the runs of this exp.")
@click.option(
    "--metric",
    default=None,
    help="Sort by this metric (NAME or NAME:max|min) instead of the project's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_exp(project: str, exp: str | None, metric: str | None, as_json: bool) -> None:
    """Table of the project's runs (id, exp, status, start, duration, key params, key metrics).

    \b
    Example:
      antgo show exp --project=mycls
    """
    from antgo_mlflow.project.experiments import runs_table

    rows = _run(runs_table, project, exp=exp, metric=metric)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo(f"project {project} has no runs yet")
        return
    click.echo(
        f"{'id':<32}  {'exp':<12} {'status':<9} {'start':<19} {'dur(s)':>7}  params | metrics"
    )
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in r["params"].items())
        dur = "" if r["duration_s"] is None else f"{r['duration_s']:.1f}"
        click.echo(
            f"{r['id']:<32}  {r['exp'][:12]:<12} {r['status']:<9} {r['start']:<19} {dur:>7}  {params} | {_fmt_metrics(r['metrics'])}"
        )


# -- roles -------------------------------------------------------------------------------------
def _print_change(change) -> None:
    click.echo(f"{change.project}: {change.message}")


@click.group()
def add() -> None:
    """Give a run's model a role, or register data with the project.

    \b
    Example:
      antgo add product --exp=mycls1 --project=mycls
      antgo add train/label --address=shards/train --tags=batch1 --project=mycls
    """


def _make_add_role(role: str):
    @click.option(
        "--keep-champion",
        is_flag=True,
        hidden=role != "expert",
        help="Expert only: leave alias champion where it is.",
    )
    @note_opt
    @click.option(
        "--id", "run_id", default=None, help="MLflow run id whose logged model gets the role."
    )
    @click.option("--exp", required=True, help="Exp (run group) the run belongs to.")
    @project_opt
    def cmd(project, exp, run_id, note, keep_champion):
        from antgo_mlflow.project.roles import add_role

        if keep_champion and role != "expert":
            raise UsageError("--keep-champion applies to 'add expert' only")
        _print_change(
            _run(add_role, project, role, exp, run_id, note=note, keep_champion=keep_champion)
        )

    alias = ROLES[role].alias
    example = f"antgo add {role} --project=mycls --exp=mycls1 --id=$RUN_ID"
    if role == "product":  # --id is optional there: both forms
        example = f"antgo add {role} --project=mycls --exp=mycls1\n  {example}"
    cmd.__doc__ = (
        f"Register the run's model (or reuse its version) and make it the {role} (alias {alias}).\n\n"
        + (
            "Without --id the best finished run of the exp with a model is used (by the project metric, else the newest).\n\n"
            if role == "product"
            else ""
        )
        + f"\b\nExample:\n  {example}"
    )
    return add.command(role)(cmd)


for _role in ROLE_NAMES:
    _make_add_role(_role)


def _make_add_data(split: str):
    @click.option(
        "--num", type=int, default=None, help="Expected sample count (checked when known)."
    )
    @click.option("--tags", "tag", required=True, help="Name of this registration.")
    @click.option(
        "--address", required=True, help="Shard prefix (with -manifest.json) or a GT JSON."
    )
    @project_opt
    def cmd(project, address, tag, num):
        from antgo_mlflow.project.data_registry import add_data

        record = _run(add_data, project, split, address, tag, num)
        click.echo(
            f"{project}: {split} '{tag}' registered ({record['num']} samples, {record['kind']}, sha256:{record['digest'][:12]})"
        )

    cmd.__doc__ = (
        f"Check that the data exists and register it as {split} of the project.\n\n"
        f"\b\nExample:\n  antgo add {split} --project=mycls --address=./shards/train --tags=batch1"
    )
    return add.command(split)(cmd)


for _split in DATA_SPLITS:
    _make_add_data(_split)


@click.group("del")
def delete() -> None:
    """Take a role from a model, or remove a data registration.

    \b
    Example:
      antgo del baseline --exp=mycls1 --project=mycls
      antgo del train/label --tags=batch1 --project=mycls
    """


def _make_del_role(role: str):
    @note_opt
    @click.option("--version", default=None, help="Model version (instead of --exp/--id).")
    @click.option("--id", "run_id", default=None, help="MLflow run id whose model loses the role.")
    @click.option("--exp", default=None, help="Exp the run belongs to.")
    @project_opt
    def cmd(project, exp, run_id, version, note):
        from antgo_mlflow.project.roles import remove_role

        if role == "expert" and not (version or run_id):
            raise UsageError("del expert needs --version or --exp with --id")
        _print_change(
            _run(remove_role, project, role, exp=exp, run_id=run_id, version=version, note=note)
        )

    cmd.__doc__ = (
        f"Remove the {role} role (idempotent).\n\n"
        f"\b\nExample:\n  antgo del {role} --project=mycls "
        + ("--exp=mycls1 --id=$RUN_ID" if role == "expert" else "")
    )
    return delete.command(role)(cmd)


for _role in ROLE_NAMES:
    _make_del_role(_role)


def _make_del_data(split: str):
    @click.option("--tags", "tag", required=True, help="Registration name to remove.")
    @project_opt
    def cmd(project, tag):
        from antgo_mlflow.project.data_registry import delete_data

        _run(delete_data, project, split, tag)
        click.echo(f"{project}: {split} '{tag}' removed")

    cmd.__doc__ = f"Remove a {split} data registration.\n\n\b\nExample:\n  antgo del {split} --project=mycls --tags=batch1"
    return delete.command(split)(cmd)


for _split in DATA_SPLITS:
    _make_del_data(_split)


def _role_option():
    return click.option(
        "--role", required=True, type=click.Choice(ROLE_NAMES), help="product, expert or baseline."
    )


@click.command()
@note_opt
@_role_option()
@click.option(
    "--version", required=True, help="Model version number of the project's registered model."
)
@project_opt
def promote(project: str, version: str, role: str, note: str | None) -> None:
    """Give model version N a role: product -> @production, expert -> @champion, baseline -> @staging.

    \b
    Example:
      antgo promote --project=mycls --version=3 --role=product --note="beats v2 on val"
    """
    from antgo_mlflow.project.roles import promote as do_promote

    _print_change(_run(do_promote, project, version, role, note=note))


@click.command()
@note_opt
@_role_option()
@click.option("--version", default=None, help="Model version (required for expert).")
@project_opt
def demote(project: str, version: str | None, role: str, note: str | None) -> None:
    """Take a role from a model version (idempotent).

    \b
    Example:
      antgo demote --project=mycls --version=3 --role=product
    """
    from antgo_mlflow.project.roles import demote as do_demote

    _print_change(_run(do_demote, project, role, version, note=note))


# -- settings ----------------------------------------------------------------------------------
@click.group()
def update() -> None:
    """Store project settings (submitter, label, semi, distillation, activelearning).

    \b
    Example:
      antgo update project/submitter --project=mycls --name=ssh --gpu=1
      antgo update project/semi --project=mycls --name=mpl
    """


def _resource_options(fn):
    # antgo's `update project/submitter --gpu --cpu --memory`: the job's resource request
    for flag, key, what in (
        ("--memory", "memory", "Memory per job, MB."),
        ("--cpu", "cpu_num", "CPUs per job."),
        ("--gpu", "gpu_num", "GPUs per job."),
    ):
        fn = click.option(flag, key, type=click.IntRange(min=0), default=None, help=what)(fn)
    return fn


def _make_update(kind: str):
    @click.option("--name", default=None, help="Built-in method name.")
    @click.option("--config", default=None, help="Python config file.")
    @project_opt
    def cmd(project, config, name, **resources):
        from antgo_mlflow.project.settings import update_setting

        setting = _run(
            update_setting, project, kind, config=config, name=name, values=resources or None
        )
        click.echo(
            f"{project}: project/{kind} "
            + (f"set to {setting['method']}" if setting else "cleared")
        )

    from antgo_mlflow.project.settings import BUILTINS

    names = BUILTINS.get(kind) or ()
    example = f"--name={names[0]}" if names else "--config=label_config.py"
    if kind == "submitter":
        cmd = _resource_options(cmd)
        example = "--name=ssh --gpu=1 --cpu=10 --memory=10000"
    cmd.__doc__ = (
        f"Validate and store project/{kind}; empty --name= --config= clears it.\n\n"
        f"\b\nExample:\n  antgo update project/{kind} --project=mycls {example}"
    )
    return update.command(f"project/{kind}")(cmd)


for _kind in SETTING_KINDS:
    _make_update(_kind)


# -- train / create ----------------------------------------------------------------------------
def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise UsageError(f"-P {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


def _cloud_options(fn):
    fn = click.option("--ip", default=None, help="With --ssh: this registered host.")(fn)
    fn = click.option("--script", is_flag=True, help="Submit with the custom submit script.")(fn)
    fn = click.option("--docker", is_flag=True, help="Submit to the Docker submitter.")(fn)
    fn = click.option("--ssh", is_flag=True, help="Submit over SSH (the selected host).")(fn)
    return click.option(
        "--cloud", is_flag=True, help="Submit through a registered submitter (antgo submitter)."
    )(fn)


def _train_cloud(project, exp, gpu_id, entry_point, params, ssh, docker, script, ip) -> None:
    from antgo_mlflow.project.experiments import submit_train

    kinds = [k for k, on in (("ssh", ssh), ("docker", docker), ("script", script)) if on]
    if len(kinds) > 1:
        raise UsageError("choose one of --ssh, --docker, --script")
    if ip and kinds not in ([], ["ssh"]):
        raise UsageError("--ip picks an SSH host (use it with --ssh)")

    def submitted(info):
        click.echo(f"{project}: run {info['run_id']} of exp {exp} submitted to {info['submitter']}")
        click.echo(f"watch it: {info['watch']}  (mlflow ui)")

    result = _run(
        submit_train,
        project,
        exp,
        kind=kinds[0] if kinds else ("ssh" if ip else None),
        ip=ip,
        gpu_id=gpu_id,
        params=_parse_params(params),
        entry_point=entry_point,
        on_submitted=submitted,
    )
    click.echo(f"{project}: run {result['run_id']} of exp {exp} {result['status']}")


@click.command()
@click.option(
    "-P", "--param", "params", multiple=True, help="Entry-point parameter key=value (repeatable)."
)
@click.option("--entry-point", default="train", show_default=True, help="MLproject entry point.")
@click.option("--gpu-id", default=None, help="GPUs to use, e.g. 0 or 0,1 (-1: CPU).")
@click.option(
    "--stage",
    type=click.Choice(["auto", "supervised", "semi", "distillation"]),
    default="auto",
    show_default=True,
    help="Train with project/semi or project/distillation (auto: the one the project has).",
)
@_cloud_options
@project_opt
@click.option("--exp", required=True, help="Exp folder (with an MLproject) to run.")
def train(
    exp: str,
    project: str,
    cloud: bool,
    ssh: bool,
    docker: bool,
    script: bool,
    ip: str | None,
    gpu_id: str | None,
    stage: str,
    entry_point: str,
    params: tuple[str, ...],
) -> None:
    """Run the exp's MLproject train entry point into the project's experiment.

    Locally by default; with --cloud (or --ssh/--docker/--script) it is submitted through a
    registered submitter, its output streamed here and into the run's logs/remote.log. With a
    project/semi or project/distillation setting (or --stage) the exp's config is wrapped in
    that method and trained on the project's registered train/label and train/unlabel data.

    \b
    Example:
      antgo train --exp=mycls1 --project=mycls --gpu-id=0 -P epochs=2
      antgo train --exp=mycls1 --project=mycls --stage=semi
      antgo train --exp=mycls1 --project=mycls --cloud --ssh
    """
    from antgo_mlflow.project.experiments import train as do_train

    if cloud or ssh or docker or script or ip:
        if stage not in ("auto", "supervised"):
            raise UsageError("--stage: semi/distillation configs are built for local runs only")
        _train_cloud(project, exp, gpu_id, entry_point, params, ssh, docker, script, ip)
        return
    result = _run(
        do_train,
        project,
        exp,
        gpu_id=gpu_id,
        params=_parse_params(params),
        entry_point=entry_point,
        stage=stage,
    )
    shown = "" if result.get("stage") in (None, "supervised") else f" ({result['stage']})"
    click.echo(f"{project}: run {result['run_id']} of exp {exp}{shown} {result['status']}")


@click.command("project")
@click.option(
    "--metric",
    default=None,
    help="Metric that ranks runs: NAME or NAME:max|min (default val/top_1, as the recipes log).",
)
@click.option("--clone", is_flag=True, help="Also git clone --git into ./<name>.")
@click.option("--auto", is_flag=True, help="Mark the project for the automation loop.")
@click.option("--image", default=None, help="Docker image to train in (recorded).")
@click.option("--git", default=None, help="Repository URL (recorded; cloned only with --clone).")
@click.option("--name", default=None, help="Project name (default: the git URL's basename).")
def create_project_cmd(name, git, image, auto, clone, metric) -> None:
    """Create a project: an MLflow experiment with antgo.* tags.

    \b
    Example:
      antgo create project --name=mycls --metric=top_1
      antgo create project --git=https://github.com/me/mycls.git --clone
    """
    from antgo_mlflow.project.projects import create_project

    exp = _run(
        create_project, name=name, git=git, image=image, auto=auto, metric=metric, clone=clone
    )
    click.echo(f"created project {exp.name} (MLflow experiment {exp.experiment_id})")


@click.command("exp")
@click.option("--tgt", default=".", show_default=True, help="Folder to scaffold into.")
@click.option("--recipe", default=None, help="Recipe template (default cifar10).")
@click.option("--name", required=True, help="Exp name (its folder name).")
@project_opt
def create_exp_cmd(project, name, recipe, tgt) -> None:
    """Scaffold an exp folder (like 'create mvp') and record it on the project.

    \b
    Example:
      antgo create exp --project=mycls --name=mycls1
    """
    from antgo_mlflow.project.experiments import create_exp

    record = _run(create_exp, project, name, recipe=recipe, tgt=tgt)
    click.echo(f"{project}: exp {name} created in {record['folder']}")
