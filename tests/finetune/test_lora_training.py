"""LoRA SFT on tiny random Llama and LFM2 models: loss goes down, only adapter weights change, the
saved adapter reloads through the model registry with the in-memory model's logits, bad adapters fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from liquid_finetune import FinetuneConfig, finetune


def _train(base: Path, data: Path, out: Path, **overrides):
    settings = dict(data=data, output_dir=out, base_model=str(base), max_steps=12, learning_rate=1e-2,
                    batch_size=4, eval_fraction=0.25, eval_steps=6, logging_steps=1, lora_r=4, lora_alpha=8,
                    lora_dropout=0.0, track=False, progress=False, seed=0)
    settings.update(overrides)
    return finetune(FinetuneConfig(**settings))


def _base_state(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(folder).state_dict().items()}


def _probe_ids(folder: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "Context:\nThe item 3 box is black.\n\nQuestion: What colour?"}]
    return torch.tensor([tok.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]])


def _check_run(result, base: Path):
    # training lowered the loss (mean of the first three logged steps vs the last three)
    losses = [loss for _, loss in result.train_loss]
    assert len(losses) >= 6
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05
    assert result.eval_loss and result.best_eval_loss is not None

    # only adapter weights changed: every base tensor is bit-identical to the saved base model
    model = result.model
    before = _base_state(base)
    base_now = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                for k, v in model.state_dict().items() if "lora_" not in k}
    assert set(base_now) == set(before)
    for name, tensor in before.items():
        assert torch.equal(base_now[name], tensor), name
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # B starts at zero

    # the saved adapter, loaded through the registry, gives the in-memory model's logits
    from liquid_shared.models import ModelSpec
    from liquid_shared.models.registry import ModelRegistry

    ids = _probe_ids(base)
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        registry = ModelRegistry(budget_bytes=2**30)
        backend = registry.get(ModelSpec(model=str(base), adapter=str(result.adapter_dir), device="cpu"))
        got = backend.model(input_ids=ids).logits
        plain = registry.get(ModelSpec(model=str(base), device="cpu")).model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (plain - expected).abs().max() > 1e-3  # the adapter really changes the model
    registry.cleanup()


@pytest.mark.slow
def test_lora_on_tiny_llama(tiny_llama, tiny_llama_other, tiny_chat_file, tmp_path):
    result = _train(tiny_llama, tiny_chat_file, tmp_path / "run", merge=True)
    assert result.n_train == 12 and result.n_eval == 4
    modules = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in result.model.named_parameters() if "lora_A" in n}
    assert modules == {"q_proj", "k_proj", "v_proj", "o_proj"}
    _check_run(result, tiny_llama)

    # merged export: a plain transformers folder with the same logits
    from transformers import AutoModelForCausalLM

    ids = _probe_ids(tiny_llama)
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)(input_ids=ids).logits
        torch.testing.assert_close(merged, result.model(input_ids=ids).logits, rtol=1e-4, atol=1e-4)

    # an adapter for another base model: a clear error naming the adapter and both bases
    from liquid_shared.models import ModelLoadError, ModelSpec
    from liquid_shared.models.registry import ModelRegistry

    with pytest.raises(ModelLoadError) as info:
        ModelRegistry(budget_bytes=2**30).get(ModelSpec(model=str(tiny_llama_other), adapter=str(result.adapter_dir)))
    message = str(info.value)
    assert str(result.adapter_dir) in message and str(tiny_llama) in message and "hidden_size" in message
    with pytest.raises(ModelLoadError, match="not a PEFT adapter folder"):
        ModelRegistry(budget_bytes=2**30).get(ModelSpec(model=str(tiny_llama), adapter=str(tmp_path)))


@pytest.mark.slow
def test_lora_on_tiny_lfm2_and_the_cli(tiny_lfm2, tiny_chat_file, tmp_path):
    from typer.testing import CliRunner

    from liquid_finetune.finetune import app

    out = tmp_path / "lfm2"
    runner = CliRunner()
    assert "LoRA" in runner.invoke(app, ["--help"]).output
    bad = runner.invoke(app, [str(tmp_path / "nope.jsonl"), "-o", str(out)])
    assert bad.exit_code == 1 and "nope.jsonl" in bad.output
    result = _train(tiny_lfm2, tiny_chat_file, out)
    modules = {".".join(n.split(".lora_A")[0].rsplit(".", 2)[-2:])
               for n, _ in result.model.named_parameters() if "lora_A" in n}
    # attention projections and the convolution blocks' in/out projections
    assert {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
            "conv.in_proj", "conv.out_proj"} <= modules
    _check_run(result, tiny_lfm2)
