"""``python -m rag_runtime``: build-index, search, ask, serve."""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from liquid_shared.cli_options import renamed

app = typer.Typer(
    name="rag_runtime", help="Build, search, ask and serve a retrieval index (BM25, dense, hybrid).",
    no_args_is_help=True, add_completion=False, rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)

KEEP_ALIVE_S = 30  # uvicorn's default 5 s lets a loaded client reuse a connection the server is closing
IndexOption = Annotated[Path, typer.Option("--index", help="Index folder made by build-index, or an ETL run folder (its index/).")]
StyleOption = Annotated[Literal["generative", "extractive"], typer.Option("--answer-style", "--style", help="generative (free answer) or extractive (a sentence copied from a cited chunk).")]
MinSimilarityOption = Annotated[float | None, typer.Option(
    "--min-similarity", help="Refuse when no retrieved chunk reaches this dense (cosine) score (default 0.35, "
    "calibrated for all-MiniLM-L6-v2 on SciFact; docs/results.md has the SQuAD fit).")]
SelectionOption = Annotated[Literal["top", "model"], typer.Option(
    "--selection", help="Extractive style: top (ask's default: the best-ranked sentence, no LLM call) or model (the "
    "LLM chooses among the ranked sentences). The generative style always uses the model.")]
MinAnswerScoreOption = Annotated[float | None, typer.Option(
    "--min-answer-score", help="Refuse when no sentence of the relevant chunks reaches this ranking score "
    "(default: off).")]
SupportOption = Annotated[Literal["flag", "strict", "off"], typer.Option("--support", help="Support check of the answer against its citations: flag (report), strict (refuse unsupported), off.")]
AnswerModeOption = Annotated[Literal["auto", "tool", "context"], typer.Option("--answer-mode", help="Default answer mode: auto, tool or context.")]
AnswerStyleOption = Annotated[Literal["generative", "extractive"], typer.Option(
    "--answer-style", "--style",
    help="Default answer style: generative (free answer) or extractive (a sentence copied from a cited chunk).")]
AllowModeOption = Annotated[list[str] | None, typer.Option(
    "--allow-answer-mode", help="An answer mode requests may choose (auto, tool, context); repeatable. Default: all.")]
AllowStyleOption = Annotated[list[str] | None, typer.Option(
    "--allow-answer-style", help="An answer style requests may choose (generative, extractive); repeatable. Default: all.")]
AllowModelOption = Annotated[list[str] | None, typer.Option(
    "--allow-embedding-model",
    help="An embedding model (hub id or path) the index may name besides model folders inside it; repeatable. "
         "Default: only the offline all-MiniLM-L6-v2.")]


def parse_filters(values: list[str] | None):
    """``["tags=bread", "tags=pastry", "source=a.txt"]`` -> ``MetadataFilter`` (None for no values)."""
    from rag_runtime.filters import FILTER_FIELDS, MetadataFilter

    if not values:
        return None
    fields: dict[str, list[str]] = {}
    for value in values:
        name, sep, wanted = value.partition("=")
        name, wanted = name.strip(), wanted.strip()
        if not sep or not wanted:
            raise ValueError(f"--filter {value!r}: write FIELD=VALUE, e.g. tags=bread")
        if name not in FILTER_FIELDS:
            raise ValueError(f"--filter {value!r}: unknown field {name!r}; choose {', '.join(FILTER_FIELDS)}")
        fields.setdefault(name, []).append(wanted)
    return MetadataFilter(**fields)


def _no_llm():
    """A model for ``--selection top``: answering never calls it (an error if it ever did)."""
    from pydantic_ai.models.function import FunctionModel
    from pydantic_ai.profiles import ModelProfile

    def never(messages, info):
        raise RuntimeError("--selection top answered with the model")

    return FunctionModel(never, profile=ModelProfile(supports_json_schema_output=True,
                                                     default_structured_output_mode="native"))


@contextmanager
def _user_errors():
    """Show our errors (bad folders, bad options) as one red line and exit 2, not a traceback."""
    from rag_runtime.answer import AnswerError
    from rag_runtime.documents import SourceFormatError
    from rag_runtime.index import IndexFormatError

    try:
        yield
    except (IndexFormatError, SourceFormatError, AnswerError, FileNotFoundError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from exc


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console)


@app.command("build-index", cls=renamed(out="--output"))
def build_index_cmd(
    source: Annotated[Path, typer.Argument(help="ETL run folder (chunks.jsonl) or BEIR folder (corpus.jsonl).")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the index to.")],
    dense: Annotated[Literal["flat", "ivf", "hnsw"], typer.Option(help="FAISS index: flat (exact), ivf or hnsw.")] = "flat",
    no_dense: Annotated[bool, typer.Option("--no-dense", help="BM25 only: no embeddings, no FAISS.")] = False,
    embedding_model: Annotated[str | None, typer.Option(help="Sentence-transformers model (default all-MiniLM-L6-v2).")] = None,
    k1: Annotated[float, typer.Option(help="BM25 k1.")] = 1.5,
    b: Annotated[float, typer.Option(help="BM25 b.")] = 0.75,
    stemmer: Annotated[str, typer.Option(help="PyStemmer algorithm, or 'none'.")] = "english",
    stopwords: Annotated[str, typer.Option(help="bm25s stopword list ('en'), or 'none'.")] = "en",
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build from scratch even when -o/--output holds an index "
                                          "with these settings (by default it is updated: only new or changed documents "
                                          "are embedded).")] = False,
) -> None:
    """Index an ETL run folder or a BEIR folder (BM25 + FAISS) into -o/--output (also: `build`).

    An ETL run folder is already an index (``liquid rag search --index RUN``); build one from it
    only for other settings (hnsw, another embedding model).
    """
    from rag_runtime.bm25 import Bm25Params
    from rag_runtime.dense import DenseParams
    from rag_runtime.index import build_index

    with _user_errors():
        if dense not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"--dense must be flat, ivf or hnsw, got {dense!r}")
        bm25_params = Bm25Params(k1=k1, b=b, stemmer=None if stemmer == "none" else stemmer,
                                 stopwords=None if stopwords == "none" else stopwords)
        dense_params = DenseParams(kind=dense, **({"embedding_model": embedding_model} if embedding_model else {}))
        with _progress() as progress:
            index = build_index(source, out, bm25_params=bm25_params, dense_params=dense_params,
                                with_dense=not no_dense, rebuild=rebuild, progress=progress)
    console.print(f"indexed {len(index.store)} documents from {source} ({index.manifest.source_kind}) into {out}")
    if index.last_update is not None:
        u = index.last_update
        console.print(f"updated in place: {u.added} added, {u.changed} changed, {u.removed} removed, "
                      f"{u.unchanged} unchanged; {u.embedded} texts embedded")


app.command("build", cls=renamed(out="--output"), help="The same as build-index.")(build_index_cmd)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The search query.")],
    index: IndexOption,
    k: Annotated[int, typer.Option(min=1, max=1000, help="Number of hits.")] = 10,
    mode: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
    fusion: Annotated[str, typer.Option(help="Hybrid fusion: rrf or weighted.")] = "rrf",
    dense_weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="Weight of the dense list in fusion.")] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print hits as JSON lines.")] = False,
) -> None:
    """Search an index and print the top hits."""
    from rag_runtime.index import RagIndex

    with _user_errors():
        rag = RagIndex.load(index, with_dense=mode != "bm25")
        hits = rag.retriever(mode, fusion=fusion, dense_weight=dense_weight).search(query, k)
    if as_json:
        for h in hits:
            typer.echo(h.model_dump_json())
        return
    table = Table(title=f"{mode} search: {query}")
    for col in ("rank", "id", "score", "text"):
        table.add_column(col)
    for rank, h in enumerate(hits, 1):
        text = f"{h.title}: {h.text}" if h.title else h.text
        table.add_row(str(rank), h.id, f"{h.score:.4f}", text[:100])
    console.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: IndexOption,
    k: Annotated[int, typer.Option(min=1, max=20, help="Chunks to retrieve.")] = 4,
    mode: Annotated[str | None, typer.Option(
        "--mode", help="Retrieval mode: hybrid (default when the index has embeddings), bm25 or dense. (auto, tool "
        "and context are still read as --answer-mode, as before.)")] = None,
    answer_mode: Annotated[str, typer.Option("--answer-mode", help="auto, tool or context.")] = "auto",
    style: StyleOption = "extractive",
    selection: SelectionOption = "top",
    min_similarity: MinSimilarityOption = None,
    min_answer_score: MinAnswerScoreOption = None,
    filter_: Annotated[list[str] | None, typer.Option(
        "--filter", help="Only chunks whose metadata matches FIELD=VALUE (source, tags, categories, tmd); repeatable: "
        "values of one field are alternatives, different fields must all match.")] = None,
    dense_weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="Hybrid: weight of the dense list in RRF.")] = 0.5,
    support: SupportOption = "flag",
    prompt_style: Annotated[str, typer.Option(help="guarded (chunks delimited as data) or plain (the earlier prompt).")] = "guarded",
    allow_embedding_model: AllowModelOption = None,
) -> None:
    """Answer a question from the index with citations, checked against them.

    Default: the best-ranked sentence of the retrieved chunks, no LLM (on SQuAD v2 it was right far more
    often than the offline model's answers: docs/results.md). --selection model lets the LLM choose the
    sentence; --answer-style generative --selection model has it write the answer."""
    from rag_runtime.answer import AnswerAgent
    from rag_runtime.index import DEFAULT_ALLOWED_EMBEDDING_MODELS, RagIndex

    with _user_errors():
        if mode in ("auto", "tool", "context"):  # the old meaning of --mode
            answer_mode, mode = mode, None
        filters = parse_filters(filter_)
        rag = RagIndex.load(index, allowed_embedding_models=[*DEFAULT_ALLOWED_EMBEDDING_MODELS, *(allow_embedding_model or [])])
        if style == "generative" and selection == "top":
            selection = "model"  # a generative answer is written by the model
        if (style == "extractive" or selection == "top") and answer_mode == "auto":
            answer_mode = "context"
        retriever = rag.retriever(mode or ("hybrid" if rag.dense else "bm25"), dense_weight=dense_weight)
        agent = AnswerAgent(retriever, None if selection != "top" else _no_llm(), mode=answer_mode, style=style,
                            support=support, prompt_style=prompt_style, selection=selection,
                            min_answer_score=min_answer_score,
                            **({"min_similarity": min_similarity} if min_similarity is not None else {}))
        with console.status("retrieving and generating..."):
            answer = asyncio.run(agent.ask(question, k=k, filters=filters))
    out = {"answer": answer.answer, "citations": answer.citations, "refused": answer.refused, "style": answer.style}
    if answer.reason:
        out["reason"] = answer.reason
    if answer.support is not None:
        out["support"] = answer.support.model_dump()
    print(json.dumps(out, indent=2))


@app.command()
def serve(
    index: IndexOption,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="RAG_API_KEY", help="Require this key (X-API-Key header or Authorization: Bearer) on every route but /health.")] = None,
    answer_mode: AnswerModeOption = "auto",
    answer_style: AnswerStyleOption = "generative",
    allow_answer_mode: AllowModeOption = None,
    allow_answer_style: AllowStyleOption = None,
    min_similarity: MinSimilarityOption = None,
    support: SupportOption = "flag",
    batch_queries: Annotated[bool, typer.Option(help="Encode concurrent requests' queries in one batch.")] = False,
    torch_threads: Annotated[int | None, typer.Option(min=1, help="torch intra-op threads (default: torch's).")] = None,
    max_concurrent_asks: Annotated[int, typer.Option(min=1, help="/ask calls answered at once; more wait, then get 503.")] = 4,
    ask_queue_timeout: Annotated[float, typer.Option(min=0, help="Seconds an /ask over the limit waits for a slot before its 503.")] = 2.0,
    request_timeout: Annotated[float, typer.Option(min=0, help="Seconds before any request gets 504 (0: no limit).")] = 120.0,
    rate_limit: Annotated[float, typer.Option(min=0, help="Requests/s per API key (token bucket; 0: off). Over it: 429.")] = 0.0,
    rate_burst: Annotated[int, typer.Option(min=1, help="Token-bucket size per API key.")] = 20,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="An origin allowed to call the API from a browser (CORS), e.g. https://app.example.org; repeatable. "
             "Default: none (no CORS headers).")] = None,
    allow_embedding_model: AllowModelOption = None,
    mcp: Annotated[bool, typer.Option("--mcp/--no-mcp", help="Serve the MCP server at /mcp (streamable HTTP).")] = True,
    mcp_allowed_host: Annotated[list[str] | None, typer.Option(
        help="A Host name /mcp accepts besides localhost, 127.0.0.1, ::1 and the bind address (e.g. the name behind "
             "a proxy; 'name:*' any port); repeatable.")] = None,
    reload_interval: Annotated[float, typer.Option(
        min=0, help="Seconds between checks of the index folder's manifest.json; a changed one is loaded and served "
                    "without a restart (0: no watcher). With --api-key, POST /admin/reload reloads at once.")] = 5.0,
    reload_low_memory: Annotated[bool, typer.Option(
        "--reload-low-memory", help="On reload, drop the old index before loading the new one (requests meanwhile "
        "get 503 + Retry-After) instead of holding both in memory for the load.")] = False,
) -> None:
    """Serve /search, /ask, /health, /metrics, the MCP server at /mcp and the chat API at /v1 over HTTP."""
    import uvicorn

    from rag_runtime.index import DEFAULT_ALLOWED_EMBEDDING_MODELS
    from rag_runtime.service import create_app
    from rag_runtime.service_limits import ServiceLimits

    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    with _user_errors(), console.status(f"loading index {index} and the query encoder..."):
        limits = ServiceLimits(max_concurrent_asks=max_concurrent_asks, ask_queue_timeout_s=ask_queue_timeout,
                               request_timeout_s=request_timeout or None, rate_per_s=rate_limit or None, burst=rate_burst)
        api = create_app(index, api_key=api_key, answer_mode=answer_mode, batch_queries=batch_queries,
                         **({"min_similarity": min_similarity} if min_similarity is not None else {}),
                         answer_style=answer_style, support=support, limits=limits, cors_origins=cors_origin,
                         allowed_embedding_models=[*DEFAULT_ALLOWED_EMBEDDING_MODELS, *(allow_embedding_model or [])],
                         allowed_answer_modes=allow_answer_mode, allowed_answer_styles=allow_answer_style,
                         mcp=mcp, mcp_allowed_hosts=mcp_allowed_host, reload_interval_s=reload_interval,
                         reload_low_memory=reload_low_memory)
    uvicorn.run(api, host=host, port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)


@app.command("mcp")
def mcp_cmd(
    index: IndexOption,
    answer_mode: AnswerModeOption = "auto",
    answer_style: AnswerStyleOption = "generative",
    allow_answer_mode: AllowModeOption = None,
    allow_answer_style: AllowStyleOption = None,
    support: SupportOption = "flag",
    answer_timeout: Annotated[float, typer.Option(min=0, help="Seconds an ask may take before its tool error (0: no limit).")] = 120.0,
    allow_embedding_model: AllowModelOption = None,
) -> None:
    """Serve the index to an MCP client over stdio (stdout: protocol only; logs on stderr)."""
    from rag_runtime.index import DEFAULT_ALLOWED_EMBEDDING_MODELS
    from rag_runtime.mcp_stdio import run_stdio

    with _user_errors():
        run_stdio(index, answer_mode=answer_mode, answer_style=answer_style, allowed_modes=allow_answer_mode,
                  allowed_styles=allow_answer_style, support=support, answer_timeout_s=answer_timeout or None,
                  allowed_embedding_models=[*DEFAULT_ALLOWED_EMBEDDING_MODELS, *(allow_embedding_model or [])])


def main() -> None:
    app()


def _add_review_commands() -> None:
    from rag_runtime.pages.review_cli import review_app

    app.add_typer(review_app, name="review")


_add_review_commands()
