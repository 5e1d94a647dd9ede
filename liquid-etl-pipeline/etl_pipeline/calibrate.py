"""Calibration: how many of the QA pairs a model and validation profile keep are right?

``python -m etl_pipeline.calibrate --input SQUAD.json`` runs the ETL (stage ``qa``, plus ``judge``
when its threshold gates) with the given model, QA mode and validation profile over the
paragraphs of a SQuAD-format file, each paragraph one document, and compares every generated
pair with the human answers of its paragraph (``liquid_shared.metrics.kept_pairs``): a pair is
right when its answer (the span standing for it, under the ``precision`` profile) has token F1 >=
0.5 with one of them. It reports the kept pairs' precision, the validator's recall and the yield
(kept pairs per chunk), each with a bootstrap CI and n, and stores them beside the model cache
(``etl_pipeline.trust``), where every later run with that model and profile finds them.

A ``precision`` calibration also reports the ``standard`` profile: its checks are a subset, every
check is evaluated on every pair, and the generation does not depend on the profile, so the
standard verdict is read off the same pairs (entries ``standard/<mode>``, ``derived_from``).

The precision checks' thresholds were chosen on article 0 of the shared SQuAD file (Normans);
report figures on the others (``--articles 1,2``) so that no threshold is tuned on what is
reported. The ETL run lives in a work folder (default under the calibration folder, named by the
model key, mode and paragraph selection) and resumes when interrupted.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from etl_pipeline.config import EtlConfig
from etl_pipeline.precision_checks import PRECISION_CHECKS, reason_code
from liquid_shared.metrics import is_right, measure_kept_pairs


class SquadFileError(ValueError):
    """The calibration input is not a usable SQuAD-format file (the message names it)."""


def load_paragraphs(path: Path, articles: list[int] | None = None, per_article: int | None = None,
                    seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{"a<article>_p<paragraph>": {"context", "answers"}}``: the chosen articles' paragraphs with
    at least one human answer, a seeded sample of ``per_article`` of them per article when given."""
    path = Path(path)
    if not path.is_file():
        raise SquadFileError(f"SQuAD file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        [p["context"] for a in data for p in a["paragraphs"]]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise SquadFileError(f"{path}: not a SQuAD JSON file (data[].paragraphs[].context/qas): {exc}") from None
    chosen = list(range(len(data))) if articles is None else articles
    bad = [a for a in chosen if not 0 <= a < len(data)]
    if bad:
        raise SquadFileError(f"{path} has {len(data)} article(s) (0-{len(data) - 1}); no article {bad}")
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    for ai in chosen:
        paras = [(pi, p) for pi, p in enumerate(data[ai]["paragraphs"])
                 if any(a.get("text", "").strip() for q in p.get("qas", []) for a in q.get("answers", []))]
        if per_article is not None and per_article < len(paras):
            paras = sorted(rng.sample(paras, per_article), key=lambda x: x[0])
        for pi, p in paras:
            answers = [a["text"] for q in p.get("qas", []) if not q.get("is_impossible") for a in q.get("answers", [])]
            out[f"a{ai}_p{pi:02d}"] = {"context": p["context"], "answers": answers}
    if not out:
        raise SquadFileError(f"{path}: no paragraph with a human answer in articles {chosen}")
    return out


def calibration_config(base: EtlConfig, inputs: Path, work: Path) -> EtlConfig:
    """``base`` restricted to what generates and validates QA pairs, over ``inputs`` into ``work``."""
    stages = ("qa", "judge") if "judge" in base.stages and base.effective_judge_threshold > 0 else ("qa",)
    return base.model_copy(update={"input_dir": inputs.resolve(), "output_dir": work.resolve(), "stages": stages,
                                   "require_precision": None, "max_chunks_per_doc": None, "limit": None})


def default_work_dir(config: EtlConfig, keys: list[str]) -> Path:
    from etl_pipeline.trust import calibration_dir, model_key

    selection = hashlib.sha256(" ".join(keys).encode()).hexdigest()[:8]
    return calibration_dir() / "runs" / f"{model_key(config)}-{config.validation_profile}-{config.qa_mode}-{selection}"


def run_pairs(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The pairs of a finished ETL run (key = the input file's stem) and its chunk count per key."""
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult, read_jsonl

    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    key_of = {d["doc_id"]: Path(d["source"]).stem for d in manifest["documents"]}
    chunks = {c.chunk_id: c for c in read_jsonl(run_dir / "chunks.jsonl", Chunk)}
    chunk_counts = Counter(key_of[c.doc_id] for c in chunks.values())
    verdicts = {v.qa_id: v for v in read_jsonl(run_dir / "validation.jsonl", ValidationResult)}
    pairs = []
    for p in read_jsonl(run_dir / "qa_pairs.jsonl", QAPair):
        v = verdicts[p.qa_id]
        pairs.append({"key": key_of[p.doc_id], "chunk_id": p.chunk_id, "question": p.question, "answer": p.answer,
                      "answer_span": v.answer_span, "valid": v.valid, "reasons": list(v.reasons)})
    return pairs, dict(chunk_counts)


def measure(pairs: list[dict[str, Any]], chunk_counts: dict[str, int], paragraphs: dict[str, dict[str, Any]],
            chunk_ids: dict[str, list[str]], profile: str, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Figures of one profile. ``profile == 'standard'`` on a precision run reads the standard verdict
    off the reasons (those of no precision check) and judges the generated answer itself."""
    kept, right, rejected = [], [], Counter()
    kept_by_chunk: Counter[str] = Counter()
    for p in pairs:
        reasons = p["reasons"] if profile == "precision" else [r for r in p["reasons"]
                                                                if reason_code(r) not in PRECISION_CHECKS]
        k = not reasons
        answer = (p["answer_span"] or p["answer"]) if profile == "precision" else p["answer"]
        kept.append(k)
        right.append(is_right(answer, paragraphs[p["key"]]["answers"]))
        rejected.update({reason_code(r) for r in reasons})
        if k:
            kept_by_chunk[p["chunk_id"]] += 1
    per_chunk = [kept_by_chunk.get(c, 0) for key in sorted(chunk_ids) for c in chunk_ids[key]]
    m = measure_kept_pairs(kept, right, per_chunk, n_boot=n_boot, seed=seed)
    return {**m.to_dict(), "chunks": sum(chunk_counts.values()), "paragraphs": len(chunk_ids),
            "rejected_by_check": dict(sorted(rejected.items()))}


def calibrate(base: EtlConfig, squad: Path, *, articles: list[int] | None = None, per_article: int | None = None,
              seed: int = 0, work_dir: Path | None = None, save: bool = True, console: Console | None = None,
              n_boot: int = 2000) -> dict[str, Any]:
    """Run and measure; returns ``{"profiles": {profile: figures}, ...}`` (also ``calibration.json``
    in the work folder) and stores the entries beside the model cache when ``save``."""
    from etl_pipeline.runner import run
    from etl_pipeline.trust import calibration_file, save_calibration
    from liquid_shared.atomic import write_json_atomic
    from liquid_shared.schemas import Chunk, read_jsonl

    console = console or Console(stderr=True)
    paragraphs = load_paragraphs(squad, articles, per_article, seed)
    work = Path(work_dir) if work_dir else default_work_dir(base, sorted(paragraphs))
    inputs = work / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    for key, para in paragraphs.items():
        target = inputs / f"{key}.txt"
        if not target.is_file():
            target.write_text(para["context"] + "\n", encoding="utf-8")
    config = calibration_config(base, inputs, work / "etl")
    console.print(f"calibration: {len(paragraphs)} paragraphs of {squad} -> ETL run {config.output_dir} "
                  f"(QA mode {config.qa_mode}, validation profile {config.validation_profile}, stages {','.join(config.stages)})")
    result = run(config, track=False)
    if result.exit_code != 0:
        raise RuntimeError(f"the calibration's ETL run failed (exit {result.exit_code}): {result.message or 'see '}"
                           f"{config.output_dir / 'report.json'}")
    pairs, chunk_counts = run_pairs(config.output_dir)
    manifest = json.loads((config.output_dir / "manifest.json").read_text(encoding="utf-8"))
    key_of_doc = {d["doc_id"]: Path(d["source"]).stem for d in manifest["documents"]}
    chunk_ids: dict[str, list[str]] = {k: [] for k in paragraphs}
    for c in read_jsonl(config.output_dir / "chunks.jsonl", Chunk):
        chunk_ids[key_of_doc[c.doc_id]].append(c.chunk_id)
    profiles = ["precision", "standard"] if config.validation_profile == "precision" else ["standard"]
    figures = {prof: measure(pairs, chunk_counts, paragraphs, chunk_ids, prof, n_boot, seed) for prof in profiles}
    source = f"{Path(squad).name} articles {sorted({int(k[1:].split('_')[0]) for k in paragraphs})}, {len(paragraphs)} paragraphs"
    out = {"squad": str(squad), "source": source, "paragraphs": sorted(paragraphs), "seed": seed,
           "qa_mode": config.qa_mode, "etl_run": str(config.output_dir), "profiles": figures,
           "calibration_file": str(calibration_file(base)), "saved": save}
    write_json_atomic(work / "calibration.json", out)
    if save:
        for prof, fig in figures.items():
            entry = {**fig, "source": source, "squad": str(squad), "etl_run": str(config.output_dir)}
            if prof != config.validation_profile:
                entry["derived_from"] = f"{config.validation_profile} run (same generated pairs, the standard checks' verdict)"
            save_calibration(base.model_copy(update={"validation_profile": prof}), entry)
    return out


def _fmt(e: dict[str, Any]) -> str:
    if e["n"] == 0 or e["mean"] is None:
        return f"- (n={e['n']})"
    if e["n"] == 1 or e["low"] is None:
        return f"{e['mean']:.3f} (n={e['n']})"
    return f"{e['mean']:.3f} [{e['low']:.3f}, {e['high']:.3f}] (n={e['n']})"


def summary(out: dict[str, Any]) -> Table:
    table = Table(title=f"calibration ({out['qa_mode']}): {out['source']}")
    for col in ("profile", "generated", "kept", "precision", "recall", "yield / chunk", "rejected by check"):
        table.add_column(col)
    for prof, f in out["profiles"].items():
        table.add_row(prof, str(f["generated"]), str(f["kept"]), _fmt(f["precision"]), _fmt(f["recall"]),
                      _fmt(f["yield"]), ", ".join(f"{k} {v}" for k, v in f["rejected_by_check"].items()))
    return table


class QaMode(str, Enum):
    abstractive = "abstractive"
    extractive = "extractive"


class ValidationProfile(str, Enum):
    standard = "standard"
    precision = "precision"


app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _ints(value: str | None, name: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} {value!r}: expected comma-separated article numbers, e.g. 1,2") from None


@app.command(help=(
    "Measure how many of the QA pairs that the model and validation profile keep are right, on a SQuAD-format "
    "file (each paragraph one document; right = token F1 >= 0.5 with a human answer of the paragraph): precision, "
    "recall and yield with bootstrap CIs, stored beside the model cache so that every ETL run with this model and "
    "profile reports them. Exit codes: 0 done, 1 failed, 2 usage error."))
def main(
    input: Annotated[Path, typer.Option("--input", help="SQuAD v1.1/v2.0 JSON file (data[].paragraphs[].context/qas).")],
    articles: Annotated[str | None, typer.Option(help="Comma-separated article numbers (0-based) to use; default all. "
                                                      "The precision checks were tuned on article 0 of the shared file.")] = None,
    paragraphs_per_article: Annotated[int | None, typer.Option(min=1, help="Seeded sample of paragraphs per article (default all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the paragraph sample and the bootstrap.")] = 0,
    profile: Annotated[str, typer.Option(help="Model profile of liquid_shared.models ('offline', 'lfm2', 'remote').")] = "offline",
    role_model: Annotated[list[str] | None, typer.Option("--role-model", help="ROLE=MODEL override, as in run_etl; repeatable.")] = None,
    qa_mode: Annotated[QaMode, typer.Option(help="QA mode of the ETL (see run_etl --help).")] = QaMode.abstractive,
    validation_profile: Annotated[ValidationProfile, typer.Option(
        help="Validation profile measured; 'precision' also reports 'standard' from the same pairs.")] = ValidationProfile.precision,
    qa_per_chunk: Annotated[int, typer.Option(help="Most QA pairs per chunk (as in run_etl).")] = 2,
    concurrency: Annotated[int, typer.Option(help="LLM requests in flight per stage.")] = 16,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Work folder (the inputs, the ETL run, "
                                                "calibration.json); default under the calibration folder. Resumable.")] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Measure only; do not store the figures beside the model cache.")] = False,
) -> None:
    from etl_pipeline.run_etl import _role_models

    console = Console(stderr=True)
    try:
        base = EtlConfig(profile=profile, qa_mode=qa_mode.value, validation_profile=validation_profile.value,
                         qa_per_chunk=qa_per_chunk, concurrency=concurrency, role_models=_role_models(role_model or []))
    except ValueError as exc:
        console.print(f"invalid options: {exc}")
        raise typer.Exit(2) from None
    try:
        out = calibrate(base, input, articles=_ints(articles, "--articles"), per_article=paragraphs_per_article,
                        seed=seed, work_dir=output, save=not no_save, console=console)
    except SquadFileError as exc:
        console.print(f"bad input: {exc}")
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        console.print(f"failed: {exc}")
        raise typer.Exit(1) from None
    Console().print(summary(out))
    console.print(("stored in " + out["calibration_file"]) if out["saved"] else "not stored (--no-save)")


if __name__ == "__main__":
    app()
