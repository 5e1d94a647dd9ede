"""The review page's server side: the run folder reader, the judgments store (SQLite, concurrent
writers), the queue (overlap), the HTTP API (verdict hidden until judged, API key), the search
page's routes, agreement numbers against scikit-learn and the ``krippendorff`` package, and the
report with its exports. Browser tests are in test_pages_browser.py."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from rag_runtime.pages import (
    ReviewQueue,
    ReviewRun,
    ReviewRunError,
    ReviewStore,
    answer_span,
    build_report,
    cohen_kappa,
    create_review_app,
    krippendorff_alpha,
    squad_reference,
    verdict_accuracy,
    write_report,
)
from rag_runtime.pages.agreement import alpha_with_ci, pairwise_kappas

from .conftest import LiveServer
from .review_helpers import PASSAGES, QUESTIONS, SCRIPT_CHUNK, folder_state, write_run_folder

KEY = "review-key"


@pytest.fixture()
def run_folder(tmp_path) -> Path:
    return write_run_folder(tmp_path / "run")


def test_run_folder_pairs_carry_chunk_span_and_hidden_verdict(run_folder):
    run = ReviewRun.load(run_folder)
    assert len(run.pairs) == len(QUESTIONS)
    pair = next(p for p in run.pairs.values() if p.answer == "in the 10th and 11th centuries")
    assert pair.chunk == PASSAGES[0] and pair.qa_mode == "abstractive" and pair.source == "docs/sample0.md"
    assert pair.chunk[pair.span[0]:pair.span[1]] == pair.answer and pair.span_kind == "exact"
    assert "etl" not in pair.to_page() and "valid" not in json.dumps(pair.to_page())
    invalid = next(p for p in run.pairs.values() if p.answer == "the stars")
    assert invalid.etl.valid is False and invalid.span is None


def test_answer_span_falls_back_to_the_closest_sentence_then_to_none():
    chunk = "Bread needs yeast. The oven must be hot before baking starts. Salt adds taste."
    (start, end), kind = answer_span(chunk, "the oven has to be hot before baking")
    assert kind == "sentence" and chunk[start:end] == "The oven must be hot before baking starts."
    assert answer_span(chunk, "quantum chromodynamics") == (None, "none")
    assert answer_span(chunk, "SALT adds taste.")[1] == "exact"


def test_a_folder_that_is_not_a_run_is_refused_by_name(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "qa_pairs.jsonl").write_text("")
    with pytest.raises(ReviewRunError, match=r"validation.jsonl, chunks.jsonl missing"):
        ReviewRun.load(tmp_path / "half")
    with pytest.raises(ReviewRunError, match="does not exist"):
        ReviewRun.load(tmp_path / "nowhere")


def test_store_keeps_history_and_undo_withdraws_the_latest_judgment(tmp_path):
    store = ReviewStore(tmp_path / "j.sqlite")
    assert sqlite3.connect(tmp_path / "j.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.record("ann", "q1", "accept")
    store.record("ann", "q2", "reject", ["wrong answer"])
    store.record("ann", "q1", "reject", ["trivial"], edited_answer="better")
    assert {(j.qa_id, j.verdict) for j in store.current()} == {("q1", "reject"), ("q2", "reject")}
    undone = store.undo_last("ann")
    assert (undone.qa_id, undone.verdict) == ("q1", "reject")
    assert {(j.qa_id, j.verdict) for j in store.current()} == {("q2", "reject")}
    assert [j.verdict for j in store.history("ann", "q1")] == ["accept", "reject", "undo"]
    assert store.history("ann", "q1")[-1].undoes == undone.id
    assert store.undo_last("ann").qa_id == "q2" and store.undo_last("ann") is None
    with pytest.raises(ValueError):
        store.record("ann", "q3", "maybe")
    with pytest.raises(ValueError):
        store.record("ann", "q3", "reject", ["too long"])


def test_concurrent_writers_lose_no_judgment(tmp_path):
    path = tmp_path / "j.sqlite"
    ReviewStore(path)
    n_threads, per_thread = 6, 40
    errors = []

    def write(who: int) -> None:
        store = ReviewStore(path)  # each writer its own store and connection, as separate processes would
        try:
            for i in range(per_thread):
                store.record(f"r{who}", f"q{i}", "accept" if (i + who) % 2 else "reject")
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = ReviewStore(path)
    assert not errors
    assert len(store.history()) == n_threads * per_thread
    assert len(store.current()) == n_threads * per_thread


def test_queue_overlap_pairs_go_to_two_reviewers_the_rest_to_one():
    ids = [f"q{i}" for i in range(400)]
    queue = ReviewQueue(ids, overlap=0.25, overlap_reviewers=2)
    overlap = [q for q, n in queue.required.items() if n == 2]
    assert 70 <= len(overlap) <= 130  # a hash-chosen quarter of 400
    assert ReviewQueue(ids, overlap=0.25).required == queue.required  # stable across restarts

    standing: list[tuple[str, str, str]] = []
    seen: dict[str, list[str]] = {}
    for _ in range(2 * len(ids)):
        for who in ("ann", "bob"):
            q = queue.next_for(who, standing)
            if q is None:
                continue
            standing.append((who, q, "accept"))
            queue.release(q, who)
            seen.setdefault(q, []).append(who)
    assert all(len(seen[q]) == queue.required[q] for q in ids)
    assert all(sorted(seen[q]) == ["ann", "bob"] for q in overlap)
    assert queue.next_for("ann", standing) is None


def test_a_pair_handed_to_one_reviewer_is_not_handed_to_another_at_the_same_time():
    queue = ReviewQueue(["a", "b"], overlap=0.0)
    first = queue.next_for("ann", [])
    second = queue.next_for("bob", [])
    assert {first, second} == {"a", "b"}
    # a skip leaves the pair open to others, but the skipper does not see it again
    standing = [("ann", first, "skip")]
    queue.release(first, "ann")
    assert queue.next_for("carl", standing + [("bob", second, "accept")]) == first
    with pytest.raises(ValueError, match="overlap must be a share"):
        ReviewQueue(["a"], overlap=1.5)


def test_api_hides_the_etl_verdict_until_judged_and_writes_need_the_key(run_folder, tmp_path):
    before = folder_state(run_folder)
    app = create_review_app(run_folder, tmp_path / "db" / "j.sqlite", api_key=KEY)
    with TestClient(app) as c:
        assert c.get("/review").status_code == 200  # the page itself is public
        assert c.post("/api/review/next", json={"reviewer": "ann"}).status_code == 401
        r = c.post("/api/review/judgments", json={"reviewer": "ann", "qa_id": "x", "verdict": "accept"},
                   headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        h = {"X-API-Key": KEY}
        nxt = c.post("/api/review/next", json={"reviewer": "ann"}, headers=h).json()
        assert "etl" not in nxt["pair"] and "valid" not in nxt["pair"]
        qa_id = nxt["pair"]["qa_id"]
        res = c.post("/api/review/judgments", headers=h, json={
            "reviewer": "ann", "qa_id": qa_id, "verdict": "reject", "reasons": ["wrong answer", "trivial"],
            "edited_answer": "  a better answer "}).json()
        assert res["etl"]["valid"] == app.state.run.pairs[qa_id].etl.valid
        assert res["saved"]["edited_answer"] == "a better answer" and res["next"]["qa_id"] != qa_id
        assert res["progress"]["mine"] == 1
        bad = c.post("/api/review/judgments", headers=h, json={"reviewer": "ann", "qa_id": "nope", "verdict": "accept"})
        assert bad.status_code == 404 and "nope" in bad.json()["detail"]
        bad = c.post("/api/review/judgments", headers=h, json={"reviewer": "<b>x", "qa_id": qa_id, "verdict": "yes"})
        assert bad.status_code == 422 and "reviewer" in bad.json()["detail"] and "verdict" in bad.json()["detail"]
        undone = c.post("/api/review/undo", json={"reviewer": "ann"}, headers=h).json()
        assert undone["pair"]["qa_id"] == qa_id
        assert c.post("/api/review/undo", json={"reviewer": "ann"}, headers=h).status_code == 409
    assert folder_state(run_folder) == before


def test_the_judgments_database_may_not_live_inside_the_run_folder(run_folder):
    with pytest.raises(ValueError, match="never modified"):
        create_review_app(run_folder, run_folder / "j.sqlite")


def test_search_page_and_offline_docs_are_served_without_a_cdn(rag_index):
    from rag_runtime import create_app

    with LiveServer(create_app(index=rag_index, api_key=KEY)) as server, httpx.Client(base_url=server.url) as c:
        page = c.get("/ui")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        for src in ("/ui/static/common.js", "/ui/static/search.js", "/ui/static/pages.css"):
            assert src in page.text and c.get(src).status_code == 200
        docs = c.get("/docs")
        assert docs.status_code == 200 and "cdn" not in docs.text.lower() and "/ui/docs-assets/swagger-ui-bundle.js" in docs.text
        assert c.get("/ui/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert "cdn" not in c.get("/redoc").text.lower()
        assert c.post("/search", json={"query": "bread"}).status_code == 401  # the page adds no way around the key


# Agreement against references ---------------------------------------------------------------


def _fixed_ratings(seed: int = 3, n_items: int = 60, raters: int = 4, missing: float = 0.3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_items)
    table = []
    for _ in range(raters):
        noisy = np.where(rng.random(n_items) < 0.2, 1 - truth, truth).astype(float)
        noisy[rng.random(n_items) < missing] = np.nan
        table.append(noisy)
    return np.array(table)


def test_cohen_kappa_equals_sklearn_on_fixed_data():
    from sklearn.metrics import cohen_kappa_score

    table = _fixed_ratings(missing=0.0)
    for i in range(table.shape[0]):
        for j in range(i + 1, table.shape[0]):
            a, b = ["accept" if x else "reject" for x in table[i]], ["accept" if x else "reject" for x in table[j]]
            assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert math.isnan(cohen_kappa(["accept"] * 3, ["accept"] * 3))  # one label only: undefined, not 1


def test_krippendorff_alpha_equals_the_krippendorff_package_with_missing_ratings():
    import krippendorff

    for seed in (1, 2, 3):
        table = _fixed_ratings(seed)
        units = [[None if np.isnan(v) else int(v) for v in table[:, u]] for u in range(table.shape[1])]
        ours = krippendorff_alpha(units)
        ref = krippendorff.alpha(reliability_data=table, level_of_measurement="nominal")
        assert ours == pytest.approx(ref, abs=1e-10)


def test_hand_computed_cases_and_bootstrap_intervals_cover_the_estimate():
    # Krippendorff (2011)'s textbook idea in small: 2 raters agree on 3 of 4 binary items
    assert krippendorff_alpha([[1, 1], [0, 0], [1, 1], [1, 0]]) == pytest.approx(1 - 7 * 2 / (5 * 3 * 2), abs=1e-12)
    acc = verdict_accuracy(["accept", "accept", "reject", "reject", "accept"], ["accept", "reject", "accept", "reject", "accept"])
    assert acc["confusion"] == {"accept_accept": 2, "accept_reject": 1, "reject_accept": 1, "reject_reject": 1}
    assert (acc["precision"], acc["recall"], acc["reject_recall"]) == (2 / 3, 2 / 3, 0.5)
    table = _fixed_ratings(missing=0.2)
    ratings = {f"r{i}": {f"q{u}": ("accept" if v else "reject") for u, v in enumerate(table[i]) if not np.isnan(v)}
               for i in range(table.shape[0])}
    for k in pairwise_kappas(ratings, n_boot=300):
        assert k["low"] <= k["kappa"] <= k["high"] and k["n"] > 20
    alpha = alpha_with_ci(ratings, n_boot=300)
    assert alpha["low"] <= alpha["alpha"] <= alpha["high"] and alpha["raters"] == 4


# The report -------------------------------------------------------------------------------------


def _judge_all(db: Path, run: ReviewRun, verdicts: dict[str, dict[str, str]], edits: dict[str, str] = ()) -> None:
    store = ReviewStore(db)
    for reviewer, by_pair in verdicts.items():
        for qa_id, verdict in by_pair.items():
            reasons = ["wrong answer"] if verdict == "reject" else []
            store.record(reviewer, qa_id, verdict, reasons, dict(edits).get(qa_id) if verdict == "accept" else None)


def test_report_compares_the_etl_with_the_human_majority_and_exports_the_accepted_set(run_folder, tmp_path):
    import pyarrow.parquet as pq

    run = ReviewRun.load(run_folder)
    ids = list(run.pairs)
    # people accept what the ETL kept, except one kept pair both reject; they also accept one the ETL rejected
    kept = [q for q in ids if run.pairs[q].etl.valid]
    dropped = [q for q in ids if not run.pairs[q].etl.valid]
    human = {q: "accept" for q in kept}
    human[kept[0]] = "reject"
    human.update({q: "reject" for q in dropped})
    human[dropped[0]] = "accept"
    bob = dict(human)
    bob[kept[1]] = "reject"  # bob disagrees once: a tie on kept[1] (ann accept, bob reject) is left out
    db = tmp_path / "review" / "j.sqlite"
    _judge_all(db, run, {"ann": human, "bob": bob}, edits={kept[2]: "an edited answer"})
    ReviewStore(db).record("carl", kept[3], "skip")
    before = folder_state(run_folder)
    report = write_report(run_folder, db, tmp_path / "report", n_boot=200, track=False)
    assert folder_state(run_folder) == before

    overall = report["validator"]["overall"]
    decided = [q for q in ids if q != kept[1]]
    assert overall["n"] == len(decided) and report["majority"]["tie"] == 1
    tp = len(kept) - 2  # kept minus kept[0] (rejected) and kept[1] (tie)
    assert overall["confusion"] == {"accept_accept": tp, "accept_reject": 1, "reject_accept": 1, "reject_reject": len(dropped) - 1}
    assert overall["precision"] == pytest.approx(tp / (tp + 1)) and overall["recall"] == pytest.approx(tp / (tp + 1))
    assert report["validator"]["by_qa_mode"]["abstractive"]["n"] == overall["n"]
    assert report["validator"]["by_human_reason"][0]["reason"] == "wrong answer"
    kappa = report["agreement"]["pairwise_kappa"][0]
    assert kappa["raters"] == ["ann", "bob"] and kappa["n"] == len(ids) and kappa["kappa"] < 1
    assert report["reviewers"]["carl"] == {"skip": 1}

    lines = [json.loads(x) for x in (tmp_path / "report" / "accepted.jsonl").read_text().splitlines()]
    assert {r["qa_id"] for r in lines} == {q for q in decided if human[q] == "accept"}
    edited = next(r for r in lines if r["qa_id"] == kept[2])
    assert edited["answer"] == "an edited answer" and edited["edited"] and edited["original_answer"] != edited["answer"]
    assert pq.read_table(tmp_path / "report" / "accepted.parquet").to_pylist() == lines
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Cohen's kappa" in md and f"{overall['precision']:.3f}" in md
    assert json.loads((tmp_path / "report" / "report.json").read_text())["validator"]["overall"]["n"] == overall["n"]


@pytest.mark.slow
def test_report_is_logged_to_mlflow(run_folder, tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("LIQUID_MLFLOW_URI", uri)
    run = ReviewRun.load(run_folder)
    db = tmp_path / "j.sqlite"
    _judge_all(db, run, {"ann": {q: "accept" for q in run.pairs}})
    write_report(run_folder, db, tmp_path / "report", n_boot=100, track=True, experiment="review-test")
    runs = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name("review-test").experiment_id])
    assert runs and runs[0].data.metrics["judged_pairs"] == len(run.pairs)


def _squad_file(path: Path) -> Path:
    data = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": PASSAGES[0], "qas": [
            {"id": "1", "question": "When?", "is_impossible": False, "answers": [{"text": "10th and 11th centuries", "answer_start": 36}]},
            {"id": "2", "question": "Why?", "is_impossible": True, "answers": []}]},
        {"context": PASSAGES[1], "qas": [
            {"id": "3", "question": "What?", "is_impossible": False, "answers": [{"text": "gravitational pull of the moon", "answer_start": 24}]}]},
    ]}]}
    path.write_text(json.dumps(data))
    return path


def test_squad_answers_act_as_a_reference_reviewer(run_folder, tmp_path):
    run = ReviewRun.load(run_folder)
    verdicts = squad_reference(run, _squad_file(tmp_path / "squad.json"))
    by_answer = {run.pairs[q].answer: v for q, v in verdicts.items()}
    assert by_answer == {"in the 10th and 11th centuries": "accept", "the Normans": "reject",
                         "the gravitational pull of the moon": "accept", "the stars": "reject"}
    report = build_report(run, [], {"squad": verdicts}, n_boot=100)
    ref = report["references"]["squad"]["etl_against_reference"]
    # ETL kept three of the four (the Normans, centuries, moon) and rejected "the stars"
    assert ref["confusion"] == {"accept_accept": 2, "accept_reject": 1, "reject_accept": 0, "reject_reject": 1}


@pytest.mark.shared_data
def test_squad_reference_on_the_shared_squad_file(shared_data_dir, tmp_path):
    squad_path = shared_data_dir / "squad" / "dev-v2.0-3articles.json"
    para = json.loads(squad_path.read_text())["data"][0]["paragraphs"][0]
    human = next(q for q in para["qas"] if not q.get("is_impossible"))["answers"][0]["text"]
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult

    folder = tmp_path / "run"
    folder.mkdir()
    chunk = Chunk(chunk_id="c0", doc_id="d0", text=para["context"], position=0)
    pairs = [QAPair(qa_id="good", chunk_id="c0", doc_id="d0", question="Q?", answer=human),
             QAPair(qa_id="bad", chunk_id="c0", doc_id="d0", question="Q?", answer="an unrelated invention")]
    (folder / "chunks.jsonl").write_text(chunk.model_dump_json() + "\n")
    (folder / "qa_pairs.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in pairs))
    (folder / "validation.jsonl").write_text("".join(
        ValidationResult(qa_id=p.qa_id, valid=True, grounded=True).model_dump_json() + "\n" for p in pairs))
    assert squad_reference(ReviewRun.load(folder), squad_path) == {"good": "accept", "bad": "reject"}


def test_script_text_survives_the_api_as_text(run_folder, tmp_path):
    app = create_review_app(run_folder, tmp_path / "j.sqlite")
    pair = next(p for p in app.state.run.pairs.values() if p.chunk == SCRIPT_CHUNK)
    assert pair.to_page()["chunk"] == SCRIPT_CHUNK  # sent as JSON data; the page puts it in with textContent


def test_review_report_command_writes_the_report_and_names_bad_input(run_folder, tmp_path):
    from typer.testing import CliRunner

    from rag_runtime.cli import app

    run = ReviewRun.load(run_folder)
    db = tmp_path / "j.sqlite"
    _judge_all(db, run, {"ann": {q: "accept" for q in run.pairs}, "bob": {q: "reject" for q in list(run.pairs)[:3]}})
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["review", "report", str(run_folder), "--db", str(db), "-o", str(out),
                                      "--no-track", "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["judged_pairs"] == len(run.pairs) and report["majority"]["tie"] == 3
    assert (out / "accepted.parquet").is_file() and "## Agreement" in (out / "report.md").read_text()
    bad = CliRunner().invoke(app, ["review", "report", str(tmp_path / "nowhere"), "--no-track"])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    missing = CliRunner().invoke(app, ["review", "report", str(run_folder), "--db", str(tmp_path / "none.sqlite"), "--no-track"])
    assert missing.exit_code == 2 and "none.sqlite not found" in missing.output
