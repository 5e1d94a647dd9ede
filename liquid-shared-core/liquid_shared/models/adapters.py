"""LoRA adapters on top of a loaded base model: ``ModelSpec(model=..., adapter=FOLDER)``.

An adapter folder is PEFT's format (``adapter_config.json`` + ``adapter_model.safetensors``) plus
our ``liquid_adapter.json``: the base model it was trained on (the spec's ``model`` string) and a
fingerprint of that base's architecture (model type and shapes). Loading checks the fingerprint
before PEFT touches the weights, so an adapter trained on another base fails with an error naming
the adapter and both bases instead of a wall of shape mismatches (or, worse, loading silently onto
a model of the same shapes). Folders without our file (adapters made elsewhere) load when PEFT
accepts them; PEFT's errors are re-raised as ``ModelLoadError`` naming the folder.

The adapter is merged into the base weights (``merge_and_unload``), so the registry serves a plain
transformers model: the decode loop, the cache merging and the speed are the base model's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from liquid_shared.models.errors import ModelLoadError

log = logging.getLogger(__name__)

ADAPTER_META_FILE = "liquid_adapter.json"
_FINGERPRINT_FIELDS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                       "num_attention_heads", "num_key_value_heads")


def base_fingerprint(config: Any) -> dict[str, Any]:
    """The architecture facts an adapter depends on, from a transformers config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {name: getattr(text, name, None) for name in _FINGERPRINT_FIELDS}


def write_adapter_meta(folder: Path, base_name: str, config: Any, extra: dict[str, Any] | None = None) -> Path:
    """Record which base ``folder``'s adapter belongs to (called by the trainer after saving)."""
    path = Path(folder) / ADAPTER_META_FILE
    meta = {"base_model": base_name, "base_fingerprint": base_fingerprint(config), **(extra or {})}
    path.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return path


def read_adapter_meta(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / ADAPTER_META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"adapter metadata {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None


def check_adapter_folder(adapter: str | Path, base_name: str, config: Any) -> Path:
    """The adapter folder, after checking it exists and was trained on a base like ``config``."""
    folder = Path(adapter).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter {str(adapter)!r} is not a PEFT adapter folder (no adapter_config.json there)")
    meta = read_adapter_meta(folder)
    if meta is not None:
        want = meta.get("base_fingerprint") or {}
        have = base_fingerprint(config)
        diff = {k: (want.get(k), have[k]) for k in have if k in want and want.get(k) != have[k]}
        if diff:
            details = ", ".join(f"{k}: adapter {a!r} vs base {b!r}" for k, (a, b) in diff.items())
            raise ModelLoadError(
                f"adapter {str(adapter)!r} was trained on base model {meta.get('base_model')!r}, which does not "
                f"match the base model {base_name!r} it is being loaded on ({details}); load it with "
                f"ModelSpec(model={meta.get('base_model')!r}, adapter=...)"
            )
        if meta.get("base_model") not in (None, base_name):
            log.warning("adapter %s was trained on %r and is loaded on %r (same architecture and shapes)",
                        folder, meta.get("base_model"), base_name)
    return folder


def apply_adapter(model: Any, adapter: str | Path, *, base_name: str) -> Any:
    """``model`` with the LoRA adapter in ``adapter`` merged into its weights."""
    folder = check_adapter_folder(adapter, base_name, model.config)
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ModelLoadError(f"adapter {str(adapter)!r} needs peft; install the liquid-finetune package") from exc
    try:
        tuned = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise ModelLoadError(f"cannot apply adapter {str(adapter)!r} to base model {base_name!r}: "
                             f"{str(exc)[:500]}") from exc
    return tuned.merge_and_unload()
