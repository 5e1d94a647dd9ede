"""Command line: ``python run_experiments.py --experiments rag_quality dual_pipeline`` (or ``--all``),
``--list``, and ``python run_experiments.py report`` for paper tables and figures.

``run`` is the default command, so ``python run_experiments.py --all`` means
``python run_experiments.py run --all``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from liquid_shared.cli_options import renamed

RUN_HELP = """Run experiments over the Liquid stack and log each one to MLflow (one run per experiment,
a nested run per variant), with the same files in a run folder on disk:
<output>/<experiment>/metrics.json ({variant: {metric: mean}}), per-query or per-sample CSV,
report.md, plots, and experiment.json (status, config, MLflow run id).

Experiments: one module each in experiments/experiments/catalog/ (rag_quality, lvm_next_chunk,
ft_downstream, ...); `--list` names every one, what it measures and every config field with its
default and meaning; docs/experiments.md is the guide.
Settings: defaults < --config file < the options below. --seed, --n-runs, --dataset and --documents
set the config field of that name in every selected experiment that has it; an option that none of
them has is an error.

\b
Examples:
  python run_experiments.py --experiments rag_quality --dataset ../shared/data/beir/scifact
  python run_experiments.py --experiments dual_pipeline model_ablation --n-runs 3
  python run_experiments.py --all --config experiments.toml
  python run_experiments.py --list
  python run_experiments.py report --input results/experiments
"""

RUN_EPILOG = ("Exit codes: 0 = every experiment succeeded; 1 = at least one failed (each failure is named, "
              "the others still ran and were recorded); 2 = bad command line (unknown experiment, none named, an option no "
              "selected experiment uses) or an unreadable --config file; nothing runs then.")

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=False,
                  help="Experiments over the Liquid stack. Commands: run (the default) and report.")


def _names(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return list(dict.fromkeys(out))


def _shown_default(info) -> str:
    default = info.get_default(call_default_factory=True)
    if isinstance(default, list) and default and all(hasattr(d, "name") for d in default):
        return ", ".join(d.name for d in default)  # variants / sets: their names
    return str(default) if isinstance(default, Path) else repr(default)


def _item_type(info) -> type | None:
    """The pydantic model of a ``list[Model]`` field (variants, sets), else None."""
    from pydantic import BaseModel

    for arg in getattr(info.annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _fields_table(title: str, fields: dict) -> Table:
    table = Table(title=escape(title), title_justify="left", show_lines=False, expand=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("default")
    table.add_column("meaning")
    for field_name, info in fields.items():
        default = "(required)" if info.is_required() else _shown_default(info)
        table.add_row(field_name, escape(default), escape(info.description or ""))
    return table


def _list_table(console: Console) -> None:
    """Every experiment: what it measures, then each config field with its default and meaning."""
    from experiments.registry import all_experiments

    console.print(escape("Config fields are set in a --config file (top-level keys: every experiment that has the "
                         "field; an [experiment] table: that one), and --seed, --n-runs, --dataset, --documents set "
                         "the field of the same name. Guide: docs/experiments.md"), highlight=False)
    for name, exp in all_experiments().items():
        console.print()
        console.rule(f"[bold]{name}[/bold]")
        console.print(escape(exp.summary), highlight=False)
        fields = exp.config_type.model_fields
        console.print(_fields_table(f"[{name}] fields", fields))
        for field_name, info in fields.items():
            item = _item_type(info)
            if item is not None:
                console.print(_fields_table(f"each of {field_name} = [{{...}}, ...]", item.model_fields))


def unused_options(experiments: list, options: dict) -> list[str]:
    """Command-line options (given) that set a field none of ``experiments`` has, with who takes them."""
    from experiments.registry import all_experiments

    problems = []
    for option, (field_name, value) in options.items():
        if value is None or any(field_name in e.config_type.model_fields for e in experiments):
            continue
        takers = [n for n, e in all_experiments().items() if field_name in e.config_type.model_fields]
        problems.append(f"{option} is not used by {', '.join(e.name for e in experiments)} "
                        f"(it applies to {', '.join(takers)})")
    return problems


@app.command(help=RUN_HELP, epilog=RUN_EPILOG, cls=renamed(output_dir="--output"))
def run(
    experiments: Annotated[list[str] | None, typer.Option(
        "--experiments", "-e", help="Experiments to run: names separated by spaces or commas "
        "(--experiments rag_quality dual_pipeline), or the option repeated.")] = None,
    more: Annotated[list[str] | None, typer.Argument(
        help="More experiment names (so that `--experiments a b` works).", show_default=False)] = None,
    run_all: Annotated[bool, typer.Option("--all", help="Run every experiment, in --list order.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the experiments and every config field (default, meaning), then exit.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="TOML or JSON file: one table per experiment ([rag_quality] ...), top-level keys for all.")] = None,
    dataset: Annotated[Path | None, typer.Option(
        "--dataset", help="Evaluation data for rag_quality and ft_quality: a BEIR folder (corpus.jsonl, "
        "queries.jsonl, qrels/) or an ETL run folder; ft_quality also takes a fine-tuning JSONL file; rag_answers a SQuAD "
        "v2.0 JSON file. Default: the "
        "default ETL run (made first if missing).")] = None,
    documents: Annotated[Path | None, typer.Option(
        "--documents", help="Input documents for dual_pipeline, and for model_ablation with evaluation = 'none' "
        "(a folder the ETL reads). Default: data/samples.")] = None,
    mlflow_uri: Annotated[str | None, typer.Option(
        "--mlflow-uri", help="MLflow tracking URI (default: LIQUID_MLFLOW_URI, else sqlite:///<project>/mlruns.db).")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where run folders go: <output>/<experiment>/ (default: results/experiments).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for sampling, bootstrap resampling and subsampling (default 0).")] = None,
    n_runs: Annotated[int | None, typer.Option(
        "--n-runs", help="Runs of every pipeline variant, with seeds seed, seed + 1, ... (dual_pipeline, "
        "model_ablation; default 1).")] = None,
) -> None:
    console = Console(stderr=True, soft_wrap=True)
    from experiments.config_file import ConfigFileError, read_config_file
    from experiments.registry import all_experiments

    registry = all_experiments()
    if list_:
        _list_table(Console())
        return
    try:
        config_file = read_config_file(config, list(registry))
    except ConfigFileError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    names = list(registry) if run_all else (_names(experiments) + _names(more) or config_file.experiments)
    if not names:
        console.print("[red]error:[/red] name the experiments to run (--experiments NAME ...) or use --all; "
                      f"known: {', '.join(registry)}")
        raise typer.Exit(2)
    unknown = [n for n in names if n not in registry]
    if unknown:
        console.print(f"[red]error:[/red] unknown experiment(s) {escape(', '.join(unknown))}; known: {', '.join(registry)}")
        raise typer.Exit(2)
    if n_runs is not None and n_runs < 1:
        console.print(f"[red]error:[/red] --n-runs must be >= 1, got {n_runs}")
        raise typer.Exit(2)
    selected = [registry[n] for n in names]
    unused = unused_options(selected, {"--dataset": ("dataset", dataset), "--documents": ("documents", documents),
                                       "--n-runs": ("n_runs", n_runs)})
    if unused:
        for problem in unused:
            console.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(2)

    from experiments.runner import run_experiments
    from experiments.settings import default_output_dir

    root = (output_dir or default_output_dir()).expanduser().resolve()
    overrides = {"dataset": dataset, "documents": documents, "seed": seed, "n_runs": n_runs}
    outcomes = run_experiments(selected, config_file, overrides, root, mlflow_uri, console)

    table = Table(title=f"experiments -> {root}")
    for col in ("experiment", "status", "seconds", "result"):
        table.add_column(col)
    for o in outcomes:
        status = "[green]ok[/green]" if o.status == "ok" else "[red]FAILED[/red]"
        table.add_row(o.name, status, f"{o.seconds:.1f}", escape(o.error or f"{o.output_dir}/metrics.json"))
    Console().print(table)
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        for o in failed:
            console.print(f"[red]failed:[/red] {o.name}: {escape(o.error or '')}")
        raise typer.Exit(1)


@app.command(help="""Turn stored experiment runs into paper-ready tables (markdown and LaTeX) and figures.

Reads the run folders under --input (what `run` wrote), or downloads an MLflow run's
artifacts with --run-id. For rag_quality it recomputes the significance table for --metric from the
per-query scores; for the others it tabulates metrics.json. Writes into <input>/report/ (or --output).""",
             cls=renamed(output_dir="--input", out="--output"))
def report(
    output_dir: Annotated[Path | None, typer.Option(
        "--input", help="Folder holding <experiment>/ run folders, as `run` wrote them (default: results/experiments).")] = None,
    experiments: Annotated[list[str] | None, typer.Option(
        "--experiments", "-e", help="Only these experiments (default: every run folder found).")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", "-m", help="Metric(s) for the tables (default: ndcg@10 for rag_quality, all for the others).")] = None,
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the report (default: <input>/report).")] = None,
    mlflow_uri: Annotated[str | None, typer.Option("--mlflow-uri", help="Tracking URI for --run-id.")] = None,
    run_id: Annotated[list[str] | None, typer.Option(
        "--run-id", help="MLflow parent run id(s) of experiments to report instead of folders on disk.")] = None,
) -> None:
    console = Console(stderr=True, soft_wrap=True)
    from experiments.report import ReportError, build_report
    from experiments.settings import default_output_dir

    root = (output_dir or default_output_dir()).expanduser().resolve()
    try:
        written = build_report(root, names=_names(experiments) or None, metrics=_names(metric) or None,
                               out=out, mlflow_uri=mlflow_uri, run_ids=run_id or [], console=console)
    except ReportError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    for path in written:
        Console().print(str(path))


@app.command("list", help="List the experiments and every config field (default, meaning).")
def list_cmd() -> None:
    _list_table(Console())


_COMMANDS = {"run", "report", "list"}


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``run`` is implied when the first argument is not a command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    if args[0] not in _COMMANDS:
        args.insert(0, "run")
    args = ["--help" if a == "-h" else a for a in args]
    app(args=args, prog_name="run_experiments.py")
