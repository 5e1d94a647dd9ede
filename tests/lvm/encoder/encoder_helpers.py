"""A tiny random BERT as a sentence-transformers base (MiniLM tokenizer, 2 layers of width 32, no dropout so that runs
with different batch splits can agree): fast tests."""

from __future__ import annotations

from pathlib import Path


def make_tiny_base(folder: Path, seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from liquid_shared.offline import minilm_path

    if (folder / "st" / "modules.json").is_file():
        return folder / "st"
    raw = folder / "raw"
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))  # deterministic
    model.save_pretrained(raw)
    tok.save_pretrained(raw)
    st = SentenceTransformer(modules=[Transformer(str(raw), max_seq_length=64), Pooling(32, "mean"), Normalize()],
                             device="cpu")
    st.save(str(folder / "st"))
    return folder / "st"


QUERIES = ["how do bees make honey", "why is the sky blue", "what causes ocean tides", "how do volcanoes form",
           "what is photosynthesis", "how does a bike chain work", "who invented the printing press",
           "how does sourdough rise"]
DOCS = ["Bees turn nectar into honey by evaporation and enzymes.", "Rayleigh scattering makes the sky look blue.",
        "The moon's gravity raises the ocean tides twice a day.", "Shield volcanoes form from runny basalt lava.",
        "Plants make sugar from light, water and carbon dioxide.", "A chain links the pedals to the rear wheel.",
        "Gutenberg built a press with movable metal type.", "Wild yeast and bacteria make sourdough rise."]
