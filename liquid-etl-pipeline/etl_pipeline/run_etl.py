"""Command line: ``python -m etl_pipeline.run_etl [INPUT_DIR] [options]``.

With no arguments it processes the sample documents shipped in ``data/samples`` with the
offline models into ``data/runs/samples-offline``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from etl_pipeline.config import DEFAULT_INPUT_DIR, DEFAULT_RUNS_DIR, LLM_STAGES, EtlConfig
from liquid_shared.cli_options import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE

EPILOG = (
    "Exit codes: 0 = every document processed; 3 = partial (some documents failed, each one is "
    "named with its reason in report.json and in the summary; the rest were processed); "
    "1 = fatal (bad input folder, no documents, a model that cannot load); 2 = usage error (bad options). "
    "Re-running with the same output folder skips unchanged documents and resumes a killed run."
)

class ValidationProfile(str, Enum):
    standard = "standard"
    precision = "precision"


app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


@app.command(epilog=EPILOG, help=(
    "Turn a folder of documents (.txt .md .rst .html .pdf .jsonl) into chunks, metadata, summaries, "
    "validated QA pairs, fine-tuning data and a FAISS index, with small local LLMs through Pydantic AI "
    "agents in an async Pydantic Graph. Outputs go to one run folder (see docs/etl_pipeline.md)."
))
def main(
    input_dir: Annotated[Path, typer.Argument(help="Folder scanned recursively for documents.")] = DEFAULT_INPUT_DIR,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run folder (default: data/runs/<input folder>-<profile> under the current folder).")
    ] = None,
    profile: Annotated[Literal["offline", "lfm2", "remote"], typer.Option(help="Model profile: 'offline' (SmolLM2-135M, no network), 'lfm2', or 'remote' (the OpenAI-compatible engine at LIQUID_OPENAI_BASE_URL: docs/models.md).")] = "offline",
    concurrency: Annotated[int, typer.Option(help="LLM requests in flight per stage (the model's batch size).")] = 16,
    docs_in_flight: Annotated[
        int | None, typer.Option(help="Documents processed at once (default: the concurrency).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Process only the first N documents (sorted by path).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Load and chunk only: no model, nothing written.")] = False,
    max_chunk_tokens: Annotated[int, typer.Option(help="Token budget of a chunk (embedder word pieces).")] = 160,
    max_chunks_per_doc: Annotated[
        int | None, typer.Option(help="Cap on chunks per document (default: none, the whole document); a longer one is truncated and the summary says so.")
    ] = None,
    chunk_window: Annotated[
        int, typer.Option(help="Chunks of one document in the LLM stages at once (bounds memory on a long document).")
    ] = 32,
    max_file_mb: Annotated[float, typer.Option(help="Files larger than this are refused with an error.")] = 64.0,
    prefix_cache_mb: Annotated[
        float | None, typer.Option(help="MB for the in-process models' shared-prefix cache (each stage's system turn "
                                        "is prefilled once and reused); 0 disables it. Default: LIQUID_PREFIX_CACHE_MB or 256.")
    ] = None,
    role_model: Annotated[
        list[str] | None,
        typer.Option("--role-model", "--stage-model",
                     help="Model override ROLE=MODEL for a model role (chunking, metadata, summary, qa, validation; "
                     "classify, taxonomy and facts use metadata's model, judge and reader validation's); repeatable. "
                     "--stage-model is the old name."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Reuse an output folder made for another input folder (its documents are replaced).")
    ] = False,
    qa_per_chunk: Annotated[int, typer.Option(help="Most QA pairs generated per chunk (1-4).")] = 2,
    stages: Annotated[
        str | None, typer.Option(help=f"Comma-separated LLM stages to run (default all: {','.join(LLM_STAGES)}); others use fallbacks.")
    ] = None,
    categories: Annotated[str | None, typer.Option(help="Comma-separated classification labels.")] = None,
    llm_boundaries: Annotated[bool, typer.Option("--llm-boundaries", help="Let the model propose chunk boundaries.")] = False,
    qa_mode: Annotated[Literal["abstractive", "extractive"], typer.Option(
        help="'abstractive' (default): the model writes question and answer freely; 'extractive': the answer is a span "
        "of the chunk, a question is written for it and kept only when a reader, answering under the copy constraint, "
        "finds the same span."
    )] = "abstractive",
    roundtrip_threshold: Annotated[float, typer.Option(
        help="Extractive mode: least token F1 (0-1) between the reader's span and the intended answer.")] = 0.5,
    prompt_layout: Annotated[Literal["instructions-first", "passage-first"], typer.Option(
        help="'instructions-first' (default): each stage's instructions, then the passage; 'passage-first': the "
        "passage, then the stage's instructions, so the prefix cache prefills a chunk's passage once for all its "
        "stages (fewer prompt tokens; the outputs' wording differs)."
    )] = "instructions-first",
    validation_profile: Annotated[ValidationProfile, typer.Option(
        help="'standard': well formed, grounded, the judge where it gates, the extractive roundtrip; 'precision': "
        "those plus checks without an LLM (the question retrieves its own chunk first by BM25 and embedding, does not "
        "hold its answer, is no prompt example or copy of the first sentence; the answer is a span of the chunk; the "
        "reader's span is exactly the intended one): fewer pairs, more of them right.")] = ValidationProfile.standard,
    min_precision: Annotated[float, typer.Option(
        help="Warn that the fine-tuning data is unverified when the calibrated kept-pair precision of the model and "
        "validation profile is below this (0-1), or was never measured (python -m etl_pipeline.calibrate).")] = 0.8,
    require_precision: Annotated[float | None, typer.Option(
        help="Refuse to run, and so to write fine-tuning data, unless the calibrated kept-pair precision of the model "
        "and validation profile reaches this (0-1).")] = None,
    grounding_threshold: Annotated[
        float, typer.Option(help="Least share (0-1) of a QA answer's content words that must occur in its chunk.")
    ] = 0.6,
    judge_threshold: Annotated[
        float | None, typer.Option(help="Least judge score (0-1) of a valid QA pair (default: 0 = advisory for 'offline', 0.5 otherwise).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy decoding (reproducible).")] = 0.0,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log the run to MLflow.")] = False,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "etl",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    ray: Annotated[
        str | None, typer.Option("--ray", metavar="ADDRESS", help="Distribute documents over Ray workers: 'local' starts a "
                                 "local cluster, 'auto' or 'ray://host:port' joins one (needs liquid-etl-pipeline[ray]; "
                                 "--docs-in-flight is then per worker).")
    ] = None,
    ray_workers: Annotated[int | None, typer.Option(help="With --ray: number of workers (default: one per cluster CPU).")] = None,
    ray_worker_cpus: Annotated[int | None, typer.Option(help="With --ray: CPUs per worker (default: cluster CPUs / workers).")] = None,
) -> None:
    console = Console(stderr=True)
    fields = {
        "input_dir": input_dir,
        "output_dir": output or DEFAULT_RUNS_DIR / f"{Path(input_dir).resolve().name}-{profile}",
        "profile": profile,
        "concurrency": concurrency,
        "docs_in_flight": docs_in_flight,
        "limit": limit,
        "dry_run": dry_run,
        "max_chunk_tokens": max_chunk_tokens,
        "max_chunks_per_doc": max_chunks_per_doc,
        "chunk_window": chunk_window,
        "prefix_cache_mb": prefix_cache_mb,
        "max_file_mb": max_file_mb,
        "force": force,
        "qa_per_chunk": qa_per_chunk,
        "llm_boundaries": llm_boundaries,
        "temperature": temperature,
        "judge_threshold": judge_threshold,
        "grounding_threshold": grounding_threshold,
        "qa_mode": qa_mode,
        "roundtrip_threshold": roundtrip_threshold,
        "prompt_layout": prompt_layout,
        "validation_profile": validation_profile.value,
        "min_precision": min_precision,
        "require_precision": require_precision,
    }
    if stages is not None:
        fields["stages"] = _split(stages)
    if categories is not None:
        fields["categories"] = _split(categories)
    try:
        fields["role_models"] = _role_models(role_model or [])
        config = EtlConfig(**fields)
    except ValueError as exc:
        console.print(f"[red]invalid options:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if dry_run:
        raise typer.Exit(_dry_run(config, console))
    if ray is not None:  # the Ray path: etl_pipeline.ray_runner
        from etl_pipeline.ray_runner import run_cli

        raise typer.Exit(run_cli(config, console, ray, workers=ray_workers, cpus_per_worker=ray_worker_cpus, quiet=quiet,
                                 track=not no_track, experiment=experiment))
    raise typer.Exit(_run(config, console, quiet=quiet, track=not no_track, experiment=experiment))


def _role_models(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        role, sep, model = value.partition("=")
        if not sep or not role.strip() or not model.strip():
            raise ValueError(f"--role-model {value!r}: expected ROLE=MODEL, e.g. qa=LiquidAI/LFM2-1.2B")
        out[role.strip()] = model.strip()
    return out


def _run(config: EtlConfig, console: Console, *, quiet: bool, track: bool, experiment: str) -> int:
    from etl_pipeline.progress import RichEvents, summary_table
    from etl_pipeline.runner import run

    console.print(f"ETL {config.input_dir} -> {config.output_dir} (profile {config.profile}, concurrency {config.concurrency})")
    if quiet:
        result = run(config, track=track, experiment=experiment)
    else:
        with RichEvents(console) as events:
            result = run(config, events=events, on_documents=events.set_documents, track=track, experiment=experiment)
    if result.exit_code == 1:
        console.print(f"[red]fatal:[/red] {result.message}")
        return 1
    changed = result.report.get("settings_changed")
    if changed:
        console.print(
            f"[yellow]{changed['documents']} document(s) done again because these settings changed:[/yellow] "
            + ", ".join(changed["settings"])
        )
    Console().print(summary_table(result.report))
    trust = result.report.get("trust")
    if trust:
        from rich.markup import escape

        style = "green" if trust["verified"] else "yellow"
        console.print(f"[{style}]{escape(trust['message'])}[/{style}]")
    console.print(f"outputs in {result.output_dir} — status {result.status}")
    return result.exit_code


def _dry_run(config: EtlConfig, console: Console) -> int:
    from etl_pipeline.chunking import build_chunks
    from etl_pipeline.loaders import LoadError, load_document
    from etl_pipeline.runner import FatalError, select_sources

    try:
        _, selected = select_sources(config)
    except FatalError as exc:
        console.print(f"[red]fatal:[/red] {exc}")
        return 1
    table = Table(title=f"dry run: {config.input_dir}")
    for col in ("source", "status", "chunks", "tokens", "note"):
        table.add_column(col)
    failed = 0
    for item in selected:
        try:
            doc = load_document(item, max_bytes=int(config.max_file_mb * 1e6), jsonl_text_field=config.jsonl_text_field)
        except LoadError as exc:
            failed += 1
            table.add_row(item.source, "[red]error", "", "", exc.reason)
            continue
        result = build_chunks(
            doc, max_tokens=config.max_chunk_tokens, min_tokens=config.min_chunk_tokens, max_chunks=config.max_chunks_per_doc
        )
        note = "; ".join(doc.metadata.get("warnings", []) + result.warnings)
        table.add_row(item.source, "ok", str(len(result.chunks)), str(sum(c.n_tokens for c in result.chunks)), note[:80])
    Console().print(table)
    return EXIT_PARTIAL if failed else EXIT_OK


if __name__ == "__main__":
    app()
