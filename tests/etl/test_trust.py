"""Every run says how far to trust its QA pairs; ``require_precision`` refuses to write unverified data.

The runs use the scripted model (orchestration); the stored calibration entries are written with
``save_calibration`` as the calibration command would, with figures chosen by the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from etl_helpers import ScriptedModels

from etl_pipeline import EXIT_FATAL, EXIT_OK, EtlConfig, run
from etl_pipeline import trust as trust_mod


@pytest.fixture
def calibrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "calibration"
    monkeypatch.setattr(trust_mod, "calibration_dir", lambda: folder)
    return folder


def _config(sample_copy: Path, out: Path, **kw) -> EtlConfig:
    return EtlConfig(input_dir=sample_copy, output_dir=out, qa_mode="abstractive", concurrency=4, **kw)


def _entry(precision: float) -> dict:
    return {"precision": {"mean": precision, "low": precision - 0.1, "high": min(1.0, precision + 0.1), "n": 50},
            "recall": {"mean": 0.3, "low": 0.2, "high": 0.4, "n": 40},
            "yield": {"mean": 0.2, "low": 0.1, "high": 0.3, "n": 60}, "source": "a test file"}


def test_an_uncalibrated_run_says_its_fine_tuning_data_is_unverified(sample_copy, tmp_path, calibrations,
                                                                     scripted: ScriptedModels):
    out = tmp_path / "run"
    result = run(_config(sample_copy, out), model_provider=scripted, track=False)
    assert result.exit_code == EXIT_OK
    report = json.loads((out / "report.json").read_text())
    assert report["trust"]["calibrated"] is False and report["trust"]["verified"] is False
    assert "never measured" in report["trust"]["message"]
    assert any("fine-tuning data is unverified" in w["warning"] for w in report["warnings"])
    assert report["counts"]["ft_samples"] > 0  # written, but called unverified
    card = (out / "ft" / "README.md").read_text()
    assert "**Unverified**" in card and "never measured" in card
    assert report["validation"]["profile"] == "standard"


def test_a_calibrated_run_carries_its_precision_and_warns_only_below_the_minimum(sample_copy, tmp_path, calibrations,
                                                                               scripted: ScriptedModels):
    cfg = _config(sample_copy, tmp_path / "run")
    trust_mod.save_calibration(cfg, _entry(0.9))
    result = run(cfg, model_provider=scripted, track=False)
    report = json.loads((cfg.output_dir / "report.json").read_text())
    assert result.exit_code == EXIT_OK and report["trust"]["verified"] is True
    assert report["trust"]["precision"]["mean"] == 0.9
    assert not any("unverified" in w["warning"] for w in report["warnings"])
    assert "**Verified**" in (cfg.output_dir / "ft" / "README.md").read_text()
    # the same calibration under a higher minimum: reported, and called unverified
    strict = cfg.model_copy(update={"min_precision": 0.95})
    assert strict.fingerprint() == cfg.fingerprint()  # min_precision changes no record
    statement = trust_mod.trust_statement(strict)
    assert statement["calibrated"] and not statement["verified"] and "below 0.95" in statement["message"]
    # another validation profile has no entry of its own yet
    assert not trust_mod.trust_statement(cfg.model_copy(update={"validation_profile": "precision"}))["calibrated"]


def test_require_precision_refuses_below_the_calibration_and_runs_at_it(sample_copy, tmp_path, calibrations,
                                                                      scripted: ScriptedModels):
    cfg = _config(sample_copy, tmp_path / "run", require_precision=0.8)
    refused = run(cfg, model_provider=scripted, track=False)  # never measured
    assert refused.exit_code == EXIT_FATAL and "never measured" in refused.message
    trust_mod.save_calibration(cfg, _entry(0.6))
    refused = run(cfg, model_provider=scripted, track=False)
    assert refused.exit_code == EXIT_FATAL and "below it" in refused.message
    assert not (cfg.output_dir / "ft").exists() and scripted.calls.total() == 0  # refused before any work
    trust_mod.save_calibration(cfg, _entry(0.85))
    done = run(cfg, model_provider=scripted, track=False)
    assert done.exit_code == EXIT_OK and (cfg.output_dir / "ft" / "train.jsonl").is_file()


def test_the_validation_profile_is_part_of_the_fingerprint(sample_copy, tmp_path):
    cfg = _config(sample_copy, tmp_path / "run")
    precise = cfg.model_copy(update={"validation_profile": "precision"})
    assert precise.fingerprint() != cfg.fingerprint()
    assert precise.fingerprint_settings()["validation_profile"] == "precision"
    assert trust_mod.model_key(precise) == trust_mod.model_key(cfg)  # same models, same calibration file


def test_cli_require_precision_refuses_an_uncalibrated_model(sample_copy, tmp_path):
    env = {**os.environ, "LIQUID_CACHE_DIR": str(tmp_path / "cache"), "LIQUID_MLFLOW_URI": f"sqlite:///{tmp_path}/m.db"}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "etl_pipeline.run_etl", str(sample_copy), "-o", str(out), "--no-track",
                           "-q", "--require-precision", "0.8", "--validation-profile", "precision"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "--require-precision 0.8" in proc.stderr and "never measured" in proc.stderr
    assert not (out / "ft").exists()


def test_a_calibration_that_kept_no_pair_is_unverified_and_fails_a_requirement(sample_copy, tmp_path, calibrations):
    cfg = _config(sample_copy, tmp_path / "run", require_precision=0.5)
    trust_mod.save_calibration(cfg, {"precision": {"mean": None, "low": None, "high": None, "n": 0}, "generated": 57,
                                     "source": "a test file"})
    statement = trust_mod.trust_statement(cfg)
    assert statement["calibrated"] and not statement["verified"]
    assert "kept no pair of 57 generated" in statement["message"]
    with pytest.raises(trust_mod.PrecisionRequirementError, match="kept no pair"):
        trust_mod.check_required_precision(cfg)
