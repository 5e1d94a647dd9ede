"""``dtype="int8"``: int8 linear layers on the CPU (``liquid_shared.models.quantize``), through the
real load path, on SmolLM2 and the random LFM2, and batched grammar work (``RowGrammars``)."""

from __future__ import annotations

import pytest
import torch
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared.devices import resolve_placement
from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec
from liquid_shared.models.decoding import DecodeStream, NewRow, decode_all
from liquid_shared.models.quantize import int8_layer_count, int8_linear_layers
from liquid_shared.offline import SMOLLM2_ID


class Card(BaseModel):
    title: str = Field(max_length=60)
    facts: list[str] = Field(max_length=2)
    difficulty: int = Field(ge=1, le=5)


def test_int8_is_a_cpu_placement_with_its_own_label():
    p = resolve_placement("cpu", "int8")
    assert p.int8_weights and p.dtype == torch.float32 and p.label == "int8"
    assert resolve_placement("cpu", "fp32").label == "float32"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_placement("meta", "int8")


def test_int8_needs_an_fp32_cpu_model():
    with pytest.raises(ValueError, match="fp32 model on the CPU"):
        int8_linear_layers(torch.nn.Sequential(torch.nn.Linear(4, 4)).to(torch.bfloat16))


@pytest.mark.slow
async def test_smollm2_in_int8_loads_smaller_and_answers_valid_cards():
    registry = ModelRegistry(budget_bytes=8 * 2**30)
    fp32 = registry.get(ModelSpec(model=SMOLLM2_ID, dtype="fp32"))
    fp32_bytes = fp32.weight_bytes
    linear = sum(isinstance(m, torch.nn.Linear) for m in fp32.model.modules())
    spec = ModelSpec(model=SMOLLM2_ID, dtype="int8", temperature=0.0)
    agent = Agent(LiquidModel(spec, registry=registry), output_type=Card, instructions="Write a study card.")
    results = [await agent.run(f"Make a study card about {t}.") for t in ("volcanoes", "honey bees")]
    backend = registry.get(spec)
    assert backend.placement.label == "int8"
    # every linear layer is int8, the output head included; the input embedding stays fp32
    assert int8_layer_count(backend.model) == linear
    assert backend.model.get_input_embeddings().weight.dtype == torch.float32
    # the int8 layers are counted (packed weights are not parameters): a quarter of their fp32
    # bytes, plus the fp32 embedding (a fifth of SmolLM2's fp32 weights, tied to the head there)
    assert 0.3 * fp32_bytes < backend.weight_bytes < 0.5 * fp32_bytes
    for r in results:
        assert isinstance(r.output, Card) and r.output.title.strip()


def test_int8_lfm2_decodes_alone_as_generate_does_and_stays_close_to_fp32(tiny_lfm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lfm2_dir)
    fp32 = AutoModelForCausalLM.from_pretrained(tiny_lfm2_dir, dtype=torch.float32).eval()
    model = int8_linear_layers(AutoModelForCausalLM.from_pretrained(tiny_lfm2_dir, dtype=torch.float32).eval())
    assert int8_layer_count(model) > 0
    prompt = tok("A river runs to the sea and the hills", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        a = fp32(input_ids=torch.tensor([prompt])).logits[0, -1]
        b = model(input_ids=torch.tensor([prompt])).logits[0, -1]
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.98  # quantised, not broken
    assert not torch.equal(a, b)  # and really quantised
    # a row decoded alone by our stream equals generate on the same int8 model (greedy)
    stream = DecodeStream(model, pad_id=tok.pad_token_id, eos_ids={tok.eos_token_id})
    done = decode_all(stream, [NewRow(0, prompt, 12)])
    ids = torch.tensor([prompt])
    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         temperature=None, top_k=None, top_p=None)[0, len(prompt):].tolist()
    ref = ref[: ref.index(tok.eos_token_id)] if tok.eos_token_id in ref else ref
    assert done[0].tokens == ref


def test_batched_grammar_masks_equal_row_by_row_masks(smollm2_dir):
    """One ``BatchGrammarMatcher`` call per step fills the same bitmasks as one call per row, while
    rows advance, finish and are replaced (the replay of ``bench/bench_grammar_masks.py``)."""
    from transformers import AutoTokenizer

    from liquid_shared.models.grammar import GrammarCache, RowGrammars

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    cache = GrammarCache(tok, len(tok))
    grammars = [cache.for_schema({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0,
                                                                          "maximum": 99}},
                                  "required": ["n"], "additionalProperties": False}),
                cache.for_schema({"type": "object", "properties": {"w": {"enum": ["yes", "no"]}},
                                  "required": ["w"], "additionalProperties": False})]
    rows = {mode: RowGrammars(len(tok), batched=mode) for mode in (True, False)}
    keys = [0, 1, 2, "free"]
    for rg in rows.values():
        for k in keys:
            rg.add(k, None if k == "free" else grammars[k % 2])
    finished = 0
    rng = torch.Generator().manual_seed(0)
    for _ in range(30):
        lines = {mode: rg.fill(keys) for mode, rg in rows.items()}
        assert lines[True] == lines[False] and 3 not in lines[True]  # the free row is never masked
        assert torch.equal(rows[True].bitmask[:len(keys)], rows[False].bitmask[:len(keys)])
        scores = torch.randn(len(keys), len(tok), generator=rng)
        tokens = rows[True].apply(scores, lines[True]).argmax(dim=-1).tolist()
        for rg in rows.values():
            rg.accept_all(keys, tokens)
        for i, k in enumerate(keys[:3]):
            if rows[True].terminated(k):
                assert rows[False].terminated(k)
                finished += 1
                new = f"{k}-{finished}"
                for rg in rows.values():
                    rg.discard(k)
                    rg.add(new, grammars[finished % 2])
                keys[i] = new
    assert finished >= 3  # rows did complete their JSON and were replaced
