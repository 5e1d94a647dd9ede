"""A run folder as a Hugging Face dataset: ``parquet/<table>.parquet`` and a card, ``README.md``.

At the end of every run (``runner``, ``ray_runner``) the run's tables (``run_tables``: chunks,
metadata, summaries, qa_pairs, validation, ft, as many as the run has) are written as Parquet,
one fixed schema per table, each file atomically (``liquid_shared.atomic``). ``README.md`` is a
dataset card whose YAML front matter names one config per table, in the syntax of ``datasets``'
``MetadataConfigs`` (``configs: - config_name: chunks, data_files: [{split: train, path: ...}]``;
``chunks`` is the default), so::

    datasets.load_dataset("data/runs/samples-offline", "qa_pairs")

loads a table with no loading script. The card says that the question-to-chunk labels are
synthetic (made by the pipeline, not by people) and carries the run's trust statement
(``trust``). A failure here never fails the run: ``write_dataset`` returns what it wrote and
what went wrong, and the runner puts that into ``report.json`` under ``dataset``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from etl_pipeline.run_tables import SCHEMAS, TableSource, available_sources, read_report, read_table
from liquid_shared.atomic import atomic_path, remove_temporaries, write_text_atomic

log = logging.getLogger(__name__)

PARQUET_DIR = "parquet"
CARD_NAME = "README.md"
DEFAULT_CONFIG = "chunks"

SYNTHETIC_NOTE = (
    "The question-answer pairs, the question-to-chunk labels (each question's one relevant chunk is the chunk it was "
    "generated from) and the validation verdicts are synthetic: a small local LLM and the pipeline's own checks made "
    "them, not people. Use them for training or as a rough retrieval check; do not report metrics on them as if they "
    "were human judgments."
)


def write_parquet(run_dir: Path, source: TableSource) -> int:
    """Write one table as ``parquet/<name>.parquet`` (atomically); returns its row count."""
    import pyarrow.parquet as pq

    table = read_table(run_dir, source)
    with atomic_path(Path(run_dir) / PARQUET_DIR / f"{source.name}.parquet") as tmp:
        pq.write_table(table, tmp)
    return table.num_rows


def write_dataset(run_dir: Path, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the Parquet tables and the card of a run folder; never raises.

    Returns ``{"ok", "card", "tables": {name: rows}, "errors": [...]}``: ``ok`` is False when a
    table or the card could not be written (each error names the table and the reason).
    """
    run_dir = Path(run_dir)
    report = report if report is not None else read_report(run_dir)
    remove_temporaries(run_dir / PARQUET_DIR)  # what a killed earlier write left (the caller holds the run's lock)
    tables: dict[str, int] = {}
    errors: list[str] = []
    written: list[TableSource] = []
    empty: list[str] = []
    for source in available_sources(run_dir):
        try:
            n = write_parquet(run_dir, source)
            if n == 0:  # datasets cannot build a split of no rows: such a table gets no config
                (Path(run_dir) / PARQUET_DIR / f"{source.name}.parquet").unlink(missing_ok=True)
                empty.append(source.name)
                continue
            tables[source.name] = n
            written.append(source)
        except Exception as exc:  # one table's failure leaves the others (and the run) intact
            log.warning("dataset table %s of %s not written: %s", source.name, run_dir, exc)
            errors.append(f"{source.name} ({source.path}): {type(exc).__name__}: {exc}")
    card = None
    if written:
        try:
            write_text_atomic(run_dir / CARD_NAME, dataset_card(run_dir, report, written, tables, empty))
            card = CARD_NAME
        except Exception as exc:
            errors.append(f"{CARD_NAME}: {type(exc).__name__}: {exc}")
    elif not errors:
        errors.append(f"no table written: {run_dir} has none of the record files (chunks.jsonl, qa_pairs.jsonl, ...)")
    return {"ok": not errors, "card": card, "parquet_dir": PARQUET_DIR, "tables": tables, "empty_tables": empty,
            "errors": errors}


def _yaml_front_matter(names: list[str]) -> str:
    import yaml

    default = DEFAULT_CONFIG if DEFAULT_CONFIG in names else names[0]
    configs = []
    for name in names:
        config: dict[str, Any] = {"config_name": name}
        if name == default:
            config["default"] = True
        config["data_files"] = [{"split": "train", "path": f"{PARQUET_DIR}/{name}.parquet"}]
        configs.append(config)
    meta = {"pretty_name": "Liquid stack ETL run", "tags": ["synthetic", "liquid-stack", "etl"], "configs": configs}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def trust_line(report: dict[str, Any]) -> str:
    """The run's statement on how far to trust its kept QA pairs (or that the report has none)."""
    trust = report.get("trust")
    if not isinstance(trust, dict) or not trust.get("message"):
        return "The run report has no trust statement (kept-pair precision unknown)."
    return ("**Verified**: " if trust.get("verified") else "**Unverified**: ") + str(trust["message"]) + "."


def dataset_card(run_dir: Path, report: dict[str, Any], written: list[TableSource], rows: dict[str, int],
                 empty: list[str] = ()) -> str:
    """The text of ``README.md``: front matter, what each table holds, provenance, trust."""
    run = report.get("run", {}) if isinstance(report.get("run"), dict) else {}
    config = run.get("config", {}) if isinstance(run.get("config"), dict) else {}
    names = [s.name for s in written]
    lines = [
        _yaml_front_matter(names),
        f"# ETL run `{Path(run_dir).name}`", "",
        "Made by the Liquid stack's ETL (`etl_pipeline`) from a folder of documents. Each table below is one "
        "config of this dataset, in `parquet/` with one fixed schema (the JSONL files beside it hold the same "
        "records):", "",
        "```python", "import datasets", f'ds = datasets.load_dataset("{Path(run_dir)}", "qa_pairs")', "```", "",
        "| config | rows | source file | what it holds |", "|---|---:|---|---|",
    ]
    lines += [f"| `{s.name}` | {rows.get(s.name, 0)} | `{s.path}` | {s.description} |" for s in written]
    if empty:
        lines += ["", "No rows, so no config: " + ", ".join(f"`{n}`" for n in empty) + "."]
    lines += ["", "Columns:", ""]
    lines += [f"- `{s.name}`: " + ", ".join(f"`{f.name}`" for f in SCHEMAS[s.name]) for s in written]
    lines += ["", "## Labels are synthetic", "", SYNTHETIC_NOTE, "", "## How far to trust the QA pairs", "",
              trust_line(report), "", "## Provenance", ""]
    provenance = {
        "input folder": config.get("input_dir"), "model profile": config.get("profile"),
        "QA mode": config.get("qa_mode"), "validation profile": config.get("validation_profile"),
        "settings fingerprint": run.get("fingerprint"), "finished": run.get("finished_at"), "status": run.get("status"),
    }
    lines += [f"- {k}: `{v}`" for k, v in provenance.items() if v is not None]
    lines += ["", "Exports for other tools (BEIR, DPO, sentence-transformers pairs, Ragas): "
              "`python -m etl_pipeline.export RUN --format beir|dpo|st-pairs|ragas` (docs/etl_pipeline.md).", ""]
    return "\n".join(lines)


def attach_dataset(run_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """``write_dataset`` for a runner: the outcome goes into ``report["dataset"]``, a failure also into
    ``report["warnings"]``; nothing raises, so the run's other outputs always stand."""
    try:
        outcome = write_dataset(run_dir, report)
    except Exception as exc:  # e.g. pyarrow missing: the run is still complete
        outcome = {"ok": False, "card": None, "parquet_dir": PARQUET_DIR, "tables": {},
                   "errors": [f"{type(exc).__name__}: {exc}"]}
    report["dataset"] = outcome
    if not outcome["ok"]:
        report.setdefault("warnings", []).append(
            {"doc_id": None, "source": None,
             "warning": "dataset card / parquet not fully written (the JSONL outputs are complete): "
                        + "; ".join(outcome["errors"])})
    return outcome
