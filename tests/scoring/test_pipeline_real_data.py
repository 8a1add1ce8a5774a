"""The SymbolPipeline over real KuCoin candles: warm-up, bounds, determinism, and decisions that pass."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from engine.config import StrategyConfig, default_strategy_config
from engine.marketdata.candle_files import load_candles
from engine.scoring.pipeline import Decision, SymbolPipeline

CFG = default_strategy_config()
P_MS, C_MS = 300_000, 1_800_000


def run(cfg: StrategyConfig, data_dir: Path, symbol: str) -> list[Decision]:
    p5, p30 = load_candles(data_dir, symbol, "5min"), load_candles(data_dir, symbol, "30min")
    pipe, j, out = SymbolPipeline(cfg, symbol), 0, []
    for c in p5:
        while j < len(p30) and p30[j].ts + C_MS <= c.ts + P_MS:  # only closed confirmation candles
            pipe.on_confirmation_candle(p30[j])
            j += 1
        out.append(pipe.on_primary_candle(c, drawdown_pct=0.0))
    return out


def test_pipeline_warm_up_bounds_determinism_and_entries(data_dir: Path) -> None:
    decisions = run(CFG, data_dir, "ETHUSDTM")
    # 200 primary candles and 200 closed confirmation candles (≈ 1,200 primary bars) before any score.
    first_scored = next(i for i, d in enumerate(decisions) if d.failing != ["data_not_ready"])
    p5, p30 = load_candles(data_dir, "ETHUSDTM", "5min"), load_candles(data_dir, "ETHUSDTM", "30min")
    ready_close = p30[199].ts + C_MS  # the 200th confirmation candle has closed
    assert first_scored == next(i for i, c in enumerate(p5) if c.ts + P_MS >= ready_close)
    assert all(d.failing == ["data_not_ready"] and d.final_score == 0 for d in decisions[:199])
    for d in decisions[first_scored:]:
        assert abs(d.final_score) <= 150 and 0 <= d.confidence <= 1
        assert d.primary is not None
        for name, value in d.primary.contributions.items():
            assert abs(value) <= CFG.indicators.get(name).weight
        assert abs(d.primary.indicator_score) <= 120
        if d.passed:
            assert d.side in ("long", "short")
            assert abs(d.final_score) >= 80 and d.confidence >= 0.9 and abs(d.prev_score) < abs(d.final_score)
    strict_passes = [d for d in decisions if d.passed]
    assert strict_passes, "the STRICT strategy never fires on 30 days of ETHUSDTM"
    again = run(CFG, data_dir, "ETHUSDTM")
    assert json.dumps([d.to_dict() for d in again]) == json.dumps([d.to_dict() for d in decisions])
    canonical = [d for d in run(CFG.with_strict(False), data_dir, "ETHUSDTM") if d.passed]
    assert len(canonical) >= len(strict_passes)


def test_strict_entries_once_per_cross(data_dir: Path) -> None:
    decisions = run(CFG, data_dir, "XRPUSDTM")
    for prev, cur in itertools.pairwise(decisions):
        if cur.passed:
            assert not (prev.passed and prev.direction is cur.direction)


def test_reset_after_gap_requires_a_new_warm_up(data_dir: Path) -> None:
    p5 = load_candles(data_dir, "SOLUSDTM", "5min")[:300]
    pipe = SymbolPipeline(
        CFG.model_copy(update={"timeframes": CFG.timeframes.model_copy(update={"mtf_enabled": False})}), "SOLUSDTM"
    )
    for c in p5[:250]:
        d = pipe.on_primary_candle(c, drawdown_pct=0.0)
    assert d.failing != ["data_not_ready"]
    pipe.reset()
    d = pipe.on_primary_candle(p5[251], drawdown_pct=0.0)
    assert d.failing == ["data_not_ready"] and "1 of 200" in d.gates[0].detail


def test_gap_is_never_bridged_and_old_candles_are_refused(data_dir: Path) -> None:
    from engine.scoring.pipeline import CandleOrderError

    cfg = CFG.model_copy(update={"timeframes": CFG.timeframes.model_copy(update={"mtf_enabled": False})})
    p5 = load_candles(data_dir, "ETHUSDTM", "5min")[:700]
    pipe = SymbolPipeline(cfg, "ETHUSDTM")
    for c in p5[:400]:
        d = pipe.on_primary_candle(c, drawdown_pct=0.0)
    assert d.failing != ["data_not_ready"]
    d = pipe.on_primary_candle(p5[403], drawdown_pct=0.0)  # bars 400–402 are missing
    assert d.failing == ["data_not_ready"] and d.extra == {"missing_bars": 3}
    assert "gap of 3 missing 5min bars" in d.gates[0].detail
    for c in p5[404:602]:
        d = pipe.on_primary_candle(c, drawdown_pct=0.0)
    assert d.failing == ["data_not_ready"]  # 199 bars since the gap
    d = pipe.on_primary_candle(p5[602], drawdown_pct=0.0)
    assert d.failing != ["data_not_ready"]
    with pytest.raises(CandleOrderError, match="not after the last one"):
        pipe.on_primary_candle(p5[602], drawdown_pct=0.0)
