"""The running batch's attention cache (``SlotLayer``): what the model sees equals a plain,
left-padded cache after any sequence of steps, joins, leaves and trims, and decoding on it equals
``generate`` on each prompt alone, also when its buffers have to grow many times."""

from __future__ import annotations

import pytest
import torch
from decoding_helpers import chat_ids, generate_alone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liquid_shared.models import slot_cache
from liquid_shared.models.decoding import DecodeStream, NewRow, length_groups
from liquid_shared.models.slot_cache import SlotLayer, compaction_order

HEADS, DIM = 2, 3


class Reference:
    """Each row's keys as its own tensor [heads, length, dim] (no padding at all)."""

    def __init__(self):
        self.rows: list[torch.Tensor] = []

    def check(self, layer: SlotLayer) -> None:
        keys, values = layer.keys, layer.values
        assert keys.shape[0] == len(self.rows)
        assert keys.shape[2] == layer.get_seq_length() >= max(r.shape[1] for r in self.rows)
        for i, row in enumerate(self.rows):
            n = row.shape[1]
            assert torch.equal(keys[i, :, keys.shape[2] - n:], row)
            assert torch.equal(values[i, :, keys.shape[2] - n:], -row)  # values are stored as -keys here
        assert torch.isfinite(keys).all() and torch.isfinite(values).all()  # padding never holds NaN


def _rows(counter: list[int], lengths: list[int]) -> list[torch.Tensor]:
    out = []
    for n in lengths:
        out.append(torch.arange(counter[0], counter[0] + HEADS * n * DIM, dtype=torch.float32).view(HEADS, n, DIM))
        counter[0] += HEADS * n * DIM
    return out


def _padded(rows: list[torch.Tensor]) -> torch.Tensor:
    width = max(r.shape[1] for r in rows)
    return torch.stack([torch.nn.functional.pad(r, (0, 0, width - r.shape[1], 0)) for r in rows])


def _nan_buffer(shape, like):
    return like.new_full(shape, float("nan"))


operation = st.one_of(
    st.tuples(st.just("step"), st.integers(1, 3)),
    st.tuples(st.just("join"), st.lists(st.integers(1, 12), min_size=1, max_size=4)),
    st.tuples(st.just("leave"), st.lists(st.booleans(), min_size=1, max_size=12)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.integers(1, 12), min_size=1, max_size=5), ops=st.lists(operation, max_size=25))
def test_the_window_equals_a_plain_left_padded_cache(monkeypatch, first, ops):
    monkeypatch.setattr(slot_cache, "MIN_COLUMNS", 2)  # tiny spare room: buffers grow all the time
    monkeypatch.setattr(slot_cache, "ROW_ALIGN", 1)
    monkeypatch.setattr(slot_cache, "LEFT_SLACK", 1)
    monkeypatch.setattr(slot_cache, "_empty", _nan_buffer)  # uncleared memory: only written columns may be seen
    counter = [0]
    ref = Reference()
    ref.rows = _rows(counter, first)
    keys = _padded(ref.rows)
    layer = SlotLayer(keys, -keys)
    ref.check(layer)
    for kind, arg in ops:
        if kind == "step":  # every row gets ``arg`` new columns, as in a forward pass
            new = _rows(counter, [arg] * len(ref.rows))
            k = torch.stack(new)
            out_k, out_v = layer.update(k, -k)
            assert out_k is layer.keys and out_v is layer.values
            ref.rows = [torch.cat([r, n], dim=1) for r, n in zip(ref.rows, new, strict=True)]
        elif kind == "join":
            new = _rows(counter, arg)
            k = _padded(new)
            layer.append(k, -k)
            ref.rows += new
        else:
            keep = [i for i, stay in enumerate(arg[:len(ref.rows)]) if stay] or [0]
            order = compaction_order(keep)
            layer.keep_rows(order)
            ref.rows = [ref.rows[i] for i in order]
            # columns that are padding for every row are dropped, as the decode stream does
            dead = layer.get_seq_length() - max(r.shape[1] for r in ref.rows)
            layer.trim_left(dead)
            assert layer.get_seq_length() == max(r.shape[1] for r in ref.rows)
        ref.check(layer)


def test_compaction_moves_only_rows_from_the_end():
    assert compaction_order([0, 1, 2]) == [0, 1, 2]
    assert compaction_order([0, 2, 5, 6]) == [0, 6, 2, 5]  # holes 1 and 3 take rows 6 and 5
    assert compaction_order([3, 4, 7]) == [7, 4, 3]  # three holes, each filled from the end
    # any other order is still honoured (one gather copy)
    layer = SlotLayer(torch.arange(12.0).view(3, 1, 4, 1), -torch.arange(12.0).view(3, 1, 4, 1))
    layer.keep_rows([2, 0])
    assert layer.keys[:, 0, :, 0].tolist() == [[8, 9, 10, 11], [0, 1, 2, 3]]


def test_a_step_writes_in_place_and_a_leave_copies_no_whole_cache():
    keys = torch.randn(6, HEADS, 10, DIM)
    layer = SlotLayer(keys, keys.clone(), spare_rows=2)
    buffer = layer._kbuf.data_ptr()
    for _ in range(5):
        k = torch.randn(6, HEADS, 1, DIM)
        layer.update(k, k)
    assert layer._kbuf.data_ptr() == buffer  # no reallocation while the spare columns last
    layer.keep_rows(compaction_order([0, 2, 3, 4, 5]))  # row 1 leaves: row 5 moves into its slot
    layer.append(torch.randn(2, HEADS, 4, DIM), torch.randn(2, HEADS, 4, DIM))
    assert layer._kbuf.data_ptr() == buffer and layer.keys.shape[0] == 7


def test_prefill_passes_group_rows_of_similar_length():
    lengths = [100, 12, 95, 40, 98, 41]
    groups = length_groups(list(range(6)), lengths)
    assert [sorted(g) for g in groups] == [[0, 2, 4], [3, 5], [1]]
    for g in groups:  # padding per pass stays within the tolerance
        longest = max(lengths[i] for i in g)
        assert all(longest - lengths[i] <= 0.125 * longest + 8 for i in g)
    assert [sorted(g) for g in length_groups(list(range(4)), [5, 5, 6, 5], exact=True)] == [[2], [0, 1, 3]]


TOPICS = ["rivers", "the moon", "bread", "glass", "owls", "copper", "trains", "salt", "maps", "tea", "bees", "ice"]


@pytest.mark.slow
def test_many_joins_and_leaves_with_growing_buffers_equal_generate_alone(causal_lm, monkeypatch):
    """Twelve rows of uneven prompts and budgets join a running batch at different steps while
    others leave; with no spare room the cache's buffers are re-laid out over and over. Every
    row's greedy tokens equal ``generate`` on its prompt alone (fp32)."""
    monkeypatch.setattr(slot_cache, "MIN_COLUMNS", 1)
    monkeypatch.setattr(slot_cache, "ROW_ALIGN", 1)
    monkeypatch.setattr(slot_cache, "LEFT_SLACK", 0)
    monkeypatch.setattr(slot_cache, "_empty", _nan_buffer)  # a NaN the attention could see would spoil a row
    name, model, tok = causal_lm
    prompts = [chat_ids(tok, f"Tell me {'a lot ' * (i % 4)}about {t}.") for i, t in enumerate(TOPICS)]
    budgets = [3 + (7 * i) % 13 for i in range(len(prompts))]
    stream = DecodeStream(model, pad_id=tok.pad_token_id, eos_ids={tok.eos_token_id}, repetition_penalty=1.05)
    done: dict = {}
    waiting = list(range(len(prompts)))
    most = 0
    while waiting or stream.active:
        if waiting:  # one to three newcomers every step
            take, waiting = waiting[:1 + len(waiting) % 3], waiting[1 + len(waiting) % 3:]
            stream.admit([NewRow(i, prompts[i], budgets[i]) for i in take])
        most = max(most, stream.active)
        done.update((f.key, f) for f in stream.step())
    assert most >= 5
    for i, prompt in enumerate(prompts):
        assert done[i].tokens == generate_alone(model, tok, prompt, budgets[i]), (name, i)
