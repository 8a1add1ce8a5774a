"""The per-bar shortcuts of the scoring path (docs/PERFORMANCE.md) on the real series: each skips work only where
the result cannot change, so every decision stays what the full computation gives."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engine.config import StrategyConfig, default_strategy_config
from engine.gates import entry
from engine.gates.entry import GateInputs, LazyGates, evaluate_gates
from engine.gates.result import GateResult
from engine.indicators import IndicatorParams, IndicatorSet
from engine.indicators.kernel import row_from_snapshot
from engine.indicators.layout import N_SNAP
from engine.marketdata.aggregate import CandleAggregator
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from engine.scoring.codes import INDICATORS
from engine.scoring.detect_kernel import detect_step, ready_names
from engine.scoring.mtf import Alignment
from engine.scoring.pipeline import SymbolPipeline, TimeframeState
from engine.scoring.signals import Direction
from engine.scoring.strategy_kernel import M_NSIG
from engine.scoring.timeframe import base_confidence
from tests.scoring import reference_detectors as ref
from tests.scoring.detector_rig import DetectorRig

CFG = default_strategy_config()
RSI_ON = CFG.model_copy(
    update={
        "indicators": CFG.indicators.model_copy(update={"rsi": CFG.indicators.rsi.model_copy(update={"enabled": True})})
    }
)
SERIES = [(s, tf) for s in ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM") for tf in ("5min", "30min")]


@pytest.mark.parametrize(("symbol", "timeframe"), SERIES)
def test_a_ready_detector_stays_ready(data_dir: Path, symbol: str, timeframe: str) -> None:
    """What TimeframeState's ``_all_ready`` rests on: every detector's snapshot fields, once defined, stay defined."""
    indicators = IndicatorSet(IndicatorParams.from_config(RSI_ON))
    rig = DetectorRig(RSI_ON)
    row = np.empty(N_SNAP)
    first_ready: dict[str, int] = {}
    for bar, candle in enumerate(load_candles(data_dir, symbol, timeframe)):
        row_from_snapshot(indicators.update(candle), row)
        detect_step(rig.ip, rig.fp, rig.state, row, rig.sig, rig.ready_mask)
        ready = ready_names(rig.ready_mask)
        for name in INDICATORS:
            if name in ready:
                first_ready.setdefault(name, bar)
            else:
                assert name not in first_ready, f"{name} was ready at bar {first_ready[name]}, not at {bar}"
    assert set(first_ready) == set(INDICATORS)
    assert max(first_ready.values()) == 199  # EMA200: the last to be ready, on the 200th candle


def _reference(cfg: StrategyConfig, candles: list[Candle]) -> list[tuple[list[object], tuple[str, ...]]]:
    """Signals and readiness of the Python reference detectors, every detector asked on every bar."""
    indicators = IndicatorSet(IndicatorParams.from_config(cfg))
    dets = [d(cfg) for d in ref.DETECTORS if cfg.indicators.get(d.name).enabled]
    out = []
    for candle in candles:
        snap = indicators.update(candle)
        signals: list[object] = []
        ready = []
        for det in dets:
            found = det.update(snap)
            if det.ready(snap):
                ready.append(det.name)
                signals.extend(found)
        out.append((signals, tuple(ready)))
    return out


@pytest.mark.parametrize("cfg", [CFG, RSI_ON], ids=["default", "rsi"])
def test_a_gap_starts_the_detectors_over_and_after_warm_up_nothing_is_missing(
    data_dir: Path, cfg: StrategyConfig
) -> None:
    """TimeframeState on the kernel through a gap: every bar says what the reference says with the detectors
    rebuilt at the gap; ``not_ready_reason`` lists detectors only during the two warm-ups."""
    candles = load_candles(data_dir, "SOLUSDTM", "5min")
    candles = candles[:1500] + candles[1503:3000]  # a gap at 1500: a new warm-up, readiness asked again
    want = _reference(cfg, candles[:1500]) + _reference(cfg, candles[1500:])  # the state starts over at the gap
    st = TimeframeState(cfg, cfg.timeframes.primary_required_indicators, "5min")
    warming: list[int] = []
    for bar, candle in enumerate(candles):
        assert st.update(candle) == (3 if bar == 1500 else 0)  # three candles left out
        assert (st.signals, st.ready) == want[bar]
        assert st.arrays.meta[M_NSIG] == len(st.signals)
        if len(st.ready) < len(st.detector_names):
            warming.append(bar)
    assert warming == [*range(199), *range(1500, 1699)]
    assert st.gaps == 1 and st.not_ready_reason() is None


def test_a_decision_builds_its_gates_only_when_read(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``passed`` is the kernel's flag (no gate result is built to answer it); the full list (failing, to_dict) is
    built once, on demand, from the kernel's rows, and says the same as a decision holding the plain list."""
    built: list[str] = []
    real = entry.GateResult

    def counted(code: str, *args: object, **kw: object) -> GateResult:
        built.append(code)
        return real(code, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(entry, "GateResult", counted)
    pipe, agg = SymbolPipeline(CFG, "ETHUSDTM"), CandleAggregator("5min", "30min")
    scored = passes = 0
    for candle in load_candles(data_dir, "ETHUSDTM", "5min"):
        confirmation = agg.update(candle)
        if confirmation is not None:
            pipe.on_confirmation_candle(confirmation)
        built.clear()
        d = pipe.on_primary_candle(candle, drawdown_pct=0.0)
        if not isinstance(d.gates, LazyGates):
            assert built == ["data_not_ready"]  # not ready yet: that one result
            continue
        assert built == []  # deciding built no gate result
        scored += 1
        passed = d.passed
        passes += passed
        assert built == []  # nor did reading whether it passed
        full = list(d.gates)
        assert [g.code for g in full] == built  # built once, here, in full
        assert passed == all(g.passed for g in full)
        plain = dataclasses.replace(d, gates=full)
        assert d.to_dict() == plain.to_dict() and d.summary() == plain.summary()
        assert d.passed == plain.passed == (d.failing == []) and d.side == plain.side
        assert len(built) == len(full)  # reading again built nothing more
        assert d.gates == full and len(d.gates) == len(full) and d.gates[1:3] == full[1:3]
        assert repr(d.gates) == repr(full)
        mtf = next(g for g in full if g.code == "mtf_alignment")
        assert d.combined is not None and mtf.passed is d.combined.mtf_gate_passed
        assert (
            mtf.detail == f"alignment {d.combined.alignment.value}, gap {d.combined.gap}"
        )  # e.g. "alignment full, gap 3.2"
        assert len(full) == 10  # the default config's ten gates, every one evaluated
    assert (scored, passes) == (7440, 4)  # 8,640 bars, 7,440 scored, 4 entries


def test_the_mtf_gate_words_its_numbers_when_read() -> None:
    """GateInputs carries the alignment and gap; the explanation is formatted only when the gate is built."""
    inputs = GateInputs(
        final_score=85.0,
        prev_score=70.0,
        atr_pct=1.0,
        confidence=0.95,
        agreeing=6,
        total_indicators=10,
        trend=Direction.BULLISH,
        drawdown_pct=0.0,
        mtf_passed=False,
        has_trigger=True,
        divergence_count=0,
        mtf_alignment=Alignment.DIVERGENT,
        mtf_gap=57.25,
    )
    gates = evaluate_gates(CFG, inputs)
    assert [(g.code, g.detail) for g in gates if not g.passed] == [("mtf_alignment", "alignment divergent, gap 57.25")]


def test_base_confidence_from_the_strength_multipliers_of_each_side() -> None:
    """§7.1 with the multipliers gathered in the scoring pass: bullish veryStrong + strong + moderate (3.0) against
    one strong (1.0): agreement 0.5 → 30, + min(20, 5 × 3) = 15, + 10 for one divergence = 55."""
    assert base_confidence(CFG, [1.4, 1.0, 0.6], [1.0], 3, 1) == 55
    assert base_confidence(CFG, [], [], 4, 2) == 0  # no signal on either side: no confidence at all
    assert base_confidence(CFG, [], [0.3], 6, 0) == 80  # one-sided: 60 + the 20 cap
