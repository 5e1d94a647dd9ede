"""Resolve a ``ModelSpec`` to files and load it with transformers, failing fast and clearly.

* ``offline:*`` aliases resolve to the embedded defaults (see ``liquid_shared.offline``), and so do
  the bundled models' standard names (``HuggingFaceTB/SmolLM2-135M-Instruct``) when the Hugging
  Face cache holds no copy of their own.
* A local folder loads as is. A path-like string that does not exist is an error naming it.
* A hub id (``LiquidAI/LFM2-1.2B``) loads from the Hugging Face cache. With ``settings.offline``
  (the default) we never contact the hub: an id that is not cached raises ``ModelLoadError`` at
  once, with the command that fixes it, instead of hanging in retries.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import torch

from liquid_shared.config import get_settings
from liquid_shared.devices import Placement, resolve_placement
from liquid_shared.models.errors import ModelLoadError
from liquid_shared.models.spec import ModelSpec
from liquid_shared.offline import (
    SMOLLM2_ID,
    OfflineModelMissing,
    bundled_alias,
    ensure_smollm2,
    known_names_hint,
)

log = logging.getLogger(__name__)

OFFLINE_ALIASES = {SMOLLM2_ID: ensure_smollm2}


def resolve_source(spec: ModelSpec) -> tuple[str, dict[str, Any]]:
    """Return (path-or-id, extra from_pretrained kwargs) without loading anything (for a remote
    spec: its base_url; nothing is loaded here)."""
    if spec.is_remote:
        return str(spec.base_url), {}
    name = spec.model
    alias = bundled_alias(name)
    if alias in OFFLINE_ALIASES and (name.startswith("offline:") or not _in_hub_cache(name)):
        name = alias
    if name.startswith("offline:"):
        if name not in OFFLINE_ALIASES:
            raise ModelLoadError(f"unknown offline model alias {name!r}; known: {sorted(OFFLINE_ALIASES)}")
        try:
            return str(OFFLINE_ALIASES[name]()), {}
        except OfflineModelMissing as exc:
            raise ModelLoadError(str(exc)) from exc
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model folder {path} has no config.json; it is not a transformers model folder")
        return str(path), {}
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or path.suffix in (".gguf", ".bin")
    if looks_like_path:
        raise ModelLoadError(f"model path {name!r} does not exist; check the path or use a hub id like 'LiquidAI/LFM2-1.2B'")
    if get_settings().offline:
        if not _in_hub_cache(name):
            raise ModelLoadError(
                f"model {name!r} is not a local folder and is not in the Hugging Face cache, and offline mode "
                "is on (LIQUID_OFFLINE=true), so it cannot be downloaded. Fix: on a machine with network run "
                f"`hf download {name}` (or copy its folder here and pass the path), or set "
                f"LIQUID_OFFLINE=false to allow downloads. The {known_names_hint()}."
            )
        return name, {"local_files_only": True}
    return name, {}


def _in_hub_cache(name: str) -> bool:
    if "/" not in name:
        return False
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def estimate_weight_bytes(source: str, extra: dict[str, Any], placement: Placement) -> int:
    """Bytes the weights will take once loaded, from the config alone (built on the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source, **extra)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    return int(n * torch.tensor([], dtype=placement.dtype).element_size())


_LOAD_LOCK = threading.Lock()


def placement_for(spec: ModelSpec) -> Placement:
    """Device and dtype for ``spec``: its own fields, else ``LIQUID_DEVICE`` / ``LIQUID_DTYPE``, else auto."""
    settings = get_settings()
    return resolve_placement(spec.device or settings.device, spec.dtype or settings.dtype)


def load_model_and_tokenizer(spec: ModelSpec) -> tuple[Any, Any, Placement]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, extra = resolve_source(spec)
    placement = placement_for(spec)
    try:
        # One load at a time per process: from_pretrained sets torch's *global* default dtype while
        # it builds the model, so two loads in threads (two specs, different dtypes) can leave
        # layers of one model in the other's dtype.
        with _LOAD_LOCK:
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            model = AutoModelForCausalLM.from_pretrained(source, **placement.load_kwargs(), **extra)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model {spec.model!r} from {source}: {exc}") from exc
    if spec.adapter is not None:
        from liquid_shared.models.adapters import apply_adapter

        model = apply_adapter(model, spec.adapter, base_name=spec.model)
    if placement.device_map is None:
        model.to(placement.device)
    model.eval()
    if placement.int8_weights:
        from liquid_shared.models.quantize import int8_linear_layers

        int8_linear_layers(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer, placement


def weight_bytes(model: Any) -> int:
    from liquid_shared.models.quantize import int8_weight_bytes

    params = sum(p.numel() * p.element_size() for p in model.parameters())
    bufs = sum(b.numel() * b.element_size() for b in model.buffers())
    return int(params + bufs + int8_weight_bytes(model))
