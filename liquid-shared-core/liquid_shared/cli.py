"""The ``liquid`` command: one root over the commands of every installed Liquid package.

Each package names its command in its own ``pyproject.toml``, under the entry-point group
``liquid.commands`` (``etl = "etl_pipeline.run_etl:app"``), so this module imports no upper
package: ``liquid`` shows whatever is installed. A Typer app with one command becomes a command
(``liquid etl [INPUT_DIR]``), one with several a group (``liquid rag search``). A sub-command is
imported only when it is run, or when ``liquid --help`` lists the short help of each.

Exit codes are the same everywhere (``liquid_shared.cli_options``): 0 done, 1 failed, 2 usage
error, 3 finished with some inputs failed.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points, version
from typing import Any

import click
import typer
import typer.core

from liquid_shared.cli_options import EXIT_CODES, EXIT_OK

ENTRY_POINT_GROUP = "liquid.commands"

HELP = """The Liquid stack: documents into retrieval and fine-tuning data with small local LLMs,
served, queried and measured.

\b
A first hour:
  liquid etl                          run the ETL on the shipped samples (offline models)
  liquid rag search "how do tides work" --index data/runs/samples-offline
  liquid rag serve --index data/runs/samples-offline   the HTTP service (docs/rag_runtime.md)
  liquid export data/runs/samples-offline --format beir   the QA as a BEIR folder (synthetic)
  liquid exp list                     the experiments; liquid exp run -e rag_quality
  liquid models                       the model names that work offline
"""


def _versions() -> str:
    names = ["liquid-shared-core", "liquid-etl-pipeline", "liquid-rag-runtime", "liquid-lvm", "liquid-finetune",
             "experiments"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:  # not installed: not listed
            continue
    return "\n".join(found)


def _as_click(obj: Any, name: str) -> click.Command:
    if isinstance(obj, typer.Typer):
        command = typer.main.get_command(obj)
    elif isinstance(obj, click.Command):
        command = obj
    elif callable(obj):  # a plain function: one command
        command = typer.main.get_command(_single(obj))
    else:
        raise TypeError(f"entry point {name!r} of {ENTRY_POINT_GROUP!r} is neither a Typer app nor a click command")
    command.name = name
    return command


def _single(function: Any) -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command()(function)
    return app


class LiquidGroup(typer.core.TyperGroup):
    """The root group: its own commands plus the installed packages' entry points, loaded on use."""

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._entry_points()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        ep = self._entry_points().get(cmd_name)
        if ep is None:
            return None
        command = _as_click(ep.load(), cmd_name)
        self.add_command(command, cmd_name)
        return command


app = typer.Typer(name="liquid", cls=LiquidGroup, help=HELP, epilog=EXIT_CODES, no_args_is_help=True,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


def _print_version(value: bool) -> None:
    if value:
        typer.echo(_versions())
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the installed Liquid packages' versions and exit."),
) -> None:
    """The Liquid stack's commands."""


@app.command("models")
def models_cmd() -> None:
    """List the model names that resolve with no network: the bundled models under their standard names."""
    from liquid_shared.offline import STANDARD_NAMES

    for alias in sorted(set(STANDARD_NAMES.values())):
        names = sorted(n for n, a in STANDARD_NAMES.items() if a == alias and n != alias)
        typer.echo(f"{alias}  (also: {', '.join(names)})")


def _add_tracking_server() -> None:
    from liquid_shared.tracking_server import main as tracking_main

    app.command("tracking-server", help="A shared MLflow tracking server (foreground; Ctrl-C stops it).")(tracking_main)


_add_tracking_server()


def main(argv: list[str] | None = None) -> None:
    """The ``liquid`` console script."""
    command = typer.main.get_command(app)
    command.main(args=argv if argv is not None else sys.argv[1:], prog_name="liquid")


if __name__ == "__main__":
    main()
