"""Retrieval evaluation data: a BEIR folder, or an ETL run turned into queries and judgments.

* **BEIR folder** (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``): read and checked by
  ``liquid_shared.data.load_beir``; the documents come from ``rag_runtime.load_beir_corpus``.
* **ETL run folder** (``chunks.jsonl``, ``qa_pairs.jsonl``): the documents are the chunks (with their
  metadata, via ``rag_runtime.load_etl_run``); every generated question is a query whose one
  relevant document (grade 1) is the chunk it was generated from.

With no dataset, the default ETL run (``data/runs/samples-offline``, what ``make run`` writes) is
used, and made first when it does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape

log = logging.getLogger(__name__)

QuestionSet = Literal["all", "valid"]


def shared_data_file(relative: str | Path) -> Path | None:
    """``relative`` under the shared evaluation data folder (``LIQUID_DATA_DIR``), or None when unset."""
    from liquid_shared.config import get_settings

    root = get_settings().data_dir
    return Path(root) / relative if root else None


class DatasetError(ValueError):
    """The dataset path cannot be used; the message names the path and what is wrong."""


@dataclass
class RetrievalDataset:
    name: str
    kind: Literal["beir", "etl"]
    source: Path
    docs: list[Any]  # rag_runtime.IndexedDoc
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)
    synthetic_labels: bool = False  # judgments made by the pipeline (an ETL run, or a BEIR export of one)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source": str(self.source), "documents": len(self.docs),
                "queries": len(self.queries), "judgments": sum(len(j) for j in self.qrels.values())}


def dataset_kind(path: Path) -> Literal["beir", "etl"]:
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist (give a BEIR folder or an ETL run folder)")
    if not path.is_dir():
        raise DatasetError(f"dataset {path} is not a folder (give a BEIR folder or an ETL run folder)")
    if (path / "chunks.jsonl").is_file():
        return "etl"
    if (path / "corpus.jsonl").is_file():
        return "beir"
    raise DatasetError(f"dataset {path} is neither an ETL run folder (no chunks.jsonl) nor a BEIR folder "
                       "(no corpus.jsonl)")


def load_beir_dataset(folder: Path, split: str) -> RetrievalDataset:
    from liquid_shared.data import load_beir
    from rag_runtime import load_beir_corpus

    data = load_beir(folder, split)
    docs = load_beir_corpus(folder)
    synthetic = beir_export_is_synthetic(folder)
    return RetrievalDataset(name=f"{folder.name}/{split}", kind="beir", source=folder, docs=docs,
                            queries=dict(data.queries), qrels=dict(data.qrels), synthetic_labels=synthetic,
                            notes=["a BEIR export of an ETL run: its qrels are synthetic (export.json)"] if synthetic else [])


def beir_export_is_synthetic(folder: Path) -> bool:
    """True for a BEIR folder written by ``etl_pipeline.export`` (its ``export.json`` says the labels are synthetic)."""
    import json

    try:
        return json.loads((folder / "export.json").read_text(encoding="utf-8")).get("labels") == "synthetic"
    except (OSError, ValueError, AttributeError):
        return False


def etl_question_judgments(run: Path, questions: QuestionSet = "all") -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries (qa_id -> question) and qrels (qa_id -> {source chunk_id: 1}) of an ETL run."""
    from liquid_shared.schemas import QAPair, ValidationResult, read_jsonl

    qa_path = run / "qa_pairs.jsonl"
    if not qa_path.is_file():
        raise DatasetError(f"ETL run {run} has no qa_pairs.jsonl; run the ETL with the 'qa' stage")
    pairs = list(read_jsonl(qa_path, QAPair))
    if questions == "valid":
        val_path = run / "validation.jsonl"
        if not val_path.is_file():
            raise DatasetError(f"ETL run {run} has no validation.jsonl, so questions='valid' cannot be used")
        valid = {v.qa_id for v in read_jsonl(val_path, ValidationResult) if v.valid}
        pairs = [p for p in pairs if p.qa_id in valid]
    if not pairs:
        which = "valid QA pairs" if questions == "valid" else "QA pairs"
        raise DatasetError(f"ETL run {run} has no {which} to use as queries ({qa_path})")
    queries = {p.qa_id: p.question for p in pairs}
    qrels = {p.qa_id: {p.chunk_id: 1} for p in pairs}
    return queries, qrels


def load_etl_dataset(run: Path, questions: QuestionSet = "all") -> RetrievalDataset:
    from rag_runtime import load_etl_run

    docs = load_etl_run(run)
    queries, qrels = etl_question_judgments(run, questions)
    known = {d.id for d in docs}
    orphans = [q for q, judged in qrels.items() if not set(judged) & known]
    notes = []
    if orphans:
        for q in orphans:
            del qrels[q], queries[q]
        notes.append(f"{len(orphans)} questions dropped: their source chunk is not in chunks.jsonl")
        if not qrels:
            raise DatasetError(f"ETL run {run}: no question's source chunk is in chunks.jsonl")
    return RetrievalDataset(name=f"etl:{run.name}", kind="etl", source=run, docs=docs, queries=queries,
                            qrels=qrels, notes=notes, synthetic_labels=True)


def load_retrieval_dataset(path: Path, split: str = "test", questions: QuestionSet = "all") -> RetrievalDataset:
    path = Path(path)
    kind = dataset_kind(path)
    return load_beir_dataset(path, split) if kind == "beir" else load_etl_dataset(path, questions)


# The default ETL run -------------------------------------------------------------------------------


def default_etl_run_dir() -> Path:
    """Where ``python -m etl_pipeline.run_etl`` (and ``make run``) writes its default run."""
    from etl_pipeline import EtlConfig

    return EtlConfig().output_dir


def is_finished_etl_run(folder: Path) -> bool:
    return (folder / "chunks.jsonl").is_file() and (folder / "qa_pairs.jsonl").is_file() and (folder / "report.json").is_file()


def ensure_default_etl_run(console: Console, settings: dict[str, Any] | None = None) -> Path:
    """The default ETL run folder, made first (ETL defaults plus ``settings``) if it is missing."""
    folder = default_etl_run_dir()
    if is_finished_etl_run(folder):
        return folder
    return run_etl_into(folder, console, **(settings or {}))


def run_etl_into(folder: Path, console: Console, **fields: Any) -> Path:
    """Run the ETL with default settings plus ``fields`` into ``folder`` (progress bars on stderr)."""
    from etl_pipeline import EXIT_FATAL, EtlConfig, RichEvents
    from etl_pipeline import run as run_etl

    try:
        config = EtlConfig(**{**fields, "output_dir": folder})
    except ValueError as exc:
        raise DatasetError(f"cannot make the default ETL run: invalid ETL settings {fields}: {exc}") from None
    console.print(escape(f"no ETL run at {folder}: running the ETL on {config.input_dir} first (profile {config.profile})"))
    with RichEvents(console) as events:  # the ETL command line's progress bars
        result = run_etl(config, events=events, on_documents=events.set_documents, track=False)
    if result.exit_code == EXIT_FATAL or not is_finished_etl_run(folder):
        raise DatasetError(f"the ETL could not make the default run in {folder}: {result.message or result.status}")
    return folder
