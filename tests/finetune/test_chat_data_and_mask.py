"""Chat JSONL checks (bad input named) and the assistant-only loss mask on rendered examples."""

from __future__ import annotations

import json

import pytest

from liquid_finetune import ChatDataError, read_chat_jsonl, split_eval, tokenize_conversation


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from liquid_shared.offline import ensure_smollm2

    return AutoTokenizer.from_pretrained(ensure_smollm2())


def test_mask_covers_assistant_tokens_only(smollm2_tokenizer):
    tok = smollm2_tokenizer
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris, on the Seine."},
                {"role": "user", "content": "And of Italy?"},
                {"role": "assistant", "content": "Rome."}]
    out = tokenize_conversation(tok, messages)
    ids, mask = out["input_ids"], out["assistant_masks"]
    # the tokens are exactly the chat template's rendering
    assert ids == tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    target = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert target == "Paris, on the Seine.<|im_end|>\nRome.<|im_end|>\n"
    prompt = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    for text in ("Be brief.", "Capital of France?", "And of Italy?", "<|im_start|>assistant\n"):
        assert text in prompt
    assert "Paris" not in prompt and "Rome" not in prompt


def test_mask_ignores_empty_system_and_user_turns(smollm2_tokenizer):
    out = tokenize_conversation(smollm2_tokenizer, [{"role": "user", "content": "Hi"},
                                                    {"role": "assistant", "content": "Hello there"}])
    # SmolLM2's template adds its default system prompt when there is none; it must stay unmasked
    text = smollm2_tokenizer.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m])
    assert text == "Hello there<|im_end|>\n"


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_lines_are_named(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    cases = {
        json.dumps({"text": "no messages here"}): "no 'messages' field",
        "{not json": "not valid JSON",
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}): "no non-empty assistant",
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}): "role 'robot'",
        json.dumps({"messages": [{"role": "assistant", "content": 3}]}): "no string 'content'",
    }
    for i, (bad, expected) in enumerate(cases.items()):
        path = _write(tmp_path / f"bad{i}.jsonl", [good, "", bad])
        with pytest.raises(ChatDataError) as info:
            read_chat_jsonl(path)
        assert f"{path}:3" in str(info.value) and expected in str(info.value)


def test_empty_and_missing_files(tmp_path):
    empty = _write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(ChatDataError, match="empty"):
        read_chat_jsonl(empty)
    with pytest.raises(ChatDataError, match="does not exist"):
        read_chat_jsonl(tmp_path / "missing.jsonl")


def test_split_is_seeded_and_disjoint():
    convs = [[{"role": "assistant", "content": str(i)}] for i in range(20)]
    train, evals = split_eval(convs, 0.2, seed=3)
    assert len(evals) == 4 and len(train) == 16
    assert sorted(c[0]["content"] for c in train + evals) == sorted(str(i) for i in range(20))
    assert split_eval(convs, 0.2, seed=3) == (train, evals)
    assert split_eval(convs, 0.2, seed=4) != (train, evals)
    with pytest.raises(ChatDataError, match="cannot be split"):
        split_eval(convs[:1], 0.5, seed=0)
