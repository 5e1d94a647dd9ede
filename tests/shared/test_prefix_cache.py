"""The shared-prefix cache: decoding on a cached prefix gives the same greedy tokens as prefilling
the whole prompt, for Llama (SmolLM2: attention only) and LFM2 (convolution states too), with rows
that share prefixes of several lengths, join a running batch and leave it; memory stays bounded.

The reference is the same stream without a cache (itself tested against ``generate`` alone in
test_decoding.py). fp32, greedy, repetition penalty on, so that the comparison is exact.
"""

from __future__ import annotations

import pytest

from liquid_shared.models.decoding import DecodeStream, NewRow
from liquid_shared.models.prefix_cache import PrefixCache

SYSTEMS = [
    "You label passages.",
    "You are a careful assistant. Answer in one short sentence, using only facts stated in the passage.",
]
PASSAGES = ["Bees make honey from nectar.", "The Rhine flows from the Alps to the North Sea, past Basel and Cologne.",
            "Copper conducts heat well.", "A hive has one queen and thousands of workers."]


def _ids(tok, messages, generation_prompt=True) -> list[int]:
    ids = tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
    return list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)


def _rows(tok) -> list[NewRow]:
    """Prompts = a system turn (the named prefix) + a passage; 2 systems x 4 passages, and budgets
    that differ so rows leave at different steps."""
    rows = []
    for s, system in enumerate(SYSTEMS):
        prefix = _ids(tok, [{"role": "system", "content": system}], generation_prompt=False)
        for p, passage in enumerate(PASSAGES):
            prompt = _ids(tok, [{"role": "system", "content": system}, {"role": "user", "content": passage}])
            assert prompt[:len(prefix)] == prefix
            rows.append(NewRow((s, p), prompt, 4 + 5 * p, prefix_len=len(prefix)))
    return rows


def _decode(model, tok, rows: list[NewRow], cache: PrefixCache | None, admissions: list[list[int]]) -> dict:
    """Admit ``rows`` in the given groups, two decode steps between admissions, then drain."""
    stream = DecodeStream(model, pad_id=tok.pad_token_id, eos_ids={tok.eos_token_id}, repetition_penalty=1.05,
                          prefix_cache=cache)
    done = {}
    for group in admissions:
        stream.admit([rows[i] for i in group])
        for _ in range(2):
            done.update((f.key, f.tokens) for f in stream.step())
    while stream.active:
        done.update((f.key, f.tokens) for f in stream.step())
    return done, stream.stats


@pytest.mark.slow
def test_cached_prefixes_decode_like_whole_prompts(causal_lm):
    name, model, tok = causal_lm
    rows = _rows(tok)
    # first admission: rows of both systems at once (two prefixes prefilled in one pass); later
    # admissions join a running batch and hit the cache, some with a longer prompt than any running row
    admissions = [[0, 4], [1, 5, 2], [7], [3, 6]]
    reference, ref_stats = _decode(model, tok, rows, None, admissions)
    cache = PrefixCache()
    cached, stats = _decode(model, tok, rows, cache, admissions)
    assert cached == reference, name
    report = cache.report()
    assert report["entries"] == 2 and report["lookups"] == len(rows)
    assert report["hits"] == len(rows) - 2  # every row but the first of each system
    saved = sum(r.prefix_len for r in rows) - sum(rows[i].prefix_len for i in (0, 4))
    assert report["tokens_saved"] == saved
    assert stats.prefill_tokens == ref_stats.prefill_tokens - saved

    # a second run on the same cache: every prefix is a hit, the outputs are unchanged
    again, _ = _decode(model, tok, rows, cache, [[3, 1, 6], [0, 2, 4, 5, 7]])
    assert again == reference, name
    assert cache.report()["hits"] == report["hits"] + len(rows)


@pytest.mark.slow
def test_the_cache_stays_under_its_bound_and_evicts_the_oldest(causal_lm):
    name, model, tok = causal_lm
    rows = _rows(tok)
    sizes = []
    for i in (0, 4):  # the entry of each system turn
        probe = PrefixCache()
        _decode(model, tok, rows, probe, [[i]])
        sizes.append(probe.bytes_held)
    assert sizes[1] > sizes[0] > 0  # bytes grow with the prefix's tokens
    # room for either entry, not both: each new prefix evicts the other
    cache = PrefixCache(max_bytes=sizes[1] + sizes[0] // 2)
    reference, _ = _decode(model, tok, rows, None, [[0], [4], [1]])
    out, _ = _decode(model, tok, rows, cache, [[0], [4], [1]])
    assert out == reference, name
    assert cache.bytes_held <= cache.max_bytes
    assert cache.report()["evicted"] >= 1 and len(cache) == 1
    assert cache.report()["hits"] == 0  # row 1's prefix (system 0) was evicted by system 1's

    tiny = PrefixCache(max_bytes=16)  # smaller than any entry: nothing is kept, outputs unchanged
    out, _ = _decode(model, tok, rows, tiny, [[0, 1]])
    assert out == _decode(model, tok, rows, None, [[0, 1]])[0], name
    assert len(tiny) == 0 and tiny.report()["too_large"] == 1 and tiny.bytes_held == 0


@pytest.mark.slow
def test_rows_without_a_usable_prefix_are_prefilled_whole(causal_lm):
    _, model, tok = causal_lm
    rows = _rows(tok)
    plain = NewRow("plain", rows[0].prompt, 6)  # prefix_len 0
    whole = NewRow("whole", rows[1].prompt, 6, prefix_len=len(rows[1].prompt))  # nothing after it
    cache = PrefixCache()
    out, _ = _decode(model, tok, [plain, whole, rows[2]], cache, [[0, 1, 2]])
    ref, _ = _decode(model, tok, [plain, whole, rows[2]], None, [[0, 1, 2]])
    assert out == ref
    assert cache.report()["lookups"] == 1 and len(cache) == 1


def test_a_bound_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixCache(max_bytes=0)
