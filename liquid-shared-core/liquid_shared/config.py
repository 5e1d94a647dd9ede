"""Settings for the whole stack, read from ``LIQUID_*`` environment variables and an optional file.

Precedence (highest first): explicit arguments, environment variables (``LIQUID_PROFILE=lfm2``),
the TOML/JSON file named by ``LIQUID_CONFIG_FILE`` (or ``liquid.toml`` in the working folder),
then the defaults below.
"""

from __future__ import annotations

import json
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "liquid-stack"


class _FileSource(PydanticBaseSettingsSource):
    """Reads a TOML or JSON settings file (keys are the field names, no prefix)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        path = os.environ.get("LIQUID_CONFIG_FILE")
        candidate = Path(path) if path else Path("liquid.toml")
        self._data: dict[str, Any] = {}
        if path and not candidate.is_file():
            raise FileNotFoundError(
                f"LIQUID_CONFIG_FILE={path!r} does not exist; unset it or point it at a TOML/JSON file"
            )
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8")
            try:
                self._data = json.loads(text) if candidate.suffix == ".json" else tomllib.loads(text)
            except (ValueError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"settings file {candidate}: cannot parse: {exc}") from exc

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class LiquidSettings(BaseSettings):
    """Stack-wide settings. Every field can be set as ``LIQUID_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="LIQUID_", extra="ignore")

    profile: str = Field("offline", description="Named model profile: 'offline' (default) or 'lfm2'.")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Converted models, embedding cache.")
    memory_budget_gb: float | None = Field(
        None, description="Upper bound on the summed weights of loaded models; None = 80% of free device memory."
    )
    device: str | None = Field(None, description="Force a device ('cpu', 'cuda', 'cuda:0'); None = auto.")
    prefix_cache_mb: float = Field(
        256.0, ge=0, description="Shared-prefix cache of every in-process model whose spec sets none (MB; a "
        "request's system turn is prefilled once and reused); 0 disables it.")
    max_batch_size: int = Field(
        48, ge=1, description="Most requests decoding at once in one running batch of an in-process model whose spec "
        "sets none. On a CPU a decode step of 48 rows costs about twice one of 16 rows, so larger batches raise "
        "throughput and slow each step (docs/models.md, 'The running batch').")
    dtype: str | None = Field(
        None, description="Weights dtype for every model whose spec names none ('bf16', 'fp16', 'fp32', or 'int8' on a CPU: see ModelSpec.dtype); None = auto."
    )
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI; None = sqlite in the project folder.")
    data_dir: Path | None = Field(
        None, description="Folder with shared evaluation data (BEIR SciFact, Wikipedia); also LIQUID_DATA_DIR."
    )
    offline: bool = Field(True, description="Never contact a model hub (HF_HUB_OFFLINE).")
    openai_base_url: str | None = Field(
        None, description="The 'remote' profile's engine: an OpenAI-compatible /v1 URL (vLLM, llama-server)."
    )
    openai_model: str = Field(
        "smollm2-135m-instruct",
        description="The 'remote' profile's model name on the server; LIQUID_OPENAI_MODEL_<STAGE> overrides one stage.",
    )
    openai_api_key_env: str | None = Field(
        None, description="Name of the env variable with the remote engine's API key (None: the server needs none)."
    )
    openai_max_concurrency: int = Field(
        16, ge=1, description="The 'remote' profile's requests in flight per model (match the server's slots)."
    )
    openai_tool_calls: Literal["server", "json_schema"] = Field(
        "server", description="The 'remote' profile's ModelSpec.remote_tool_calls: 'server' (the server's tools=) or "
        "'json_schema' (our JSON convention as a json_schema response; for templates without a tool syntax)."
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _FileSource(settings_cls))


@lru_cache(maxsize=1)
def get_settings() -> LiquidSettings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing the env)."""
    return LiquidSettings()
