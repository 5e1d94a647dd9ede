"""liquid_shared: the parts every Liquid package leans on.

Public surface (imported lazily, so ``import liquid_shared`` stays cheap):

* models: ``ModelSpec``, ``ModelRegistry``, ``get_registry``, ``LiquidModel``, ``default_model``,
  ``model_for_role``, ``get_profile``, ``ModelLoadError``, ``resolve_source`` (where a spec's
  weights come from, without loading them; raises ``ModelLoadError`` when they are not available)
* ``Embedder``, ``get_embedder`` (sentence-transformers with an on-disk cache)
* ``LiquidSettings``, ``get_settings`` (``LIQUID_*`` env vars, ``liquid.toml``)
* schemas: ``Document``, ``Chunk``, ``ChunkMetadata``, ``Summary``, ``QAPair``,
  ``ValidationResult``, ``FineTuneSample``
* submodules ``metrics``, ``stats``, ``tracking``, ``data``, ``reporting``
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Offline by default (LIQUID_OFFLINE, default true): the hub libraries read their own switches when
# they are first imported, so they are set before anything of ours imports them.
if os.environ.get("LIQUID_OFFLINE", "true").strip().lower() not in ("0", "false", "no", "off"):
    for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(_var, "1")

_EXPORTS = {
    "ModelSpec": "liquid_shared.models",
    "ModelRegistry": "liquid_shared.models",
    "get_registry": "liquid_shared.models",
    "LiquidModel": "liquid_shared.models",
    "default_model": "liquid_shared.models",
    "model_for_role": "liquid_shared.models",
    "get_profile": "liquid_shared.models",
    "ModelLoadError": "liquid_shared.models",
    "resolve_source": "liquid_shared.models.loading",
    "Embedder": "liquid_shared.embeddings",
    "get_embedder": "liquid_shared.embeddings",
    "LiquidSettings": "liquid_shared.config",
    "get_settings": "liquid_shared.config",
    "Document": "liquid_shared.schemas",
    "Chunk": "liquid_shared.schemas",
    "ChunkMetadata": "liquid_shared.schemas",
    "Summary": "liquid_shared.schemas",
    "QAPair": "liquid_shared.schemas",
    "ValidationResult": "liquid_shared.schemas",
    "FineTuneSample": "liquid_shared.schemas",
    "content_hash": "liquid_shared.schemas",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'liquid_shared' has no attribute {name!r}")
