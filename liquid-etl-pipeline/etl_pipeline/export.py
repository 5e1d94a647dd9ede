"""Export a run folder for other tools: ``python -m etl_pipeline.export RUN --format FORMAT [-o OUT]``.

Formats (each a folder with its data, a ``README.md`` card and ``export.json``, both saying the
labels are synthetic and which run they came from):

* ``beir``: ``corpus.jsonl`` (every chunk), ``queries.jsonl`` (the questions), ``qrels/test.tsv``
  (each question's source chunk, grade 1); loads with ``liquid_shared.data.load_beir`` and runs in
  ``run_experiments.py --experiments rag_quality --dataset OUT``.
* ``dpo``: ``train.jsonl``/``train.parquet`` of TRL's conversational preference format, ``prompt``
  (system + passage and question, the fine-tuning data's prompt), ``chosen``, ``rejected``. A row
  is made where one prompt has a kept answer and a rejected one: two pairs of one chunk and
  question, one valid and one not (``same_prompt``), or an extractive pair rejected only because
  the reader's span disagreed with the intended one (``roundtrip``: chosen = the intended span,
  rejected = the reader's answer). A run may have none; the export then has 0 rows and says so.
* ``st-pairs``: ``train.jsonl``/``train.parquet`` with columns ``anchor`` (question) and
  ``positive`` (its chunk's text), for sentence-transformers (MultipleNegativesRankingLoss).
* ``ragas``: ``testset.jsonl``/``testset.parquet`` with ``user_input``, ``reference`` (the kept
  answer) and ``reference_contexts`` (the chunk's text).

``--questions valid`` (default) uses the QA pairs the validation kept, ``all`` every generated one.
The output folder is written whole and swapped in (``liquid_shared.atomic.atomic_dir``); an existing
folder is replaced only when it is an earlier export (it has ``export.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from etl_pipeline.dataset_card import SYNTHETIC_NOTE, trust_line
from etl_pipeline.run_tables import NotARunError, read_report, require_run_folder
from liquid_shared.atomic import atomic_dir
from liquid_shared.cli_options import EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from liquid_shared.schemas import Chunk, QAPair, ValidationResult, read_jsonl

MANIFEST = "export.json"


class ExportFormat(str, Enum):
    beir = "beir"
    dpo = "dpo"
    st_pairs = "st-pairs"
    ragas = "ragas"


class QuestionSet(str, Enum):
    valid = "valid"
    all = "all"


class ExportError(ValueError):
    """The run cannot be exported as asked (nothing to export, an output folder that is not an export)."""


@dataclass
class RunRecords:
    """What the exports read from a run folder."""

    run_dir: Path
    chunks: dict[str, Chunk]
    pairs: list[QAPair]
    verdicts: dict[str, ValidationResult]
    report: dict[str, Any]

    def kept(self, pair: QAPair) -> bool:
        verdict = self.verdicts.get(pair.qa_id)
        return verdict is not None and verdict.valid

    def target(self, pair: QAPair) -> str:
        """The answer the fine-tuning data trains on: the validation's span where it set one."""
        verdict = self.verdicts.get(pair.qa_id)
        return verdict.answer_span if verdict is not None and verdict.answer_span else pair.answer


def load_run(run_dir: Path) -> RunRecords:
    run_dir = require_run_folder(Path(run_dir))
    chunks = {c.chunk_id: c for c in read_jsonl(run_dir / "chunks.jsonl", Chunk)}
    if not chunks:
        raise NotARunError(f"{run_dir} is an empty run: chunks.jsonl has no chunks")
    qa_path = run_dir / "qa_pairs.jsonl"
    if not qa_path.is_file():
        raise NotARunError(f"{run_dir} has no qa_pairs.jsonl (run the ETL with the 'qa' stage)")
    pairs = list(read_jsonl(qa_path, QAPair))
    if not pairs:
        raise NotARunError(f"{run_dir} has no QA pairs ({qa_path} is empty)")
    val_path = run_dir / "validation.jsonl"
    verdicts = {v.qa_id: v for v in read_jsonl(val_path, ValidationResult)} if val_path.is_file() else {}
    return RunRecords(run_dir, chunks, pairs, verdicts, read_report(run_dir))


@dataclass
class Export:
    """One export's rows and notes, before it is written."""

    files: dict[str, list[dict[str, Any]]]
    rows: int
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parquet: str | None = None  # the file also written as Parquet (and named in the card's configs)


def _questions(run: RunRecords, questions: QuestionSet) -> tuple[list[QAPair], list[str]]:
    """The pairs to export, and one line per pair skipped because its chunk is not in the run."""
    pairs = [p for p in run.pairs if questions is QuestionSet.all or run.kept(p)]
    if not pairs:
        which = "valid QA pairs" if questions is QuestionSet.valid else "QA pairs"
        hint = " (try --questions all)" if questions is QuestionSet.valid else ""
        raise ExportError(f"{run.run_dir} has no {which} to export{hint}")
    skipped = [f"QA pair {p.qa_id}: its chunk {p.chunk_id} is not in chunks.jsonl" for p in pairs if p.chunk_id not in run.chunks]
    return [p for p in pairs if p.chunk_id in run.chunks], skipped


def beir_export(run: RunRecords, questions: QuestionSet) -> Export:
    pairs, skipped = _questions(run, questions)
    corpus = [{"_id": c.chunk_id, "title": str(c.metadata.get("title") or ""), "text": c.text} for c in run.chunks.values()]
    queries = [{"_id": p.qa_id, "text": p.question} for p in pairs]
    qrels = [{"query-id": p.qa_id, "corpus-id": p.chunk_id, "score": 1} for p in pairs]
    return Export({"corpus.jsonl": corpus, "queries.jsonl": queries, "qrels/test.tsv": qrels}, len(queries), skipped)


def st_pairs_export(run: RunRecords, questions: QuestionSet) -> Export:
    pairs, skipped = _questions(run, questions)
    rows, seen = [], set()
    for p in pairs:
        key = (p.question.strip().lower(), p.chunk_id)
        if key not in seen:  # a repeated (question, chunk) would be its own in-batch negative
            seen.add(key)
            rows.append({"anchor": p.question, "positive": run.chunks[p.chunk_id].text})
    return Export({"train.jsonl": rows}, len(rows), skipped, parquet="train.jsonl")


def ragas_export(run: RunRecords, questions: QuestionSet) -> Export:
    pairs, skipped = _questions(run, questions)
    rows = [{"user_input": p.question, "reference": run.target(p), "reference_contexts": [run.chunks[p.chunk_id].text]}
            for p in pairs]
    return Export({"testset.jsonl": rows}, len(rows), skipped, parquet="testset.jsonl")


def _prompt(chunk: Chunk, question: str) -> list[dict[str, str]]:
    from etl_pipeline.assemble import FT_SYSTEM_PROMPT, ft_user_message

    return [{"role": "system", "content": FT_SYSTEM_PROMPT}, {"role": "user", "content": ft_user_message(chunk, question)}]


def _norm(text: str) -> str:
    from liquid_shared.metrics import normalize_answer

    return normalize_answer(text)


def preference_rows(run: RunRecords) -> list[dict[str, Any]]:
    """The DPO rows of a run (see the module docstring for the two sources)."""
    from etl_pipeline.extractive import parse_roundtrip_reason

    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[QAPair]] = {}
    for p in run.pairs:
        if p.chunk_id in run.chunks:
            groups.setdefault((p.chunk_id, _norm(p.question)), []).append(p)

    def add(chunk: Chunk, question: str, chosen: str, rejected: str, source: str, qa_id: str) -> None:
        if not chosen.strip() or not rejected.strip() or _norm(chosen) == _norm(rejected):
            return
        rows.append({"prompt": _prompt(chunk, question), "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}], "source": source, "qa_id": qa_id,
                     "chunk_id": chunk.chunk_id})

    for (chunk_id, _), group in groups.items():
        kept = [p for p in group if run.kept(p)]
        if not kept:
            continue
        for p in group:
            if p.qa_id in run.verdicts and not run.kept(p):
                add(run.chunks[chunk_id], kept[0].question, run.target(kept[0]), p.answer, "same_prompt", p.qa_id)
    for p in run.pairs:
        verdict = run.verdicts.get(p.qa_id)
        if p.chunk_id not in run.chunks or verdict is None or verdict.valid or len(verdict.reasons) != 1:
            continue
        parsed = parse_roundtrip_reason(verdict.reasons[0])
        if parsed is not None:
            reader, intended = parsed
            add(run.chunks[p.chunk_id], p.question, intended, reader, "roundtrip", p.qa_id)
    return rows


def dpo_export(run: RunRecords, questions: QuestionSet) -> Export:
    rows = preference_rows(run)
    notes = [] if rows else [
        f"{run.run_dir} has no prompt with both a kept and a rejected answer: 0 preference rows. Such rows come from "
        "an extractive run (--qa-mode extractive) whose reader disagreed with an intended span, or from two pairs of "
        "one chunk and question of which the validation kept one."]
    return Export({"train.jsonl": rows}, len(rows), notes=notes, parquet="train.jsonl")


BUILDERS = {ExportFormat.beir: beir_export, ExportFormat.dpo: dpo_export, ExportFormat.st_pairs: st_pairs_export,
            ExportFormat.ragas: ragas_export}

WHAT = {
    ExportFormat.beir: "a BEIR retrieval set: the run's chunks as the corpus, its questions as queries, and each "
                       "question's source chunk as its one relevant document (qrels/test.tsv, grade 1)",
    ExportFormat.dpo: "preference pairs (TRL's conversational prompt/chosen/rejected format): one prompt, a kept "
                      "answer and a rejected one. `source` says where a row comes from: `same_prompt` (two pairs of "
                      "one chunk and question; the validation kept `chosen`'s), `roundtrip` (an extractive pair: "
                      "`chosen` is the span the question was written for, `rejected` the reader's disagreeing span; "
                      "the disagreement is why the pair left the fine-tuning data, and nobody checked which is right)",
    ExportFormat.st_pairs: "sentence-transformers training pairs: `anchor` = a question, `positive` = the text of the "
                           "chunk it was generated from (for MultipleNegativesRankingLoss)",
    ExportFormat.ragas: "a Ragas test set: `user_input` = the question, `reference` = the kept answer, "
                        "`reference_contexts` = the source chunk's text",
}


def default_output(run_dir: Path, fmt: ExportFormat) -> Path:
    run_dir = Path(run_dir).resolve()
    return run_dir.parent / f"{run_dir.name}-{fmt.value}-synthetic"


def _write_file(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        if name.endswith(".tsv"):  # BEIR qrels: header, then query-id, corpus-id, score
            fh.write("query-id\tcorpus-id\tscore\n")
            fh.writelines(f"{r['query-id']}\t{r['corpus-id']}\t{int(r['score'])}\n" for r in rows)
        else:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _write_parquet(folder: Path, name: str, rows: list[dict[str, Any]], fmt: ExportFormat) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schemas = {
        ExportFormat.dpo: pa.schema([("prompt", messages), ("chosen", messages), ("rejected", messages),
                                     ("source", pa.string()), ("qa_id", pa.string()), ("chunk_id", pa.string())]),
        ExportFormat.st_pairs: pa.schema([("anchor", pa.string()), ("positive", pa.string())]),
        ExportFormat.ragas: pa.schema([("user_input", pa.string()), ("reference", pa.string()),
                                       ("reference_contexts", pa.list_(pa.string()))]),
    }
    target = Path(name).with_suffix(".parquet").name
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas[fmt]), folder / target)
    return target


def export_card(run: RunRecords, fmt: ExportFormat, export: Export, questions: QuestionSet, parquet: str | None) -> str:
    head = ""
    if parquet is not None:
        head = ("---\ntags:\n- synthetic\n- liquid-stack\nconfigs:\n- config_name: default\n  data_files:\n"
                f"  - split: train\n    path: {parquet}\n---\n\n")
    fingerprint = run.report.get("run", {}).get("fingerprint") if isinstance(run.report.get("run"), dict) else None
    lines = [f"# `{run.run_dir.name}` as {fmt.value} (synthetic labels)", "",
             f"{export.rows} rows: {WHAT[fmt]}.", "",
             f"Exported from the ETL run folder `{run.run_dir}`" + (f" (settings fingerprint `{fingerprint}`)" if fingerprint else "")
             + f" with `python -m etl_pipeline.export --format {fmt.value} --questions {questions.value}`.", "",
             "## Labels are synthetic", "", SYNTHETIC_NOTE, "", "## How far to trust the QA pairs", "", trust_line(run.report), ""]
    lines += [f"- {n}" for n in export.notes + export.skipped]
    return head + "\n".join(lines).rstrip() + "\n"


def write_export(run: RunRecords, fmt: ExportFormat, output: Path, questions: QuestionSet) -> Export:
    """Build and write one export into ``output`` (replaced whole); returns what was written."""
    output = Path(output)
    if output.resolve() == run.run_dir.resolve():
        raise ExportError(f"output {output} is the run folder itself; choose another -o/--output")
    if output.exists() and not (output / MANIFEST).is_file():
        raise ExportError(f"output {output} exists and is not an earlier export (no {MANIFEST}); choose another "
                          "-o/--output or remove it")
    export = BUILDERS[fmt](run, questions)
    with atomic_dir(output) as tmp:
        for name, rows in export.files.items():
            _write_file(tmp, name, rows)
        parquet = None
        if export.parquet and export.rows:  # datasets cannot build a split of no rows: no Parquet, no config
            parquet = _write_parquet(tmp, export.parquet, export.files[export.parquet], fmt)
        (tmp / "README.md").write_text(export_card(run, fmt, export, questions, parquet), encoding="utf-8")
        manifest = {"format": fmt.value, "labels": "synthetic", "run": str(run.run_dir.resolve()),
                    "run_fingerprint": (run.report.get("run") or {}).get("fingerprint"), "questions": questions.value,
                    "rows": export.rows, "files": sorted([*export.files, *([parquet] if parquet else [])]),
                    "skipped": export.skipped, "notes": export.notes, "trust": (run.report.get("trust") or {}).get("message")}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return export


app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(epilog=EXIT_CODES + " Exit 3 here: written, but some QA pairs were skipped (their chunk is missing; each is "
             "named).", help=(
    "Export an ETL run folder for other tools: a BEIR folder, DPO preference pairs, sentence-transformers pairs or a "
    "Ragas test set. Every export holds a README.md and export.json saying its labels are synthetic and which run "
    "they came from (see docs/etl_pipeline.md)."))
def main(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="The ETL run folder (it has chunks.jsonl and qa_pairs.jsonl).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="beir, dpo, st-pairs or ragas.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder to write (default: <RUN>-<format>-synthetic "
                                                "beside the run folder); an earlier export there is replaced.")] = None,
    questions: Annotated[QuestionSet, typer.Option(help="QA pairs to use for beir, st-pairs and ragas: 'valid' (those the "
                                                   "validation kept) or 'all' generated ones.")] = QuestionSet.valid,
) -> None:
    try:
        run = load_run(run_dir)
    except (NotARunError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    target = output or default_output(run_dir, fmt)
    try:
        export = write_export(run, fmt, target, questions)
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:
        typer.echo(f"failed: could not write {target}: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for line in export.notes + export.skipped:
        typer.echo(line, err=True)
    typer.echo(f"{fmt.value}: {export.rows} rows from {run.run_dir} -> {target} (labels are synthetic)")
    raise typer.Exit(EXIT_PARTIAL if export.skipped else EXIT_OK)


if __name__ == "__main__":
    app(prog_name="python -m etl_pipeline.export")
