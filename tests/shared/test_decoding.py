"""Our decode stream against transformers' ``generate``: the same tokens for every row (greedy),
whether rows start together, join a running batch later, or leave it early.

The reference is ``generate`` on each prompt *alone* (no padding), so the test also shows that a
row's output does not depend on the rows it shares a batch with. Both architectures we ship for:
Llama (SmolLM2) and LFM2, whose convolution states are merged differently from attention caches.
fp32, so that the comparison is exact.
"""

from __future__ import annotations

import json

import pytest
from decoding_helpers import chat_ids as _ids
from decoding_helpers import generate_alone as _alone

from liquid_shared.models.decoding import DecodeStream, NewRow, decode_all
from liquid_shared.models.grammar import GrammarCache

PROMPTS = ["Say hi.", "List three colours, with a sentence about each one.", "What is 2+2?",
           "Write a short poem about a river that runs to the sea, and about the hills it passes on the way."]


def _stream(model, tok) -> DecodeStream:
    return DecodeStream(model, pad_id=tok.pad_token_id, eos_ids={tok.eos_token_id}, repetition_penalty=1.05)


@pytest.mark.slow
def test_rows_started_together_equal_generate_alone(causal_lm):
    name, model, tok = causal_lm
    budgets = [4, 24, 10, 24]  # uneven budgets: rows leave the batch at different steps
    prompts = [_ids(tok, p) for p in PROMPTS]
    stream = _stream(model, tok)
    done = decode_all(stream, [NewRow(i, p, b) for i, (p, b) in enumerate(zip(prompts, budgets, strict=True))])
    for i, (prompt, budget) in enumerate(zip(prompts, budgets, strict=True)):
        ref = _alone(model, tok, prompt, budget)
        assert done[i].tokens == ref, (name, i)
        assert done[i].complete == (len(ref) < budget), (name, i)  # EOS within its own budget
    # finished rows left: fewer row-steps than every row decoding until the longest one ends
    assert stream.stats.row_steps < len(prompts) * stream.stats.steps
    assert stream.active == 0 and stream.cache is None


@pytest.mark.slow
def test_rows_joining_a_running_batch_equal_generate_alone(causal_lm):
    """Rows join mid-decode (one with a longer prompt than any running row, so the running rows'
    caches are left-padded), and others leave; every row still decodes as if alone."""
    name, model, tok = causal_lm
    prompts = [_ids(tok, p) for p in PROMPTS]
    stream = _stream(model, tok)
    done = {}
    stream.admit([NewRow("a", prompts[0], 20), NewRow("c", prompts[2], 6)])
    for _ in range(3):
        done.update((f.key, f) for f in stream.step())
    width_before = stream.attention.shape[1]
    stream.admit([NewRow("d", prompts[3], 16)])  # longest prompt: the running rows get left padding
    assert stream.attention.shape[1] > width_before
    for _ in range(2):
        done.update((f.key, f) for f in stream.step())
    stream.admit([NewRow("b", prompts[1], 12)])
    assert stream.active >= 2
    while stream.active:
        done.update((f.key, f) for f in stream.step())
    for key, i, budget in (("a", 0, 20), ("b", 1, 12), ("c", 2, 6), ("d", 3, 16)):
        assert done[key].tokens == _alone(model, tok, prompts[i], budget), (name, key)
    assert stream.stats.prefills == 3 and stream.stats.prefill_rows == 4
    # the profile's counters: real prompt tokens, and the padded widths of the three prefills
    stats = stream.stats
    assert stats.prefill_tokens == sum(len(p) for p in prompts)
    assert stats.prefill_padded_tokens == 2 * max(len(prompts[0]), len(prompts[2])) + len(prompts[3]) + len(prompts[1])
    prof = stats.profile()
    assert prof["prefill_seconds"] > 0 and prof["decode_seconds"] > 0 and prof["merge_seconds"] > 0
    assert sum(prof[k] for k in prof if k.endswith("_share") and k != "padding_share") == pytest.approx(1.0)
    assert 0 < prof["padding_share"] < 1 and prof["mean_batch"] == stats.row_steps / stats.steps


def test_padding_columns_are_trimmed_when_the_long_row_leaves(causal_lm):
    _, model, tok = causal_lm
    short, long = _ids(tok, PROMPTS[0]), _ids(tok, PROMPTS[3])
    stream = _stream(model, tok)
    stream.admit([NewRow("short", short, 30), NewRow("long", long, 1)])
    assert stream.attention.shape[1] == len(long)
    finished = stream.step()  # "long" has a budget of one token: it leaves now
    assert "long" in {f.key for f in finished}
    if stream.active:
        # only the short row is left: no column is padding for every row any more
        assert stream.attention.shape[1] == len(short) + 1
        assert bool(stream.attention.all())


@pytest.mark.slow
def test_grammar_rows_and_free_rows_share_a_batch(causal_lm, smollm2_dir):
    name, model, tok = causal_lm
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                "size": {"enum": ["small", "big"]}},
              "required": ["city", "size"], "additionalProperties": False}
    grammar = GrammarCache(tok, vocab_size=int(model.config.vocab_size)).for_schema(schema)
    stream = _stream(model, tok)
    stream.admit([NewRow("json", _ids(tok, "Name a city as JSON."), 60, grammar),
                  NewRow("free", _ids(tok, PROMPTS[1]), 8)])
    stream.admit([NewRow("json2", _ids(tok, "A town by the sea, as JSON?"), 60, grammar)])
    done = {}
    while stream.active:
        done.update((f.key, f) for f in stream.step())
    for key in ("json", "json2"):
        value = json.loads(tok.decode(done[key].tokens, skip_special_tokens=True))
        assert set(value) == {"city", "size"} and value["size"] in ("small", "big"), (name, value)
        assert done[key].complete
    assert len(done["free"].tokens) <= 8


@pytest.mark.slow
def test_dropped_rows_leave_without_a_result(causal_lm):
    _, model, tok = causal_lm
    stream = _stream(model, tok)
    stream.admit([NewRow(1, _ids(tok, PROMPTS[0]), 10), NewRow(2, _ids(tok, PROMPTS[1]), 10)])
    stream.step()
    stream.drop({1})
    assert stream.keys == [2]
    done = {}
    while stream.active:
        done.update((f.key, f) for f in stream.step())
    assert set(done) == {2}
    assert done[2].tokens == _alone(model, tok, _ids(tok, PROMPTS[1]), 10)


@pytest.mark.slow
def test_sampling_is_reproducible_with_a_seed(causal_lm):
    _, model, tok = causal_lm
    outs = []
    for _ in range(2):
        stream = DecodeStream(model, pad_id=tok.pad_token_id, eos_ids={tok.eos_token_id}, temperature=0.8,
                              min_p=0.05, repetition_penalty=1.05)
        outs.append(decode_all(stream, [NewRow(0, _ids(tok, PROMPTS[1]), 12, seed=7)])[0].tokens)
    assert outs[0] == outs[1] and len(outs[0]) > 0
