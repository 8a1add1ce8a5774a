"""The compiled scoring / MTF / confidence / gates (engine/scoring/score_kernel.py, engine/gates/gate_kernel.py)
against the Python they replaced (tests/scoring/reference_scoring.py), bar for bar on the real series: same
TimeframeResult, Combined, Penalties, confidence and gate list, compared through ``repr`` so every float is the
same to the last bit and every int stays an int."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.config import StrategyConfig
from engine.gates.entry import MicroInputs
from engine.marketdata.candle_files import load_candles
from engine.models import TIMEFRAME_MS
from engine.pysum import py_sum
from engine.scoring.codes import I_RSI, INDICATORS
from engine.scoring.params import FP_WEIGHT, IP_DIRECTIONAL, score_params
from engine.scoring.pipeline import SymbolPipeline
from engine.scoring.timeframe import base_confidence
from tests.scoring import reference_scoring as ref
from tests.scoring.strategy_rig import CANON, CFG, RSI_ON, SYMBOLS

LOOSE = RSI_ON.model_copy(  # more bars reach the later gates and the MTF branches: partial alignment, divergence
    update={
        "gates": RSI_ON.gates.model_copy(update={"require_divergence": True, "neutral_trend_blocks": False}),
        "timeframes": RSI_ON.timeframes.model_copy(update={"allow_partial_alignment": True}),
        "strict_mode": RSI_ON.strict_mode.model_copy(update={"enabled": True, "min_score": 40.0}),
    }
)
HOURLY = CANON.model_copy(
    update={"timeframes": CANON.timeframes.model_copy(update={"primary": "15min", "confirmation": "1hour"})}
)
NO_MTF = RSI_ON.model_copy(update={"timeframes": RSI_ON.timeframes.model_copy(update={"mtf_enabled": False})})
CONFIGS = {"strict": CFG, "canonical": CANON, "rsi": RSI_ON, "loose": LOOSE, "hourly": HOURLY, "no_mtf": NO_MTF}


def _run(cfg: StrategyConfig, data_dir: Path, symbol: str, *, live: bool = False) -> dict[str, int]:
    """Feed the real series through SymbolPipeline and hold every decision to the reference; returns counts."""
    tf = cfg.timeframes
    p_ms, c_ms = TIMEFRAME_MS[tf.primary], TIMEFRAME_MS[tf.confirmation]
    primary, confirmation = load_candles(data_dir, symbol, tf.primary), load_candles(data_dir, symbol, tf.confirmation)
    pipe, j = SymbolPipeline(cfg, symbol, live=live), 0
    seen = {"scored": 0, "passed": 0, "rsi_alone": 0, "confirmations": 0, "combos": 0, "cross": 0, "blocked": 0}
    micro = MicroInputs(spread_pct=0.01, funding_rate_pct=0.01, buy_sell_ratio=0.5)
    for bar, c in enumerate(primary):
        while j < len(confirmation) and confirmation[j].ts + c_ms <= c.ts + p_ms:  # only closed confirmation bars
            pipe.on_confirmation_candle(confirmation[j])
            j += 1
            cst = pipe.confirmation
            if cst.not_ready_reason() is None:
                want = ref.score_timeframe(cfg, cst.signals, cst.ready, cst.snapshot)
                assert repr(pipe.confirmation_result) == repr(want)
                seen["confirmations"] += 1
        if live:  # alternate a tape that the avoid-entry filter blocks and one it lets through
            micro = MicroInputs(spread_pct=0.01 if bar % 2 else 0.5, funding_rate_pct=0.01, buy_sell_ratio=0.5)
        d = pipe.on_primary_candle(c, drawdown_pct=float(bar % 5), micro=micro)
        if d.primary is None:
            continue
        st = pipe.primary
        snap = st.snapshot
        assert snap is not None
        want_d = ref.decide(
            cfg,
            c.close,
            snap,
            st.signals,
            st.ready,
            st.net_move(),
            d.confirmation,
            float(bar % 5),
            micro if live else None,
            d.prev_score,
        )
        x, classification, direction, confidence, p, combined, pen, gates = want_d
        assert repr(d.primary) == repr(p), bar
        assert list(d.primary.contributions) == list(p.contributions)
        assert repr(d.combined) == repr(combined), bar
        assert repr(d.penalties) == repr(pen), bar
        assert (repr(d.final_score), d.classification, d.direction, repr(d.confidence)) == (
            repr(x),
            classification,
            direction,
            repr(confidence),
        )
        assert repr(list(d.gates)) == repr(gates), bar
        assert d.passed == want_d.passed
        seen["scored"] += 1
        seen["passed"] += d.passed
        seen["rsi_alone"] += any(g.code == "rsi_alone" for g in gates)
        seen["combos"] += bool(p.combos)
        seen["cross"] += any(g.code == "threshold_cross" and g.passed for g in gates)
        seen["blocked"] += [g.code for g in gates if not g.passed] == ["avoid_entry"]  # only the tape blocked it
    return seen


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernel_decisions_equal_the_reference_on_every_bar(data_dir: Path, name: str, symbol: str) -> None:
    seen = _run(CONFIGS[name], data_dir, symbol)
    assert seen["scored"] > 1000 and seen["confirmations"] > 100
    assert seen["combos"] > 0  # combination bonuses were in play


def test_the_rsi_alone_redecision_and_passing_bars_are_covered(data_dir: Path) -> None:
    """Standalone RSI ready and decisions passing: the kernel's re-decision without RSI runs and matches."""
    total = {"passed": 0, "rsi_alone": 0}
    for symbol in SYMBOLS:
        seen = _run(LOOSE, data_dir, symbol)
        total["passed"] += seen["passed"]
        total["rsi_alone"] += seen["rsi_alone"]
    assert total["passed"] > 10 and total["rsi_alone"] > 10


def test_live_avoid_entry_blocks_before_the_rsi_alone_redecision(data_dir: Path) -> None:
    """Live with a blocking tape, the reference never re-decides (the first pass already failed): nor does the
    pipeline, which then runs the kernel's single pass; with a clean tape the full ``decide`` runs."""
    seen = _run(LOOSE, data_dir, "ETHUSDTM", live=True)
    assert seen["scored"] > 1000 and seen["rsi_alone"] > 5 and seen["blocked"] > 5


def test_python_sum_is_neumaier_compensated() -> None:
    """``py_sum`` is Python 3.12's ``sum()`` of floats, not a running total, where the two differ."""
    cases = [
        [1e16, 1.0, -1e16],  # naive 0.0, sum() 1.0
        [0.1] * 10,  # naive 0.9999999999999999, sum() 1.0
        [1.4, 1.0, 0.6, 0.3, 0.3],
        [math.inf, 1.0],
        [1e308, 1e308, -1e308],  # the running total overflows: inf, the compensation is not added
        [],
    ]
    rng = np.random.default_rng(7)
    cases += [rng.normal(0, 10.0 ** rng.integers(-3, 16), size=rng.integers(1, 12)).tolist() for _ in range(500)]
    differs = 0
    for values in cases:
        arr = np.array(values, dtype=np.float64)
        naive = 0.0
        for v in values:
            naive += v
        got, want = py_sum(arr, len(arr)), sum(values)
        assert got == want or (math.isnan(got) and math.isnan(want)), values
        differs += naive != want
    assert py_sum(np.array([1e16, 1.0, -1e16]), 3) == 1.0
    assert py_sum(np.array([0.1] * 10), 10) == 1.0
    assert differs > 2


def test_base_confidence_sums_as_python_does() -> None:
    """Ten weak bullish signals (multiplier 0.1 each would be 0.9999999999999999 as a running total) against none:
    the compensated sums give agreement exactly 1 → 60 + min(20, 5·2) = 70, like the reference."""
    bull = [0.1] * 10
    assert base_confidence(CFG, bull, [], 2, 0) == ref.base_confidence(CFG, bull, [], 2, 0) == 70
    bull, bear = [1.4, 0.1, 0.1, 0.1, 0.7], [0.3, 0.1, 0.1]
    assert base_confidence(CFG, bull, bear, 4, 1) == ref.base_confidence(CFG, bull, bear, 4, 1)


def test_params_follow_the_config() -> None:
    """Weights and the directional flags per INDICATORS index; RSI off by default but its numbers are there."""
    ip, fp = score_params(CFG)
    for i, name in enumerate(INDICATORS):
        assert fp[FP_WEIGHT + i] == CFG.indicators.get(name).weight
        assert ip[IP_DIRECTIONAL + i] == int(CFG.indicators.get(name).directional)
    assert fp[FP_WEIGHT + I_RSI] == 40.0
    assert score_params(CFG)[0] is ip  # cached per config object
