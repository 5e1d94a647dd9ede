"""rag_answers: fitting never sees the report half; the experiment end to end on a tiny SQuAD file
with the real offline model, resumed from its per-question cache."""

from __future__ import annotations

import csv
import json

import pytest
from experiments_testkit import run_cli, write_config


@pytest.mark.slow
def test_fitting_sees_only_the_dev_half(tiny_squad, monkeypatch):
    """Every text embedded or searched while fitting is a dev paragraph's or a dev question's; changing
    the report half's questions and answers does not change what is fitted."""
    import experiments.answer_fit as answer_fit
    from experiments.catalog.rag_answers import RagAnswersConfig, fit_stage
    from rag_runtime import RagIndex
    from rag_runtime.bm25 import Bm25Retriever
    from rag_runtime.dense import DenseRetriever

    seen: list[str] = []
    build = RagIndex.build.__func__

    def spy_build(cls, docs, **kwargs):
        seen.extend(d.text for d in docs)
        return build(cls, docs, **kwargs)

    for owner in (DenseRetriever, Bm25Retriever):
        original = owner.search_many

        def spy_search(self, queries, *args, _original=original, **kwargs):
            seen.extend(queries)
            return _original(self, queries, *args, **kwargs)

        monkeypatch.setattr(owner, "search_many", spy_search)
    original_encode = answer_fit.MemoEncoder.encode

    def spy_encode(self, texts, *args, **kwargs):
        seen.extend(texts)
        return original_encode(self, texts, *args, **kwargs)

    monkeypatch.setattr(RagIndex, "build", classmethod(spy_build))
    monkeypatch.setattr(answer_fit.MemoEncoder, "encode", spy_encode)

    config = RagAnswersConfig(dataset=tiny_squad, seed=1)
    data, dev, report, fitted = fit_stage(config)
    assert dev.paragraphs and report.paragraphs and not set(dev.paragraphs) & set(report.paragraphs)
    report_texts = {p.text for p in report.paragraphs.values()} | {q.text for q in report.questions.values()}
    dev_texts = {p.text for p in dev.paragraphs.values()} | {q.text for q in dev.questions.values()}
    assert seen and not report_texts & set(seen)
    assert any(t in dev_texts for t in seen)
    # the report half's sentences are not dev sentences either
    assert not any(t in p.text for t in seen for p in report.paragraphs.values() if t not in dev_texts and len(t) > 20)

    squad = json.loads(tiny_squad.read_text())
    for article in squad["data"]:
        for para in article["paragraphs"]:
            if any(p.text == para["context"] for p in report.paragraphs.values()):
                for qa in para["qas"]:
                    qa["question"] = "Which zebra plays the tuba at dawn?"
                    qa["is_impossible"], qa["answers"] = True, []
    changed = tiny_squad.parent / "changed-report-half.json"
    changed.write_text(json.dumps(squad), encoding="utf-8")
    _, dev2, _, fitted2 = fit_stage(RagAnswersConfig(dataset=changed, seed=1))
    assert dev2.paragraphs == dev.paragraphs
    assert fitted2.as_dict() == fitted.as_dict()


@pytest.mark.slow
@pytest.mark.real_model
def test_end_to_end_on_a_tiny_squad_file_and_resume(tiny_squad, tmp_path, mlflow_uri, in_tmp_project):
    cache = tmp_path / "cache"
    config = write_config(tmp_path / "exp.toml", f"""
[rag_answers]
dataset = "{tiny_squad}"
dev_share = 0.34
cache_dir = "{cache}"
n_boot = 200
concurrency = 4
variants = [
  {{ name = "sentence_embedding", style = "extractive", selection = "top", ranking = "embedding", answer_bar = false }},
  {{ name = "sentence_bm25", style = "extractive", selection = "top", ranking = "bm25", answer_bar = false }},
  {{ name = "extractive", style = "extractive" }},
  {{ name = "generative_context", style = "generative", mode = "context" }},
  {{ name = "oracle_extractive", style = "extractive", oracle = true }},
]
""")
    out = tmp_path / "out"
    result = run_cli("-e", "rag_answers", "--config", str(config), "--output-dir", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    folder = out / "rag_answers"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"sentence_embedding", "sentence_bm25", "extractive", "generative_context",
                            "oracle_extractive"}
    split = json.loads((folder / "split.json").read_text())
    assert not set(split["dev_paragraphs"]) & set(split["report_paragraphs"])
    n = split["questions"]["report_questions_answered"]
    rows = list(csv.DictReader((folder / "per_question.csv").open()))
    assert len(rows) == 5 * n
    for name, m in metrics.items():
        for key in ("answer_accuracy", "citation_accuracy", "refusal_f1", "f1", "HasAns_f1"):
            assert m[key] is None or 0.0 <= m[key] <= 1.0, (name, key, m[key])
        assert m["n_questions"] == n
    assert metrics["oracle_extractive"]["retrieval_recall"] == 1.0
    assert metrics["generative_context"]["uses_llm"] == 1.0 and metrics["sentence_bm25"]["uses_llm"] == 0.0
    llm_rows = [r for r in rows if r["variant"] == "generative_context" and r["refused"] == "False"]
    assert all(int(r["output_tokens"]) > 0 for r in llm_rows)
    report = (folder / "report.md").read_text()
    assert "## Goals" in report and "Fitted on dev" in report
    assert (folder / "significance.csv").is_file()

    cached = {p.name: p.read_text() for p in cache.glob("*.jsonl")}
    assert set(cached) == {f"{v}.jsonl" for v in metrics}
    again = run_cli("-e", "rag_answers", "--config", str(config), "--output-dir", str(tmp_path / "out2"),
                    "--mlflow-uri", mlflow_uri)
    assert again.exit_code == 0, again.output
    assert {p.name: p.read_text() for p in cache.glob("*.jsonl")} == cached  # nothing asked again
    again_metrics = json.loads((tmp_path / "out2" / "rag_answers" / "metrics.json").read_text())
    assert {k: v["answer_accuracy"] for k, v in again_metrics.items()} == {k: v["answer_accuracy"] for k, v in metrics.items()}
