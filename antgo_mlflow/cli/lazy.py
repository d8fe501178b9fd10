"""A click group whose subcommands are imported only when used (keeps `antgo --help` fast)."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """A group built from ``{name: "module:attribute"}``; each command module is imported on use.

    ``short_help`` texts are given up front so that the group's ``--help`` imports nothing.
    """

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            target, _ = self.lazy[name]
            module_name, attr = target.split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and module_name.startswith(exc.name):
                    raise click.UsageError(f"command '{name}' is not available yet", ctx) from exc
                raise
            if not hasattr(module, attr):
                raise click.UsageError(f"command '{name}' is not available yet", ctx)
            return getattr(module, attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        for name in super().list_commands(ctx):
            if name not in self.lazy:
                cmd = super().get_command(ctx, name)
                rows.append((name, cmd.get_short_help_str() if cmd else ""))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and name not in self.lazy and name not in super().list_commands(ctx):
            import difflib

            hint = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise click.UsageError(f"no such command '{name}'{suffix}", ctx)
        return super().resolve_command(ctx, args)
