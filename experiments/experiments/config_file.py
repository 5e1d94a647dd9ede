"""``--config FILE``: experiment settings in TOML or JSON, one table per experiment.

    seed = 1                      # top-level keys apply to every experiment that has them
    experiments = ["rag_quality"] # what to run when the command line names nothing

    [rag_quality]
    dataset = "../shared/data/beir/scifact"
    variants = [{name = "bm25", retriever = "bm25"}, {name = "dense", retriever = "dense"}]

    [dual_pipeline]
    limit = 2

A file that cannot be read or parsed, or that names an unknown experiment, is an error of the
whole invocation (``ConfigFileError``); a table whose *values* are wrong fails only its own
experiment, when the runner validates it against that experiment's config type.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError


class ConfigFileError(ValueError):
    """The ``--config`` file cannot be used at all; the message names the file and the problem."""


@dataclass
class ConfigFile:
    path: Path | None = None
    common: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: list[str] = field(default_factory=list)


def read_config_file(path: Path | None, known: list[str]) -> ConfigFile:
    """Parse ``path`` (TOML, or JSON by its ``.json`` suffix); ``known`` are the experiment names."""
    if path is None:
        return ConfigFile()
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"config file {path}: not found" if not path.exists() else f"config file {path}: not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"config file {path}: cannot be read ({exc})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"config file {path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path}: invalid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path}: expected a table of settings at the top, got {type(data).__name__}")
    out = ConfigFile(path=path)
    for key, value in data.items():
        if key == "experiments":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigFileError(f"config file {path}: 'experiments' must be a list of names, got {value!r}")
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ConfigFileError(f"config file {path}: 'experiments' names unknown experiment(s) {unknown}; "
                                      f"known: {', '.join(known)}")
            out.experiments = names
        elif isinstance(value, dict):
            if key not in known:
                raise ConfigFileError(f"config file {path}: table [{key}] is not an experiment; known: {', '.join(known)}")
            out.sections[key] = value
        else:
            out.common[key] = value
    return out


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(config)"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{where}: {err['msg']}{shown}")
    return "; ".join(lines)
