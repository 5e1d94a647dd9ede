"""Generation metrics: equal to sacrebleu / rouge-score called directly; SQuAD v1.1 EM/F1 by hand;
perplexity against a manual loss computation with a tiny random LFM2."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from liquid_shared.metrics import (
    bleu_corpus,
    bleu_sentence,
    exact_match,
    normalize_answer,
    perplexity,
    rouge,
    rouge_per_item,
    token_f1,
)

PREDS = ["the cat sat on the mat", "a quick brown fox jumps", "retrieval helps small models answer",
         "nothing in common"]
REFS = ["the cat was sitting on the mat", "the quick brown fox jumped over the dog",
        "retrieval augmentation helps small language models answer questions", "entirely different words here"]
REFS_B = ["a cat sat on a mat", "quick brown foxes jump", "small models answer better with retrieval",
          "nothing in common at all"]


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score(use_stemmer: bool) -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    direct = [scorer.score(r, p) for p, r in zip(PREDS, REFS, strict=True)]
    ours = rouge(PREDS, REFS, use_stemmer=use_stemmer)
    for t in ("rouge1", "rouge2", "rougeL"):
        assert ours[t] == pytest.approx(sum(s[t].fmeasure for s in direct) / len(direct), abs=1e-12)
    assert rouge_per_item(PREDS, REFS, use_stemmer=use_stemmer)["rouge2"] == [s["rouge2"].fmeasure for s in direct]


def test_rouge_with_several_references_equals_score_multi() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    multi = [[a, b] for a, b in zip(REFS, REFS_B, strict=True)]
    ours = rouge_per_item(PREDS, multi)
    for i, (p, refs) in enumerate(zip(PREDS, multi, strict=True)):
        assert ours["rougeL"][i] == scorer.score_multi(refs, p)["rougeL"].fmeasure


def test_bleu_equals_sacrebleu() -> None:
    assert bleu_corpus(PREDS, REFS) == sacrebleu.corpus_bleu(PREDS, [REFS]).score
    multi = [[a, b] for a, b in zip(REFS, REFS_B, strict=True)]
    assert bleu_corpus(PREDS, multi) == sacrebleu.corpus_bleu(PREDS, [REFS, REFS_B]).score
    for p, r in zip(PREDS, REFS, strict=True):
        assert bleu_sentence(p, r) == sacrebleu.sentence_bleu(p, [r]).score
    assert bleu_sentence(PREDS[0], [REFS[0], REFS_B[0]]) == sacrebleu.sentence_bleu(PREDS[0], [REFS[0], REFS_B[0]]).score


def test_sentence_bleu_is_smoothed() -> None:
    # no matching 4-gram: unsmoothed BLEU is 0, the smoothed score is not
    pred, ref = "the cat sat down", "the cat sat on the mat"
    assert sacrebleu.sentence_bleu(pred, [ref], smooth_method="none").score == 0.0
    assert bleu_sentence(pred, ref) > 0.0


def test_bleu_and_rouge_input_errors() -> None:
    with pytest.raises(ValueError, match="preds has 2 items but refs has 1"):
        bleu_corpus(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"refs\[1\] has 1 references but refs\[0\] has 2"):
        bleu_corpus(["a", "b"], [["a", "b"], ["c"]])
    with pytest.raises(TypeError, match=r"preds\[1\] must be a string"):
        rouge(["a", None], ["a", "b"])
    with pytest.raises(ValueError, match=r"refs\[0\] is an empty list"):
        rouge(["a"], [[]])


# SQuAD v1.1: expected values worked out by hand from the official definitions --------------------

EM_CASES = [
    ("The Cat!", "cat", 1.0),            # case, punctuation, article
    ("a cat", "the cat", 1.0),
    ("cats", "cat", 0.0),                # no stemming
    ("U.S.A.", "USA", 1.0),              # punctuation removed inside words
    ("theater", "ater", 0.0),            # articles only as whole words
    ("\u201ccat\u201d", "cat", 0.0),     # curly quotes are not ASCII punctuation
    ("Paris", ["London", "paris "], 1.0),  # max over golds
    ("the", "a", 1.0),                   # both normalise to ""
]
F1_CASES = [
    ("the cat sat", "cat sat on mat", 2 / 3),  # P = 2/2, R = 2/4
    ("cat cat cat", "cat", 0.5),               # P = 1/3, R = 1
    ("big red dog", "small blue cat", 0.0),
    ("Paris", ["paris france", "Paris"], 1.0),
    ("the", "a", 0.0),                         # v1.1: no common token -> 0, even when both are empty
    ("in 1990, the war", "1990 war", 0.8),     # P = 2/3, R = 1
]


@pytest.mark.parametrize(("pred", "gold", "expected"), EM_CASES)
def test_exact_match_squad_v11(pred: str, gold, expected: float) -> None:
    assert exact_match(pred, gold) == expected


@pytest.mark.parametrize(("pred", "gold", "expected"), F1_CASES)
def test_token_f1_squad_v11(pred: str, gold, expected: float) -> None:
    assert token_f1(pred, gold) == pytest.approx(expected)


def test_normalize_answer() -> None:
    assert normalize_answer("  The  Quick, brown-fox; an apple ") == "quick brownfox apple"


# Perplexity ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lfm2():
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, Lfm2Config, Lfm2ForCausalLM

    from liquid_shared.offline import OfflineModelMissing, ensure_smollm2

    try:
        folder = ensure_smollm2()
    except OfflineModelMissing as exc:
        pytest.skip(f"SmolLM2 tokenizer unavailable: {exc}")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = Lfm2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                        layer_types=["conv", "full_attention"], pad_token_id=tokenizer.pad_token_id or 0)
    torch.manual_seed(0)
    model = Lfm2ForCausalLM(config).eval()
    return model, tokenizer


TEXTS = ["Liquid models are small.", "A much longer sentence about retrieval, evaluation and the statistics of "
         "paired comparisons between systems.", "Short one", "Perplexity is the exponential of the mean loss."]


def test_perplexity_equals_manual_loss_and_ignores_padding(tiny_lfm2) -> None:
    import torch

    model, tokenizer = tiny_lfm2
    expected = []
    with torch.no_grad():
        for text in TEXTS:
            ids = tokenizer(text, return_tensors="pt").input_ids
            expected.append(math.exp(model(input_ids=ids, labels=ids).loss.item()))
    batched = perplexity(TEXTS, model, tokenizer, batch_size=3)
    single = perplexity(TEXTS, model, tokenizer, batch_size=1)
    assert batched == pytest.approx(expected, rel=1e-4)
    assert single == pytest.approx(expected, rel=1e-4)
    assert all(1 < p < 10 * len(tokenizer) for p in batched)


def test_perplexity_max_length_and_errors(tiny_lfm2) -> None:
    model, tokenizer = tiny_lfm2
    full = perplexity([TEXTS[1]], model, tokenizer)[0]
    cut = perplexity([TEXTS[1]], model, tokenizer, max_length=5)[0]
    ids = tokenizer(TEXTS[1], return_tensors="pt").input_ids[:, :5]
    assert cut == pytest.approx(math.exp(model(input_ids=ids, labels=ids).loss.item()), rel=1e-4)
    assert cut != pytest.approx(full)
    assert perplexity([], model, tokenizer) == []
    with pytest.raises(ValueError, match=r"texts\[1\] has 0 token\(s\)"):
        perplexity(["fine text", ""], model, tokenizer)
    with pytest.raises(TypeError, match="not one string"):
        perplexity("a string", model, tokenizer)
