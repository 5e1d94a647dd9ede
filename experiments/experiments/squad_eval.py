"""SQuAD v2.0 paragraphs and their human questions as a common evaluation set for ETL runs.

``qa_generation`` and ``model_ablation`` run the ETL over a seeded sample of the paragraphs of the
shared SQuAD file (``$LIQUID_DATA_DIR/squad/dev-v2.0-3articles.json``), one input file per
paragraph named ``a<article>_p<paragraph>.txt``, and judge what the ETL made against the people's
questions and answer spans of the same paragraphs, which the generator never saw. This module
holds what both need: loading and sampling, the ETL inputs, the human questions, the pairs of a
run keyed by paragraph, and BM25 / dense nDCG@10 over every paragraph of the articles.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SQUAD_FILE = Path("squad") / "dev-v2.0-3articles.json"


def load_squad(path: Path | None) -> dict[str, Any]:
    """The SQuAD v2.0 JSON at ``path`` (default: ``$LIQUID_DATA_DIR/squad/dev-v2.0-3articles.json``)."""
    from experiments.eval_data import shared_data_file

    path = path or shared_data_file(SQUAD_FILE)
    if path is None:
        raise FileNotFoundError("no SQuAD file: set the experiment's `squad` path or LIQUID_DATA_DIR "
                                f"(the folder holding {SQUAD_FILE})")
    if not Path(path).is_file():
        raise FileNotFoundError(f"SQuAD file {path} not found (set the experiment's `squad` path or LIQUID_DATA_DIR)")
    try:
        squad = json.loads(Path(path).read_text(encoding="utf-8"))
        [p["context"] for a in squad["data"] for p in a["paragraphs"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a SQuAD v2.0 file (data[].paragraphs[].context/qas): {exc}") from None
    return squad


def sample_paragraphs(squad: dict[str, Any], per_article: int, seed: int) -> dict[str, dict[str, Any]]:
    """``{"a<i>_p<j>": paragraph}``, a seeded sample of ``per_article`` paragraphs per article."""
    rng = random.Random(seed)
    out = {}
    for ai, article in enumerate(squad["data"]):
        paras = article["paragraphs"]
        for pi in sorted(rng.sample(range(len(paras)), min(per_article, len(paras)))):
            out[f"a{ai}_p{pi:02d}"] = paras[pi]
    return out


def write_paragraph_inputs(paragraphs: dict[str, dict[str, Any]], folder: Path) -> Path:
    """One ``<key>.txt`` ETL input per paragraph in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, para in paragraphs.items():
        (folder / f"{key}.txt").write_text(para["context"] + "\n", encoding="utf-8")
    return folder


def article_corpus(squad: dict[str, Any]) -> dict[str, str]:
    """Every paragraph of every article, by key: the retrieval corpus."""
    return {f"a{ai}_p{pi:02d}": p["context"] for ai, a in enumerate(squad["data"]) for pi, p in enumerate(a["paragraphs"])}


def human_questions(paragraphs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The answerable human questions of ``paragraphs``: ``{"h<n>": {text, key, answers}}``."""
    out, n = {}, 0
    for key, para in paragraphs.items():
        for q in para["qas"]:
            if not q.get("is_impossible"):
                out[f"h{n}"] = {"text": q["question"], "key": key, "answers": [a["text"] for a in q["answers"]]}
                n += 1
    return out


def load_run_pairs(run: Path) -> list[dict[str, Any]]:
    """Every generated pair of an ETL run with its paragraph key (the input file's stem), chunk text
    and validity; read from the finished documents' shards (``docs/<id>/``), so a run still in
    progress can be read too."""
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult, read_jsonl

    key_of, chunks, valid, pairs = {}, {}, {}, []
    for shard in sorted((Path(run) / "docs").glob("*/record.json")):
        record = json.loads(shard.read_text())
        if record.get("status") != "done":
            continue
        folder = shard.parent
        key_of[record["doc_id"]] = Path(record["source"]).stem
        chunks.update({c.chunk_id: c for c in read_jsonl(folder / "chunks.jsonl", Chunk)})
        valid.update({v.qa_id: v for v in read_jsonl(folder / "validation.jsonl", ValidationResult)})
        pairs += list(read_jsonl(folder / "qa_pairs.jsonl", QAPair))
    rows = []
    for p in pairs:
        v = valid.get(p.qa_id)
        rows.append({"key": key_of.get(p.doc_id), "question": p.question, "answer": p.answer,
                     "chunk": chunks[p.chunk_id].text, "valid": bool(v and v.valid),
                     "reasons": list(v.reasons) if v else []})
    return rows


def count_done_chunks(run: Path) -> int:
    """Chunks of the finished documents of an ETL run (its ``docs/<id>/`` shards)."""
    total = 0
    for shard in (Path(run) / "docs").glob("*/record.json"):
        if json.loads(shard.read_text()).get("status") == "done":
            chunks = shard.parent / "chunks.jsonl"
            total += sum(1 for line in chunks.open(encoding="utf-8") if line.strip()) if chunks.is_file() else 0
    return total


def retrieval_ndcg(corpus: dict[str, str], queries: dict[str, tuple[str, str]],
                   retrievers: tuple[str, ...] = ("bm25", "dense")) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10 (``{retriever: {qid: score}}``) over ``corpus``; ``queries``: ``{qid: (text,
    relevant key)}``, one relevant document each. Retrievers: ``bm25`` and/or ``dense`` (rag_runtime)."""
    from experiments.retrieval_variants import VariantSpec, run_variants
    from liquid_shared.metrics import evaluate
    from rag_runtime import IndexedDoc, RagIndex

    docs = [IndexedDoc(id=k, text=t) for k, t in corpus.items()]
    index = RagIndex.build(docs, with_dense="dense" in retrievers)
    variants = [VariantSpec(name=r, retriever=r) for r in retrievers]
    ranked = run_variants(index, {q: t for q, (t, _) in queries.items()}, variants, k=10, candidates=10, boost_factor=1.0)
    qrels = {q: {rel: 1} for q, (_, rel) in queries.items()}
    out = {}
    for name, run_ in ranked.runs.items():
        res = evaluate(run_, qrels, ["ndcg@10"])
        out[name] = {q: res.per_query["ndcg@10"][q] for q in res.query_ids}
    return out
