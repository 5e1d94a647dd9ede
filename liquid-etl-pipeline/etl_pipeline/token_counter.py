"""Token counting for the chunk budget, with the embedding model's own tokenizer.

Chunks are embedded by all-MiniLM-L6-v2 (which reads at most 256 word pieces) and prompted to a
small LLM, so the budget is counted in the embedder's word pieces: a chunk under the budget is
never silently truncated by the encoder. The ``tokenizers`` library loads the tokenizer file in
~0.1 s (no transformers import). Without it, a regex estimate (words and punctuation) is used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

_PIECES = re.compile(r"\w+|[^\w\s]")


class TokenCounter:
    """Counts tokens of many texts at once (``count_many``) or one (``count``)."""

    def __init__(self, tokenizer_file: Path | None = None):
        self.name = "regex-estimate"
        self._tok = None
        if tokenizer_file is not None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tokenizer_file))
            tok.no_truncation()
            tok.no_padding()
            self._tok = tok
            self.name = f"tokenizers:{tokenizer_file.parent.name}"

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._tok is None:
            return [len(_PIECES.findall(t)) for t in texts]
        return [len(enc.ids) for enc in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def count(self, text: str) -> int:
        return self.count_many([text])[0]


@lru_cache(maxsize=1)
def default_token_counter() -> TokenCounter:
    """The embedder's tokenizer when the offline MiniLM package is installed, else the estimate."""
    try:
        from liquid_shared.offline import minilm_path

        path = minilm_path() / "tokenizer.json"
        if path.is_file():
            return TokenCounter(path)
    except Exception:  # the package is missing: the estimate still gives a usable budget
        pass
    return TokenCounter(None)
