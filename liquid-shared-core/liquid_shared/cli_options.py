"""What every Liquid command shares: exit codes, and old option names accepted for one release.

``renamed(**{"--out": "--output"})`` gives a command class for ``@app.command(cls=...)`` that
rewrites an old spelling to the new one before click parses the line, and prints one
deprecation line to stderr, so the function keeps one parameter per idea.
"""

from __future__ import annotations

import sys

import click
import typer.core

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_CODES = ("Exit codes: 0 = done; 1 = failed (the reason is printed); 2 = usage error (a bad option or "
              "argument); 3 = finished, but some inputs failed (each one is named).")


def rewrite_renamed(args: list[str], renames: dict[str, str], warn=None) -> list[str]:
    """``args`` with each old option name (``--out x`` or ``--out=x``) replaced by its new name."""
    out = []
    for arg in args:
        if arg == "--":
            out.extend(args[len(out):])
            break
        name, sep, value = arg.partition("=")
        if name in renames:
            if warn is not None:
                warn(f"warning: {name} is deprecated and will be removed in the next release; use {renames[name]}")
            arg = renames[name] + sep + value
        out.append(arg)
    return out


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def renamed(**renames: str) -> type[typer.core.TyperCommand]:
    """A command class accepting the old option names in ``renames`` (old name -> new name)."""
    table = {old if old.startswith("-") else "--" + old.replace("_", "-"): new for old, new in renames.items()}

    class RenamedOptionsCommand(typer.core.TyperCommand):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            return super().parse_args(ctx, rewrite_renamed(args, table, _warn))

    return RenamedOptionsCommand
