"""Spec §12 E1 (scoring → MTF → confidence → gates) and the E2 gate table, exactly."""

from __future__ import annotations

import pytest

from engine.config import default_strategy_config
from engine.gates.entry import GateInputs, evaluate_gates
from engine.gates.result import failing_reasons
from engine.indicators.snapshot import IndicatorSnapshot
from engine.models import Candle
from engine.scoring.mtf import Alignment, Penalties, combine, final_confidence
from engine.scoring.signals import Direction, Signal
from engine.scoring.timeframe import TimeframeResult, classify, score_timeframe

CFG = default_strategy_config()
CANONICAL = CFG.with_strict(False)
BULL, BEAR = Direction.BULLISH, Direction.BEARISH
READY = ("stoch_rsi", "stochastic", "williams_r", "kdj", "ao", "ema_trend", "macd", "bollinger", "obv", "adx", "atr")
E1_SIGNALS = [
    Signal("williams_r", "levelCross", BULL, "strong", "crossover"),
    Signal("stoch_rsi", "kdCross", BULL, "strong", "crossover"),
    Signal("stoch_rsi", "zone", BULL, "moderate", "zone"),
    Signal("kdj", "divergence", BULL, "veryStrong", "divergence"),
    Signal("kdj", "jExtreme", BULL, "extreme", "other"),
    Signal("ao", "zeroCross", BULL, "veryStrong", "crossover"),
    Signal("ema_trend", "trendDirection", BULL, "moderate", "other"),
    Signal("macd", "histogramFlip", BEAR, "strong", "momentum"),
]
# ADX 21: not trending, so no combination bonus applies.
E1_SNAP = IndicatorSnapshot(candle=Candle(0, 1, 1, 1, 1, 1), adx=21.0, plus_di=25.0, minus_di=15.0, stoch_rsi_rsi=45.0)


def _e1_primary() -> TimeframeResult:
    return score_timeframe(CFG, E1_SIGNALS, READY, E1_SNAP)


def _e1_confirmation() -> TimeframeResult:
    return TimeframeResult(
        tf_total=64.0,
        indicator_score=64.0,
        contributions={},
        signals=[],
        combos=[],
        bull_ind=4,
        bear_ind=0,
        total_indicators=10,
        divergence_count=0,
        confidence_points=70,
        bull_signals=4,
        bear_signals=0,
    )


def test_e1_points_contributions_and_primary_total() -> None:
    p = _e1_primary()
    assert [round(s.points, 10) for s in p.signals] == [13.44, 8.64, 2.592, 29.4, 18.2, 16.8, 6.0, -5.76]
    assert p.contributions["kdj"] == 35.0  # clamp(47.6, ±35)
    assert p.contributions["stoch_rsi"] == pytest.approx(11.232, abs=1e-12)
    assert p.contributions["macd"] == pytest.approx(-5.76, abs=1e-12)
    assert p.contributions["bollinger"] == 0.0
    assert p.indicator_score == pytest.approx(76.712, abs=1e-12)
    assert p.tf_total == pytest.approx(76.712, abs=1e-12)
    assert p.combos == []
    assert classify(CFG, p.tf_total) == "BUY"
    assert (p.bull_ind, p.bear_ind, p.total_indicators) == (5, 1, 10)
    assert p.confidence_points == 76  # 45.542 + 20 + 10 = 75.542 → 76


def test_e1_mtf_final_score_and_confidence() -> None:
    p, s = _e1_primary(), _e1_confirmation()
    c = combine(CFG, p, s)
    assert c.alignment is Alignment.FULL
    assert c.gap == pytest.approx(12.712, abs=1e-12)
    assert c.weighted == pytest.approx(72.8984, abs=1e-12)
    assert c.align_bonus == 20.0
    assert c.final_score == pytest.approx(92.8984, abs=1e-12)
    assert classify(CFG, c.final_score) == "STRONG_BUY"
    assert c.confidence_points == 100  # clamp(117.2)
    assert c.mtf_gate_passed is True
    pen = Penalties(choppy=False, vol_penalty=0.0, conflicts=min(p.bull_signals, p.bear_signals), total=2.0)
    assert pen.conflicts == 1
    assert final_confidence(c.confidence_points, pen) == 0.98


def _e1_gates(cfg: object, prev: float) -> list[str]:
    return failing_reasons(
        evaluate_gates(
            cfg,  # type: ignore[arg-type]
            GateInputs(
                final_score=92.8984,
                prev_score=prev,
                atr_pct=0.35,
                confidence=0.98,
                agreeing=5,
                total_indicators=10,
                trend=BULL,
                drawdown_pct=1.0,
                mtf_passed=True,
                has_trigger=True,
                divergence_count=1,
            ),
        )
    )


def test_e1_gates_canonical_and_strict() -> None:
    assert _e1_gates(CANONICAL, 0.0) == []
    assert _e1_gates(CFG, 78.40) == []
    assert _e1_gates(CFG, 84.00) == ["threshold_cross"]


E2 = [
    # case, x, x_prev, ATR%, conf, agreeing, trend, dd, canonical reasons, strict reasons
    ("A", 92.90, 78.40, 0.35, 0.98, 5, BULL, 1.0, [], []),
    ("B", 92.90, 84.00, 0.35, 0.98, 5, BULL, 1.0, [], ["threshold_cross"]),
    (
        "C",
        -78.00,
        -70.00,
        4.6,
        0.79,
        6,
        BEAR,
        2.0,
        ["min_score", "min_confidence"],
        ["min_score", "threshold_cross", "min_confidence"],
    ),
    (
        "D",
        12.00,
        5.00,
        0.8,
        0.90,
        6,
        BULL,
        0.5,
        ["dead_zone", "min_score"],
        ["dead_zone", "min_score", "threshold_cross"],
    ),
    ("E", 88.00, 70.00, 0.8, 0.91, 4, BULL, 0.5, ["confluence_percent"], ["confluence_percent"]),
    ("F", 88.00, 70.00, 0.8, 0.91, 6, Direction.NEUTRAL, 0.5, ["trend_alignment"], ["trend_alignment"]),
    ("G", 88.00, 70.00, 0.8, 0.91, 6, BULL, 3.4, ["max_drawdown"], ["max_drawdown"]),
    ("G3", 88.00, 70.00, 0.8, 0.91, 6, BULL, 3.0, [], []),
    ("H", 84.00, 70.00, 6.3, 0.91, 6, BULL, 0.5, ["min_score"], ["min_score", "threshold_cross"]),
    ("I", -83.50, -76.00, 1.2, 0.91, 6, BEAR, 0.5, [], []),
]


@pytest.mark.parametrize(
    ("case", "x", "prev", "atr", "conf", "agree", "trend", "dd", "canonical", "strict"), E2, ids=[r[0] for r in E2]
)
def test_e2_gate_table(
    case: str,
    x: float,
    prev: float,
    atr: float,
    conf: float,
    agree: int,
    trend: Direction,
    dd: float,
    canonical: list[str],
    strict: list[str],
) -> None:
    mtf_off = CFG.model_copy(update={"timeframes": CFG.timeframes.model_copy(update={"mtf_enabled": False})})
    inputs = GateInputs(
        final_score=x,
        prev_score=prev,
        atr_pct=atr,
        confidence=conf,
        agreeing=agree,
        total_indicators=10,
        trend=trend,
        drawdown_pct=dd,
        mtf_passed=None,
        has_trigger=True,
        divergence_count=0,
    )
    assert failing_reasons(evaluate_gates(mtf_off.with_strict(False), inputs)) == canonical
    assert failing_reasons(evaluate_gates(mtf_off, inputs)) == strict
