"""Helpers of the experiments tests (data builders, the in-process CLI, MLflow checks); the
fixtures that use them live in conftest.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# 20 documents; each invented word occurs in exactly one document, so every matching term has the
# same idf, and a document matching two query terms outranks one matching a single term.
UNIQUE = ["zorblax", "quintrel", "mavrodine", "plexitor", "grunwald", "vostrikan", "elbonite", "trasquill",
          "yendrake", "cobalwyn", "fennimore", "drusilk", "habrozen", "klatterby", "morvanine", "ostrapel",
          "pindlewick", "rostovar", "sclemmish", "tavrinoth", "ulvarine", "wexhallow", "yamberlin", "zathrosk"]


def hand_beir_corpus() -> dict[str, dict[str, str]]:
    """d00..d19; d03 and d08 have two unique words (so they outrank one-word matches)."""
    words = iter(UNIQUE)
    corpus = {}
    for i in range(20):
        own = [next(words)]
        if i in (3, 8):
            own.append(next(words))
        filler = ["filler", "text", "about", "nothing"][: 4 - len(own)]
        corpus[f"d{i:02d}"] = {"title": "", "text": " ".join(own + filler)}
    return corpus


def word_of(corpus: dict[str, dict[str, str]], doc: str, n: int = 0) -> str:
    return corpus[doc]["text"].split()[n]


def hand_beir_queries(corpus):
    w = lambda d, n=0: word_of(corpus, d, n)  # noqa: E731
    queries = {
        "q1": f"{w('d01')} please",                       # d01 alone matches
        "q2": f"{w('d02')} {w('d03')} {w('d03', 1)}",      # d03 (two terms) above the relevant d02
        "q3": f"{w('d04')} only",                          # d04 found, the relevant d05 never matches
        "q4": "completely unrelated words",                 # nothing matches
        "q5": f"{w('d07')} {w('d08')} {w('d08', 1)}",      # d08 (grade 2) first, d07 (grade 1) second
    }
    qrels = {"q1": {"d01": 1}, "q2": {"d02": 2}, "q3": {"d04": 1, "d05": 1}, "q4": {"d06": 1},
             "q5": {"d07": 1, "d08": 2}}
    return queries, qrels




# Vocabulary mismatch: no query shares a word with any document, but each paraphrases one.
PARAPHRASES = [
    ("Feline pets purr softly when they feel content.", "why do cats make a rumbling noise if happy"),
    ("The automobile engine refused to ignite on frosty mornings.", "car won't start in cold weather"),
    ("Physicians prescribe antibiotics against bacterial infections.", "doctors give drugs for germs"),
    ("The aircraft landed safely despite heavy turbulence.", "plane touched down after a bumpy flight"),
    ("Toddlers acquire vocabulary remarkably quickly.", "how fast do small kids learn words"),
    ("Canines require daily walks to remain healthy.", "dogs need exercise every day"),
    ("The orchestra performed a symphony by Beethoven.", "musicians played classical music concert"),
    ("Heavy rainfall caused the river to overflow its banks.", "flood after a storm"),
    ("Students revised diligently before their examinations.", "pupils studied hard for tests"),
    ("The chef seasoned the broth with salt and herbs.", "cook flavoured the soup"),
    ("Solar panels convert sunlight into electricity.", "power from the sun"),
    ("The stock market plunged after the announcement.", "shares crashed following the news"),
]




# A tiny run folder in the ETL's format, written with the shared schemas --------------------------

ETL_CHUNKS = [
    ("tides", "The Moon's gravity pulls the oceans and causes two high tides each day.", ["tides", "moon"], "science"),
    ("tides", "Spring tides happen when the Sun and Moon align at new and full moon.", ["tides"], "science"),
    ("bread", "A sourdough starter is flour and water fermented by wild yeast.", ["baking", "yeast"], "howto"),
    ("bread", "Feed the starter every day with equal weights of flour and water.", ["baking"], "howto"),
    ("chain", "Clean the bicycle chain with a degreaser before you oil it.", ["bicycle"], "howto"),
    ("chain", "A stretched chain wears the cassette and should be replaced.", ["bicycle", "maintenance"], "technology"),
]
# (chunk index, question, answer, valid)
ETL_QA = [
    (0, "What causes two high tides each day?", "The Moon's gravity", True),
    (1, "When do spring tides happen?", "when the Sun and Moon align", True),
    (2, "What is a sourdough starter made of?", "flour and water", True),
    (3, "How often should you feed the starter?", "every day", True),
    (4, "What should you clean the bicycle chain with?", "a degreaser", False),
    (5, "What does a stretched chain wear out?", "the pedals and the saddle", False),
    (1, "Which planet has rings?", "Saturn has big rings", False),
]


def write_etl_like_run(folder: Path) -> Path:
    """chunks, metadata, QA pairs, validation and ft/samples.jsonl in the ETL's run-folder format."""
    from liquid_shared.schemas import (
        ChatMessage,
        Chunk,
        ChunkMetadata,
        FineTuneSample,
        QAPair,
        ValidationResult,
        write_jsonl,
    )

    chunks, metadata = [], []
    positions: dict[str, int] = {}
    for doc, text, tags, category in ETL_CHUNKS:
        pos = positions[doc] = positions.get(doc, -1) + 1
        cid = Chunk.make_id(doc, pos, text)
        chunks.append(Chunk(chunk_id=cid, doc_id=doc, text=text, position=pos, n_tokens=len(text.split()),
                            metadata={"title": doc.title(), "source": f"{doc}.md", "category": category}))
        metadata.append(ChunkMetadata(chunk_id=cid, tags=tags, category=category))
    pairs, verdicts, samples = [], [], []
    for idx, question, answer, valid in ETL_QA:
        chunk = chunks[idx]
        qa_id = QAPair.make_id(chunk.chunk_id, question, answer)
        pairs.append(QAPair(qa_id=qa_id, chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, question=question, answer=answer))
        verdicts.append(ValidationResult(qa_id=qa_id, valid=valid, grounded=valid, grounding_score=1.0 if valid else 0.0))
        if valid:
            samples.append(FineTuneSample(sample_id=f"s-{qa_id}", qa_id=qa_id, chunk_id=chunk.chunk_id, messages=[
                ChatMessage(role="system", content="Answer the question from the given context. Be brief."),
                ChatMessage(role="user", content=f"Context:\n{chunk.text}\n\nQuestion: {question}"),
                ChatMessage(role="assistant", content=answer)]))
    write_jsonl(folder / "chunks.jsonl", chunks)
    write_jsonl(folder / "metadata.jsonl", metadata)
    write_jsonl(folder / "qa_pairs.jsonl", pairs)
    write_jsonl(folder / "validation.jsonl", verdicts)
    write_jsonl(folder / "ft" / "samples.jsonl", samples)
    (folder / "report.json").write_text(json.dumps({"counts": {"chunks": len(chunks)}}))
    return folder






# MLflow and the CLI -------------------------------------------------------------------------------






def run_cli(*args: str) -> Any:
    """Invoke ``run_experiments.py`` in-process; returns click's Result (exit_code, output)."""
    from typer.testing import CliRunner

    from experiments.cli import app

    argv = list(args)
    if not argv or argv[0] not in ("run", "report"):
        argv.insert(0, "run")
    return CliRunner().invoke(app, argv, catch_exceptions=False)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def mlflow_runs(uri: str, experiment: str) -> tuple[Any, dict[str, Any]]:
    """(parent run, {variant: child run}) of the latest run of ``experiment``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    parent = parents[0]
    children = {r.data.tags["variant"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, children


def assert_mlflow_matches_disk(uri: str, experiment: str, out: Path) -> dict[str, dict[str, float]]:
    """metrics.json == the nested runs' metrics == the parent's ``<variant>.<metric>`` metrics."""
    from liquid_shared.tracking import mlflow_key

    metrics = json.loads((out / experiment / "metrics.json").read_text())
    parent, children = mlflow_runs(uri, experiment)
    assert parent.info.status == "FINISHED"
    assert set(children) == set(metrics)
    for variant, values in metrics.items():
        for metric, value in values.items():
            if value is None:
                continue
            assert children[variant].data.metrics[mlflow_key(metric)] == pytest.approx(value, rel=1e-9, abs=1e-12)
            assert parent.data.metrics[mlflow_key(f"{variant}.{metric}")] == pytest.approx(value, rel=1e-9, abs=1e-12)
    return metrics
