"""The strategy config loads exactly the spec's numbers and rejects bad values with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.config import ConfigError, load_strategy_config
from engine.config.errors import EX_CONFIG
from engine.config.strategy import DEFAULT_STRATEGY_CONFIG_PATH, validate_strategy_config
from tests.conftest import ROOT, SHARED_SPEC_DIR


def _raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFAULT_STRATEGY_CONFIG_PATH.read_text())
    return data


def test_load_default_then_values_match_spec() -> None:
    cfg = load_strategy_config()
    assert cfg.indicators.williams_r.weight == 28
    assert cfg.indicators.rsi.enabled is False
    assert cfg.indicators.ao.enabled is True
    assert cfg.signal_type_multipliers.get("goldenDeathCross") == 1.4
    assert cfg.strength_multipliers.get("veryStrong") == 1.4
    assert cfg.risk_management.stop_loss_roi == Decimal("10.0")
    assert cfg.fees.taker_fee == Decimal("0.0006")
    assert [t.leverage for t in cfg.volatility.leverage_tiers] == [50, 25, 15, 10, 5, 3]
    assert cfg.gates.trigger_category_set == {"divergence", "goldenDeathCross", "squeeze", "crossover"}


def test_effective_gates_when_strict_default_then_strict_numbers() -> None:
    cfg = load_strategy_config()
    strict = cfg.effective_gates()
    assert (strict.strict, strict.min_score, strict.min_confidence, strict.threshold_cross_required) == (
        True,
        80,
        0.9,
        True,
    )
    canonical = cfg.with_strict(False).effective_gates()
    assert (canonical.min_score, canonical.min_confidence, canonical.threshold_cross_required) == (75, 0.85, False)


def test_strict_overrides_when_out_of_range_then_rejected() -> None:
    cfg = load_strategy_config()
    assert cfg.with_strict_overrides(min_score=85).effective_gates().min_score == 85
    with pytest.raises(Exception, match="minConfidence"):
        cfg.with_strict_overrides(min_confidence=1.5)


def test_docs_copy_when_shared_spec_present_then_identical() -> None:
    if not SHARED_SPEC_DIR.is_dir():
        pytest.skip("shared spec not present")
    for name in ("STRATEGY_CONFIG.json", "STRATEGY_SPEC.md"):
        assert (ROOT / "docs" / name).read_bytes() == (SHARED_SPEC_DIR / name).read_bytes(), name


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["indicators"]["kdj"]["params"].update(period=-1), "indicators.kdj.params.period"),
        (lambda r: r["gates"].update(minScroe=3), "gates.minScroe: unknown key"),
        (lambda r: r["riskManagement"].update(leverageMax="abc"), "riskManagement.leverageMax"),
        (lambda r: r["gates"].update(minConfidence=1.2), "gates.minConfidence"),
        (lambda r: r["riskManagement"].update(breakEvenActivationRoi=3), "breakEvenActivationRoi 3 must exceed"),
        (lambda r: r["riskManagement"].update(leverageDefault=99), "leverageDefault must lie within"),
        (lambda r: r["riskManagement"].update(timeBasedExits=True), "riskManagement.timeBasedExits"),
        (lambda r: r["volatility"]["leverageTiers"].reverse(), "atrPctBelow must be strictly increasing"),
        (lambda r: r["timeframes"].update(primary="7min"), "unknown timeframe '7min'"),
        (lambda r: r["riskManagement"]["profitLockLevels"][0].update(lockRoi=12), "lockRoi must be below"),
        (lambda r: r["indicators"]["kdj"].pop("weight"), "indicators.kdj.weight: Field required"),
        # A strength strengthMultipliers has no price for: loaded, then refused only as the engine was built
        # (a ValueError traceback, exit 1, restarted by systemd every 10 s) instead of a config error (exit 78).
        (lambda r: r["divergenceDetection"].update(strength="medium"), "divergenceDetection.strength"),
        (lambda r: r["divergenceDetection"].update(strength="very_strong"), "divergenceDetection.strength"),
    ],
)
def test_validate_when_bad_value_then_one_line_naming_key(mutate: Any, expected: str) -> None:
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        validate_strategy_config(raw)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_load_when_missing_or_malformed_file_then_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_strategy_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON: line 1"):
        load_strategy_config(bad)


def test_check_config_cli_when_bad_file_then_one_line_and_exit_1(tmp_path: Path) -> None:
    raw = _raw()
    raw["gates"]["minScore"] = 500
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "engine.config"],
        cwd=ROOT,
        env={"STRATEGY_CONFIG_PATH": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EX_CONFIG
    assert proc.stderr.strip().count("\n") == 0
    assert "gates.minScore: Input should be less than or equal to 150" in proc.stderr
    assert "Traceback" not in proc.stderr
