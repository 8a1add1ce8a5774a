"""Gate boundaries (spec §9, §13 items 5, 11–16) and the signal detectors on hand-built sequences."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.config import default_strategy_config
from engine.gates.entry import GateInputs, MicroInputs, avoid_entry, evaluate_gates, threshold
from engine.gates.result import failing_reasons
from engine.scoring.score_kernel import round_half_up
from engine.scoring.signals import Direction, regular_divergence, twin_peaks
from engine.scoring.timeframe import classify
from tests.scoring.detector_rig import DetectorRig

CFG = default_strategy_config()
CANON = CFG.with_strict(False)
BULL, BEAR = Direction.BULLISH, Direction.BEARISH


def _inputs(**kw: object) -> GateInputs:
    base: dict[str, object] = dict(
        final_score=85.0,
        prev_score=70.0,
        atr_pct=1.0,
        confidence=0.95,
        agreeing=6,
        total_indicators=10,
        trend=BULL,
        drawdown_pct=0.0,
        mtf_passed=True,
        has_trigger=True,
        divergence_count=0,
    )
    base.update(kw)
    return GateInputs(**base)  # type: ignore[arg-type]


def _fails(cfg: object, **kw: object) -> list[str]:
    return failing_reasons(evaluate_gates(cfg, _inputs(**kw)))  # type: ignore[arg-type]


def test_score_exactly_at_threshold_passes_and_cross_boundaries() -> None:
    assert _fails(CFG, final_score=80.0, prev_score=79.99) == []
    assert _fails(CFG, final_score=79.99, prev_score=70.0) == ["min_score", "threshold_cross"]
    assert _fails(CFG, final_score=85.0, prev_score=80.0) == ["threshold_cross"]  # prev at T: no cross
    assert _fails(CFG, final_score=-80.0, prev_score=-79.99, trend=BEAR) == []
    assert _fails(CFG, final_score=-85.0, prev_score=-80.0, trend=BEAR) == ["threshold_cross"]
    assert _fails(CANON, final_score=75.0, prev_score=90.0) == []


def test_confidence_agreeing_confluence_drawdown_at_exact_limits() -> None:
    assert _fails(CFG, confidence=0.90) == []
    assert _fails(CFG, confidence=0.8999) == ["min_confidence"]
    assert _fails(CANON, confidence=0.85) == []
    assert _fails(CFG, agreeing=4, total_indicators=8) == []
    assert _fails(CFG, agreeing=3, total_indicators=6) == ["min_indicators"]
    assert _fails(CFG, agreeing=4, total_indicators=0) == ["confluence_percent"]
    assert _fails(CFG, drawdown_pct=3.0) == []
    assert _fails(CFG, drawdown_pct=3.0001) == ["max_drawdown"]


def test_dead_zone_mtf_trigger_and_short_trend() -> None:
    assert "dead_zone" not in _fails(CANON, final_score=20.0)
    assert "dead_zone" in _fails(CANON, final_score=19.99)
    assert _fails(CFG, mtf_passed=False) == ["mtf_alignment"]
    assert _fails(CFG, has_trigger=False) == ["trigger_signal"]
    assert _fails(CFG, final_score=-85.0, prev_score=-70.0, trend=BULL) == ["trend_alignment"]


def test_volatility_boost_is_inclusive_and_monotone() -> None:
    assert [threshold(CFG, a) for a in (3.99, 4.0, 5.99, 6.0)] == [80.0, 85.0, 85.0, 90.0]
    assert [threshold(CANON, a) for a in (0.1, 4.0, 6.0)] == [75.0, 80.0, 85.0]


@given(st.floats(min_value=0, max_value=20), st.floats(min_value=0, max_value=20))
def test_threshold_non_decreasing_in_atr(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert threshold(CFG, lo) <= threshold(CFG, hi)


@given(st.floats(min_value=20, max_value=150), st.floats(min_value=0, max_value=50))
def test_canonical_raising_score_never_turns_pass_into_fail(x: float, extra: float) -> None:
    if not _fails(CANON, final_score=x):
        assert not _fails(CANON, final_score=min(150.0, x + extra))


def test_classification_boundaries() -> None:
    got = [classify(CFG, x) for x in (100, 99.999, 80, 39.999, -40, -100)]
    assert got == ["EXTREME_BUY", "STRONG_BUY", "STRONG_BUY", "NEUTRAL", "SELL_WEAK", "EXTREME_SELL"]
    assert [round_half_up(x) for x in (75.5, 76.5, 75.499)] == [76, 77, 75]


def test_avoid_entry_filter_live_only_reasons() -> None:
    assert avoid_entry(CFG, MicroInputs(spread_pct=0.01, funding_rate_pct=0.5, buy_sell_ratio=0.5)).passed
    bad = avoid_entry(CFG, MicroInputs(spread_pct=0.05, funding_rate_pct=-2.5, buy_sell_ratio=0.9))
    assert not bad.passed and bad.detail.count(";") == 2
    assert "avoid_entry" in _fails(CFG, micro=MicroInputs(spread_pct=0.05))


def test_williams_cross_after_four_bars_in_zone_is_very_strong() -> None:
    det = DetectorRig(CFG, "williams_r")
    kinds = [det.step(williams_r=r) for r in (-85, -86, -88, -84, -70)]
    cross = [s for s in kinds[-1] if s.kind == "levelCross"]
    assert cross and cross[0].direction is BULL and cross[0].strength == "veryStrong"
    assert [s.strength for s in kinds[2] if s.kind == "zone"] == ["strong"]  # third bar in zone
    det2 = DetectorRig(CFG, "williams_r")
    out = [det2.step(williams_r=r) for r in (-85, -86, -70)]
    assert [s.strength for s in out[-1] if s.kind == "levelCross"] == ["strong"]
    assert det2.ready == ("williams_r",)


def test_kdj_cross_with_j_run_is_very_strong() -> None:
    det = DetectorRig(CFG, "kdj")
    seq = [(20, 25, -5), (18, 24, -6), (17, 22, -4), (23, 21, 27)]
    out = [det.step(kdj_k=k, kdj_d=d, kdj_j=j) for k, d, j in seq]
    assert [s.kind for s in out[0]] == ["jExtreme"]
    cross = [s for s in out[-1] if s.kind == "kdCross"]
    assert cross[0].direction is BULL and cross[0].strength == "strong"  # J back above 0 ends the run


def test_regular_divergence_bullish_and_bearish() -> None:
    price = [10, 9, 8, 9, 10, 9, 7, 9, 10, 11, 12, 11, 12, 13]
    osc = [50, 40, 30, 40, 50, 45, 35, 45, 50, 55, 60, 58, 60, 62]
    assert regular_divergence([float(v) for v in osc], [float(v) for v in price]) is BULL
    assert regular_divergence([float(-v) for v in osc], [float(-v) for v in price]) is BEAR
    assert regular_divergence([1.0] * 14, [1.0] * 14) is Direction.NEUTRAL


def test_ao_saucer_zero_cross_and_twin_peaks() -> None:
    det = DetectorRig(CFG, "ao")
    out = [det.step(ao=a, ac=0.1) for a in (-1.0, 3.0, 2.0, 1.0, 1.5)]
    assert [s.kind for s in out[1]] == ["zeroCross"] and out[1][0].strength == "veryStrong"
    assert any(s.kind == "saucer" and s.direction is BULL for s in out[-1])
    assert twin_peaks([-1, -3, -1, -0.5, -2, -1, -0.5]) is BULL
    assert twin_peaks([1, 3, 1, 0.5, 2, 1, 0.5]) is BEAR


def test_a_detector_not_ready_updates_but_says_nothing() -> None:
    """AO without AC: the detector keeps its history (TimeframeState's semantics) but is not ready, so its
    zero cross is dropped; once AC is defined the saucer it has been tracking shows."""
    det = DetectorRig(CFG, "ao")
    assert [det.step(ao=a) for a in (-1.0, 3.0, 2.0, 1.0)] == [[], [], [], []]
    assert det.ready == ()
    assert [(s.kind, s.direction) for s in det.step(ao=1.5, ac=0.1)] == [("saucer", BULL)]
    assert det.ready == ("ao",)


def _obv_bar(det: DetectorRig, obv: float, volume: float = 1.0) -> list[str]:
    return [
        f"{s.direction.label} {s.strength}"
        for s in det.step(volume=volume, obv=obv, obv_slope=0.0, obv_z=0.0)
        if s.kind == "breakout"
    ]


def _obv() -> DetectorRig:
    return DetectorRig(CFG, "obv")


def test_obv_breakout_beyond_the_previous_19_and_its_volume_spike() -> None:
    """breakoutWindow 20: the OBV against the 19 before it; veryStrong when one of the last 5 volumes exceeds
    1.5 × the mean of the 20 (this bar's included)."""
    det = _obv()
    assert [_obv_bar(det, 100.0 + i) for i in range(19)] == [[]] * 19  # no full window before the 20th bar
    assert _obv_bar(det, 150.0) == ["bullish strong"]  # all volumes 1.0: no spike
    assert _obv_bar(det, 140.0) == []  # inside [101, 150]
    spiky = _obv()
    for i in range(19):
        _obv_bar(spiky, 100.0 + i)
    # mean (19 + 2.2) / 20 = 1.06, limit 1.59: 2.2 is a spike; 1.5 is not (limit 1.5 × 1.025 = 1.5375)
    assert _obv_bar(spiky, 50.0, volume=2.2) == ["bearish veryStrong"]
    calm = _obv()
    for i in range(19):
        _obv_bar(calm, 100.0 + i)
    assert _obv_bar(calm, 50.0, volume=1.5) == ["bearish strong"]
    old = _obv()  # a high 20 bars back has left the window
    seq = [1000.0, *(100.0 + i for i in range(18)), 150.0, 160.0]
    assert [_obv_bar(old, v) for v in seq][-2:] == [[], ["bullish strong"]]
