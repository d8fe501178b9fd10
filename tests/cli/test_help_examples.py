"""Every example in every `--help` parses: the command, its flags and their values (a sweep).

An example a user copies from `--help` must at least be accepted by the command line parser;
`antgo train -P name=value` examples must also name parameters the scaffold's entry point takes.
The entry-point scripts' `--help` examples are parsed by their own parsers.
"""

from __future__ import annotations

import shlex

import click
import pytest

from antgo_mlflow.cli.main import cli


def _commands(cmd: click.Command, path: tuple[str, ...]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1])
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(cli, ("antgo",)))


def examples(cmd: click.Command) -> list[str]:
    """The `antgo ...` lines of the Example(s) blocks of a command's help text."""
    out, inside = [], False
    help_text = (cmd.help or "").replace("\\\n", " ")  # shell line continuations
    for line in help_text.splitlines():
        text = line.strip()
        if text.startswith("Example"):
            inside = True
        elif not text or text == "\b":
            inside = False
        elif inside and text.startswith("antgo "):
            out.append(text.split("  #")[0].strip())
    return out


def parse(line: str) -> tuple[click.Command, click.Context]:
    """Parse an example as click would run it (options, types, required values), not run it."""
    args = shlex.split(line)[1:]
    ctx = cli.make_context("antgo", args)
    cmd: click.Command = cli
    while isinstance(cmd, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest and cmd.invoke_without_command:  # `antgo submitter` runs the group itself
            break
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)
    return cmd, ctx


ALL_EXAMPLES = [
    pytest.param(line, id=f"{' '.join(path)}: {line}")
    for path, cmd in COMMANDS.items()
    for line in examples(cmd)
]


def test_every_command_shows_an_example():
    missing = [" ".join(path) for path, cmd in COMMANDS.items() if not examples(cmd)]
    assert missing == []


@pytest.mark.parametrize("line", ALL_EXAMPLES)
def test_help_example_parses(line):
    parse(line)


def _scaffold_train_flags() -> set[str]:
    """Options the scaffold's main.py accepts (what `-P name=value` becomes: --name value)."""
    import importlib.util
    from importlib.resources import files

    path = files("antgo_mlflow.recipes") / "cifar10" / "cifar10" / "main.py"
    spec = importlib.util.spec_from_file_location("scaffold_main_for_help_test", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.build_parser()._option_string_actions)


def test_train_examples_name_parameters_the_entry_point_takes():
    flags = _scaffold_train_flags()
    lines = [ln for ln in examples(COMMANDS[("antgo", "train")])]
    assert lines
    for line in lines:
        cmd, ctx = parse(line)
        for pair in ctx.params["params"]:
            key = pair.split("=", 1)[0]
            assert f"--{key}" in flags, (line, key)


def _script_examples(text: str, module: str) -> list[str]:
    """`python -m antgo_mlflow.entrypoints.<module> ...` commands in ``text`` (continuations joined)."""
    text = text.replace("\\\n", " ")
    marker = f"python -m antgo_mlflow.entrypoints.{module}"
    return [line[line.index(marker) :].strip() for line in text.splitlines() if marker in line]


@pytest.mark.parametrize("module", ["train", "export", "pseudo_label"])
def test_entry_point_help_examples_parse(module):
    import importlib

    mod = importlib.import_module(f"antgo_mlflow.entrypoints.{module}")
    parser = mod.build_parser()
    lines = _script_examples(parser.epilog or "", module) + _script_examples(
        mod.__doc__ or "", module
    )
    assert lines, f"{module}: no example in --help"
    for line in lines:
        argv = shlex.split(line)[3:]
        parser.parse_args(argv)  # a UsageError (one line) if a flag or value is wrong


def test_scaffold_main_py_examples_parse():
    """The commands in the scaffold's main.py docstring (what its README repeats) parse."""
    import importlib.util
    from importlib.resources import files

    path = files("antgo_mlflow.recipes") / "cifar10" / "cifar10" / "main.py"
    spec = importlib.util.spec_from_file_location("scaffold_main_for_examples", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = [ln.strip() for ln in (module.__doc__ or "").splitlines() if "main.py --" in ln]
    assert len(lines) >= 3
    for line in lines:
        argv = shlex.split(line.replace("{{name}}", "mycls"))
        module.build_parser().parse_args(argv[2:])
