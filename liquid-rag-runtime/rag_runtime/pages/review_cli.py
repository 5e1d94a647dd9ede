"""``python -m rag_runtime review serve RUN`` (the review page) and ``review report RUN``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

review_app = typer.Typer(name="review", help="Review an ETL run's QA pairs in a browser, and report on the reviews.",
                         no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True)
RunArgument = Annotated[Path, typer.Argument(help="ETL run folder (qa_pairs.jsonl, validation.jsonl, chunks.jsonl); only read.")]
DbOption = Annotated[Path | None, typer.Option("--db", help="Judgments database (SQLite). Default: <run>.review/judgments.sqlite beside the run folder.")]


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
    raise typer.Exit(2) from exc


@review_app.command("serve")
def serve_cmd(
    run: RunArgument,
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8001,
    api_key: Annotated[str | None, typer.Option(envvar="RAG_API_KEY", help="Require this X-API-Key on the review API (the page asks for it once).")] = None,
    overlap: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the pairs shown to several reviewers (for agreement).")] = 0.2,
    overlap_reviewers: Annotated[int, typer.Option(min=2, help="Reviewers each overlap pair is shown to.")] = 2,
) -> None:
    """Serve the review page of RUN at http://HOST:PORT/review (judgments in --db)."""
    import uvicorn

    from rag_runtime.pages.review_app import create_review_app, default_db
    from rag_runtime.pages.review_run import ReviewRunError

    try:
        app = create_review_app(run, db, api_key=api_key, overlap=overlap, overlap_reviewers=overlap_reviewers)
    except (ReviewRunError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    console.print(f"reviewing {len(app.state.run.pairs)} pairs of {run}: open http://{host}:{port}/review "
                  f"(judgments in {db or default_db(run)})")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)


@review_app.command("report")
def report_cmd(
    run: RunArgument,
    db: DbOption = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Report folder. Default: <run>.review/report beside the run folder.")] = None,
    squad: Annotated[Path | None, typer.Option("--squad", help="A SQuAD v2.0 file: add its human answers as a reference (accept when token F1 >= --squad-f1 with a human answer of the pair's paragraph).")] = None,
    squad_f1: Annotated[float, typer.Option(min=0.0, max=1.0, help="Token F1 a pair's answer needs with a SQuAD human answer to count as accepted by that reference.")] = 0.5,
    n_boot: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for the confidence intervals.")] = 2000,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log the report to MLflow.")] = False,
    experiment: Annotated[str, typer.Option("--experiment", help="MLflow experiment.")] = "qa-review",
) -> None:
    """Agreement (Cohen's kappa, Krippendorff's alpha), the ETL verdict against the human majority, the accepted set."""
    from rag_runtime.pages.review_app import default_db
    from rag_runtime.pages.review_report import write_report
    from rag_runtime.pages.review_run import ReviewRun, ReviewRunError
    from rag_runtime.pages.squad_answers import SQUAD_REFERENCE, squad_reference

    try:
        review_run = ReviewRun.load(run)
        db = db or default_db(run)
        output = output or default_db(run).parent / "report"
        references = {SQUAD_REFERENCE: squad_reference(review_run, squad, squad_f1)} if squad else None
        report = write_report(run, db, output, references, n_boot=n_boot, track=not no_track, experiment=experiment, run=review_run)
    except (ReviewRunError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    overall = report["validator"]["overall"]
    console.print(f"report of {report['judged_pairs']} judged pairs in {output}/report.md"
                  + (f"; ETL precision {overall['precision']:.3f}, recall {overall['recall']:.3f}" if overall else ""))
