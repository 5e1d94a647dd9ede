"""How far to trust a run's QA pairs: the calibrated kept-pair precision of its model and profile.

``python -m etl_pipeline.calibrate`` measures, on a SQuAD-format file, the precision of the pairs a
model and validation profile keep (``liquid_shared.metrics.kept_pairs``) and stores it in
``<cache_dir>/calibration/<model key>.json``, beside the converted models (``cache_dir`` is
``LIQUID_CACHE_DIR``, default ``~/.cache/liquid-stack``). The model key hashes the ``models``
and ``embedding_model`` parts of the run's settings fingerprint, so another model, dtype or
device has its own file; inside, one entry per ``<validation profile>/<QA mode>``.

Every run looks its entry up (``trust_statement``): the run report, the printed summary and the
fine-tuning data's card (``ft/README.md``) carry the precision, or say it was never measured.
Below ``min_precision`` (or unmeasured) the fine-tuning data is called unverified;
``require_precision`` makes the run refuse to start (``check_required_precision``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

from etl_pipeline.config import EtlConfig, changed_settings
from liquid_shared.atomic import write_json_atomic

COMPARED_SETTINGS: tuple[str, ...] = (
    "qa_per_chunk", "grounding_threshold", "judge_threshold", "roundtrip_threshold", "temperature", "prompt_layout",
    "max_chunk_tokens", "prompt_version", "code_version",
)
"""Settings besides the model that change which pairs are generated and kept: a calibration made
under other values is still shown, with the settings that differ named."""

_UNVERIFIED = "fine-tuning data is unverified: "
CALIBRATE_COMMAND = "python -m etl_pipeline.calibrate --input SQUAD.json"


def calibration_dir() -> Path:
    from liquid_shared.config import get_settings

    return get_settings().cache_dir / "calibration"


def model_key(config: EtlConfig) -> str:
    """Hash of the model part of ``config``'s settings fingerprint (every role's resolved spec, the embedder)."""
    fp = config.fingerprint_settings()
    part = {"models": fp["models"], "embedding_model": fp["embedding_model"]}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


def calibration_file(config: EtlConfig) -> Path:
    return calibration_dir() / f"{model_key(config)}.json"


def entry_key(config: EtlConfig) -> str:
    return f"{config.validation_profile}/{config.qa_mode}"


def compared_settings(config: EtlConfig) -> dict[str, Any]:
    fp = config.fingerprint_settings()
    return {k: fp.get(k) for k in COMPARED_SETTINGS}


def load_calibrations(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"calibration file {path} is not readable JSON ({exc}); delete it or run the calibration again") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise ValueError(f"calibration file {path} has no 'entries' object; delete it or run the calibration again")
    return data


def save_calibration(config: EtlConfig, entry: dict[str, Any]) -> Path:
    """Store ``entry`` (the measured figures) for ``config``'s model, profile and QA mode."""
    path = calibration_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_calibrations(path) or {"model_key": model_key(config), "models": config.fingerprint_settings()["models"],
                                       "entries": {}}
    data["entries"][entry_key(config)] = {
        **entry, "settings": compared_settings(config), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(path, data)
    return path


def lookup(config: EtlConfig) -> dict[str, Any] | None:
    """The calibration entry of ``config``'s model, profile and QA mode, or None."""
    try:
        return load_calibrations(calibration_file(config)).get("entries", {}).get(entry_key(config))
    except ValueError:
        return None


def _defined(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _fmt(ci: dict[str, Any]) -> str:
    if not _defined(ci.get("mean")):
        return f"undefined (n={ci.get('n', 0)})"
    if not (_defined(ci.get("low")) and _defined(ci.get("high"))):
        return f"{ci['mean']:.2f} (n={ci['n']}, no interval)"
    return f"{ci['mean']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}] (n={ci['n']})"


def _precision(statement: dict[str, Any]) -> float | None:
    """The calibrated precision, or None where none was measured or no pair was kept."""
    p = statement.get("precision") or {}
    return p["mean"] if _defined(p.get("mean")) else None


def trust_statement(config: EtlConfig) -> dict[str, Any]:
    """What the run says about how far to trust its kept pairs (``report.json`` → ``trust``)."""
    entry = lookup(config)
    base: dict[str, Any] = {
        "validation_profile": config.validation_profile, "qa_mode": config.qa_mode,
        "min_precision": config.min_precision, "calibration_file": str(calibration_file(config)),
    }
    if entry is None:
        return {**base, "calibrated": False, "verified": False, "precision": None,
                "message": (f"{_UNVERIFIED}the kept-pair precision of this model with validation "
                            f"profile '{config.validation_profile}' and QA mode '{config.qa_mode}' was never measured "
                            f"(run `{CALIBRATE_COMMAND}` with the same options)")}
    precision = entry.get("precision") or {}
    differ = changed_settings(entry.get("settings", {}), compared_settings(config))
    measured = _defined(precision.get("mean"))
    verified = measured and precision["mean"] >= config.min_precision
    message = (f"calibrated kept-pair precision {_fmt(precision)} on {entry.get('source', 'a SQuAD file')} "
               f"(profile '{config.validation_profile}', QA mode '{config.qa_mode}')")
    if not measured:
        message = (f"{_UNVERIFIED}the calibration on {entry.get('source', 'a SQuAD file')} kept no pair of "
                   f"{entry.get('generated', '?')} generated (profile '{config.validation_profile}', QA mode "
                   f"'{config.qa_mode}'), so the precision of kept pairs is unknown")
    elif not verified:
        message = f"{_UNVERIFIED}{message}, below {config.min_precision:.2f}"
    if differ:
        message += f"; measured under other settings: {', '.join(differ)}"
    return {**base, "calibrated": True, "verified": verified, "precision": precision,
            "recall": entry.get("recall"), "yield": entry.get("yield"), "settings_differ": differ,
            "measured_at": entry.get("measured_at"), "message": message}


class PrecisionRequirementError(ValueError):
    """``require_precision`` is not met by the calibration of the run's model and profile."""


def check_required_precision(config: EtlConfig) -> dict[str, Any]:
    """The trust statement; raises ``PrecisionRequirementError`` when ``require_precision`` is not met."""
    statement = trust_statement(config)
    need = config.require_precision
    if need is None:
        return statement
    if not statement["calibrated"] or _precision(statement) is None:
        raise PrecisionRequirementError(
            f"--require-precision {need}: the kept-pair precision of this model with validation profile "
            f"'{config.validation_profile}' and QA mode '{config.qa_mode}' was never measured or kept no pair, so no fine-tuning "
            f"data is written (measure it with `{CALIBRATE_COMMAND}`)")
    if _precision(statement) < need:
        raise PrecisionRequirementError(
            f"--require-precision {need}: the calibrated kept-pair precision is {_fmt(statement['precision'])}, "
            f"below it, so no fine-tuning data is written (try --validation-profile precision or another model)")
    return statement


def ft_card(config: EtlConfig, statement: dict[str, Any], n_samples: int) -> str:
    """The fine-tuning data's card (``ft/README.md``)."""
    lines = ["# Fine-tuning data", "",
             f"{n_samples} samples (`train.jsonl` chat format, `train_alpaca.jsonl`, `samples.jsonl`), made from the "
             f"QA pairs that the ETL's validation kept: profile `{config.validation_profile}`, QA mode "
             f"`{config.qa_mode}`, model profile `{config.profile}`.", "",
             "## How far to trust it", "",
             ("**Verified**: " if statement["verified"] else "**Unverified**: ")
             + statement["message"].removeprefix(_UNVERIFIED) + ".", ""]
    if statement["calibrated"]:
        lines += [f"- precision (kept pairs whose answer has token F1 >= 0.5 with a human answer): "
                  f"{_fmt(statement['precision'])}"]
        if statement.get("recall"):
            lines.append(f"- recall (right generated pairs that were kept): {_fmt(statement['recall'])}")
        if statement.get("yield"):
            lines.append(f"- yield (kept pairs per chunk): {_fmt(statement['yield'])}")
        lines.append(f"- measured {statement.get('measured_at')}; calibration file `{statement['calibration_file']}`")
        lines.append("")
    return "\n".join(lines) + "\n"
