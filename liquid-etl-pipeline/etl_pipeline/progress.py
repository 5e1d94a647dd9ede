"""Rich progress bars and the end-of-run summary table for the CLI."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from etl_pipeline.graph import DocOutcome, Events
from etl_pipeline.loaders import SourceItem


class RichEvents(Events):
    """Three bars: documents, chunks (the total grows as documents are chunked) and LLM calls."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._docs = self.progress.add_task("documents", total=None, note="")
        self._chunks = self.progress.add_task("chunks", total=0, note="")
        self._calls = self.progress.add_task("LLM calls", total=None, note="")
        self._tokens = 0
        self._failed = 0

    def __enter__(self) -> RichEvents:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def set_documents(self, total: int, skipped: int) -> None:
        self.progress.update(self._docs, total=total, completed=skipped, note=f"{skipped} unchanged" if skipped else "")

    def chunks_found(self, doc: SourceItem, n: int) -> None:
        task = self.progress.tasks[self._chunks]
        self.progress.update(self._chunks, total=(task.total or 0) + n)

    def chunk_done(self, doc: SourceItem) -> None:
        self.progress.advance(self._chunks)

    def llm_call(self, stage: str, output_tokens: int) -> None:
        self._tokens += output_tokens
        self.progress.update(self._calls, advance=1, note=f"{self._tokens} tokens out")

    def document_done(self, outcome: DocOutcome) -> None:
        if outcome.status != "done":
            self._failed += 1
        self.progress.update(self._docs, advance=1, note=f"{self._failed} failed" if self._failed else "")


def summary_table(report: dict[str, Any]) -> Table:
    """Counts per stage, documents and the first errors, as one table."""
    table = Table(title="ETL run", show_lines=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("detail")
    docs = report["documents"]
    run = report["this_run"]
    table.add_row("documents", str(docs["selected"]), f"{docs['done']} done, {docs['failed']} failed, {run['skipped_unchanged']} unchanged")
    counts = report["counts"]
    for key in ("chunks", "qa_generated", "qa_duplicates_removed", "qa_pairs", "qa_valid", "ft_samples", "index_vectors"):
        table.add_row(key.replace("_", " "), str(counts[key]), "")
    for name, st in report["stages"].items():
        if name == "load":
            continue
        table.add_row(
            f"stage {name}",
            str(st["calls"]),
            f"{st['llm']} llm, {st['fallback']} fallback, {st['failed']} failed, {st['output_tokens']} tokens out",
        )
    cap = report["run"]["config"].get("max_chunks_per_doc")
    truncated = [w for w in report.get("warnings", []) if "document truncated" in w.get("warning", "")]
    if cap is not None or truncated:
        detail = f"max_chunks_per_doc={cap}" if cap is not None else "see warnings"
        table.add_row("[yellow]truncated", str(len(truncated)), f"documents cut short ({detail})")
    changed = report.get("settings_changed")
    if changed:
        table.add_row("[yellow]redone", str(changed["documents"]), "settings changed: " + ", ".join(changed["settings"])[:100])
    for rep in report.get("repaired_shards", []):
        table.add_row("[yellow]repaired", "shard", f"{rep['source']}: {rep['reason']} (moved to {rep['moved_to']})"[:120])
    skipped = report.get("skipped_sources", [])
    if skipped:
        table.add_row("skipped", str(len(skipped)), "; ".join(f"{s['source']}: {s['reason']}" for s in skipped)[:120])
    rejected = (report.get("validation") or {}).get("rejected_by_check")
    if rejected:
        table.add_row("rejected", str(counts["qa_invalid"]), ", ".join(f"{k} {v}" for k, v in rejected.items())[:120])
    trust = report.get("trust")
    if trust:
        label = "trust" if trust["verified"] else "[yellow]unverified"
        mean = (trust.get("precision") or {}).get("mean")
        value = f"{mean:.2f}" if isinstance(mean, int | float) and mean == mean else "unmeasured"
        table.add_row(label, value, trust["message"][:160])
    table.add_row("throughput", f"{run['chunks_per_minute']:.1f}", "chunks/min this run")
    table.add_row("peak memory", f"{report['memory']['peak_rss_bytes'] / 2**20:.0f} MiB", "")
    for err in report["errors"][:8]:
        table.add_row("[red]error", err.get("stage", ""), f"{err['source']}: {err['error']}"[:120])
    if len(report["errors"]) > 8:
        table.add_row("[red]errors", str(len(report["errors"])), "see report.json")
    return table
