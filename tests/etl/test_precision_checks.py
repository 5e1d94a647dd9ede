"""The ``precision`` validation profile's checks, each on crafted pairs it must keep and must reject."""

from __future__ import annotations

import numpy as np

from etl_pipeline import precision_checks as checks
from etl_pipeline.assemble import ChunkOutputs, assemble_document
from etl_pipeline.extractive import ExtractiveItem
from etl_pipeline.stage_outputs import QAItem
from etl_pipeline.tmd import TmdCode
from liquid_shared.embeddings import get_embedder
from liquid_shared.schemas import Chunk

NORMANS = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
           "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
           "their leader Rollo, agreed to swear fealty to King Charles III of West Francia.")
TIDES = "The Moon raises two bulges of water on Earth. Most coasts therefore see two high tides each day."
BEES = "Honeybees store honey in wax cells. A colony has a single queen that lays the eggs."


def test_retrieval_keeps_a_question_about_its_own_chunk_and_rejects_one_about_another():
    texts = [NORMANS, TIDES, BEES]
    emb = get_embedder()
    vectors = emb.encode(texts)
    own = "Who led the Norse raiders who swore fealty to Charles III?"
    assert checks.retrieval_reason(own, 0, texts, emb.encode([own])[0], vectors) is None
    other = "How many high tides do the coasts of Normandy see each day, the Normans asked?"
    reason = checks.retrieval_reason(other, 0, texts, emb.encode([other])[0], vectors)
    assert reason is not None and reason.startswith("retrieval:") and "BM25" in reason and "embedding" in reason
    # one chunk: nothing to rank it against, so it passes when it shares enough words with it
    assert checks.retrieval_reason(other, 0, [NORMANS], None, None) is None
    vague = checks.retrieval_reason("What did he do?", 0, [NORMANS], None, None)
    assert vague.startswith("retrieval: the question shares 0 content word(s)")


def test_bm25_ranks_the_chunk_sharing_rare_terms_first_and_ties_are_not_first():
    scores = checks.bm25_scores("Which queen lays the eggs?", [NORMANS, TIDES, BEES])
    assert scores.argmax() == 2 and scores[0] == scores[1] == 0.0
    assert not checks.ranks_first(np.array([1.0, 1.0]), 0)
    assert checks.ranks_first(np.array([2.0, 1.0]), 0)


def test_answer_in_question_rejects_a_question_holding_its_answer():
    assert checks.answer_in_question_reason("Who led the Norse raiders?", "Rollo") is None
    assert checks.answer_in_question_reason("Who founded the Byzantine dynasty of Alexius Komnenos?",
                                            "The Byzantine dynasty of Alexius Komnenos").startswith("answer_in_question:")
    # every content word of the answer is in the question, in another order
    assert checks.answer_in_question_reason("Which raiders from Norway came?", "Norway raiders") is not None
    assert checks.answer_in_question_reason("Which king of West Francia took their fealty?", "Charles III") is None


def test_prompt_copy_rejects_the_prompt_example_and_a_copy_of_the_first_sentence():
    assert checks.prompt_example_questions()  # read from the QA prompts themselves
    example = checks.prompt_example_questions()[0]
    assert checks.prompt_copy_reason(example, NORMANS).startswith("prompt_copy: the question is the prompt's example")
    copy = "Were the Normans the people who in the 10th and 11th centuries gave their name to Normandy, a region in France?"
    assert "first sentence" in checks.prompt_copy_reason(copy, NORMANS)
    assert checks.prompt_copy_reason("Who led the Norse raiders?", NORMANS) is None
    assert checks.prompt_copy_reason("In what country is Normandy?", NORMANS) is None


def test_answer_span_keeps_spans_and_close_paraphrases_and_drops_the_rest():
    assert checks.answer_span_reason("Rollo", NORMANS) == (None, "Rollo")
    reason, span = checks.answer_span_reason("the Norse raiders", NORMANS)  # article dropped by SQuAD normalisation
    assert reason is None and span == "Norse raiders" and span in NORMANS
    reason, span = checks.answer_span_reason("Vikings who sailed from Sweden", NORMANS)
    assert span is None and reason.startswith("answer_span:")
    match = checks.best_span("King Charles III of West Francia", NORMANS)
    assert match.f1 == 1.0 and NORMANS[match.start:match.start + len(match.text)] == match.text


def test_answer_length_rejects_a_sentence_for_an_answer():
    assert checks.answer_length_reason("King Charles III of West Francia") is None
    long = "He appointed Robert of Jumieges archbishop of Canterbury and made Ralph earl"
    assert checks.answer_length_reason(long).startswith("answer_length:")


def test_reader_exact_needs_the_same_span_after_normalisation():
    assert checks.reader_exact_reason("Rollo", "Rollo") is None
    assert checks.reader_exact_reason("the Rollo.", "Rollo") is None
    assert checks.reader_exact_reason("King Charles III", "Charles III").startswith("reader_exact:")
    assert checks.reader_exact_reason("", "Rollo") is not None


def test_reason_codes_name_each_check():
    assert checks.reason_code("retrieval: x") == "retrieval"
    assert checks.reason_code("answer not grounded in the chunk (0.10 < 0.60 of its words)") == "grounding"
    assert checks.reason_code("reader disagrees: answered 'a' for intended 'b' (token F1 0.00 < 0.50)") == "roundtrip"
    assert checks.reason_code("judge: not supported, score 1/5 -> 0.00 < 0.50") == "judge"
    assert checks.reason_code("question does not end with '?'") == "malformed"


def _chunk(position: int, text: str) -> Chunk:
    return Chunk(chunk_id=Chunk.make_id("d1", position, text), doc_id="d1", text=text, position=position)


def _assemble(items: list[QAItem], profile: str):
    chunks = [_chunk(0, NORMANS), _chunk(1, TIDES)]
    emb = get_embedder()
    outputs = {chunks[0].chunk_id: ChunkOutputs(qa=[(i, None) for i in items])}
    return assemble_document(
        chunks, outputs, emb.encode([c.text for c in chunks]), emb.encode([i.question for i in items]),
        [TmdCode("general", "narrative", "historical")] * 2, grounding_threshold=0.6, judge_threshold=0.0,
        dedup_threshold=0.99, validation_profile=profile)


def test_precision_profile_keeps_good_pairs_with_their_span_as_the_fine_tuning_answer():
    good = QAItem(question="Who led the Norse raiders who swore fealty to Charles III?", answer="their leader Rollo.",
                  kind="factual")
    paraphrase = QAItem(question="From which countries did the Norse raiders and pirates come?",
                        answer="Denmark, Iceland, and Norway", kind="factual")
    vacuous = QAItem(question="Who swore fealty to King Charles III of West Francia?",
                     answer="King Charles III of West Francia", kind="factual")
    elsewhere = QAItem(question="How many high tides do most coasts see each day?", answer="Normans", kind="factual")
    items = [good, paraphrase, vacuous, elsewhere]
    standard = _assemble(items, "standard")
    precision = _assemble(items, "precision")
    assert [v.valid for v in standard.validations] == [True, True, True, True]
    assert [v.valid for v in precision.validations] == [True, True, False, False]
    assert any(r.startswith("answer_in_question:") for r in precision.validations[2].reasons)
    assert any(r.startswith("retrieval:") for r in precision.validations[3].reasons)
    assert precision.validations[1].answer_span == "Denmark, Iceland and Norway"
    assert [s.messages[-1].content for s in precision.ft_samples] == ["their leader Rollo", "Denmark, Iceland and Norway"]
    assert [s.messages[-1].content for s in standard.ft_samples][:2] == [good.answer, paraphrase.answer]


def test_precision_profile_needs_the_readers_exact_span_in_extractive_mode():
    def item(reader: str) -> ExtractiveItem:
        return ExtractiveItem(question="Which king of West Francia took their fealty?", answer="Charles III",
                              kind="factual", reader_answer=reader, roundtrip_f1=0.8 if reader != "Charles III" else 1.0,
                              roundtrip_threshold=0.5, span_kind="name")
    for reader, precision_keeps in (("King Charles III", False), ("Charles III", True)):
        assert _assemble([item(reader)], "standard").validations[0].valid
        verdict = _assemble([item(reader)], "precision").validations[0]
        assert verdict.valid is precision_keeps
        assert precision_keeps or verdict.reasons[0].startswith("reader_exact:")
