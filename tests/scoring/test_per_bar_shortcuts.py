"""The per-bar shortcuts of the scoring path (docs/PERFORMANCE.md) on the real series: each skips work only where
the result cannot change, so every decision stays what the full computation gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import StrategyConfig, default_strategy_config
from engine.indicators import IndicatorParams, IndicatorSet
from engine.marketdata.candle_files import load_candles
from engine.scoring import detectors
from engine.scoring.detectors import DETECTORS, Detector
from engine.scoring.pipeline import TimeframeState

CFG = default_strategy_config()
RSI_ON = CFG.model_copy(
    update={
        "indicators": CFG.indicators.model_copy(update={"rsi": CFG.indicators.rsi.model_copy(update={"enabled": True})})
    }
)
SERIES = [(s, tf) for s in ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM") for tf in ("5min", "30min")]


@pytest.mark.parametrize(("symbol", "timeframe"), SERIES)
def test_a_ready_detector_stays_ready(data_dir: Path, symbol: str, timeframe: str) -> None:
    """What TimeframeState's shortcut rests on: every detector's snapshot fields, once defined, stay defined."""
    indicators = IndicatorSet(IndicatorParams.from_config(RSI_ON))
    dets = [d(RSI_ON) for d in DETECTORS]
    first_ready: dict[str, int] = {}
    for bar, candle in enumerate(load_candles(data_dir, symbol, timeframe)):
        snap = indicators.update(candle)
        for det in dets:
            if det.ready(snap):
                first_ready.setdefault(det.name, bar)
            else:
                assert det.name not in first_ready, f"{det.name} was ready at bar {first_ready[det.name]}, not at {bar}"
    assert set(first_ready) == {d.name for d in DETECTORS}
    assert max(first_ready.values()) == 199  # EMA200: the last to be ready, on the 200th candle


def _reference(cfg: StrategyConfig, candles: list[object]) -> list[tuple[list[object], tuple[str, ...]]]:
    """Signals and readiness with every detector asked on every bar (the loop before the shortcut)."""
    indicators = IndicatorSet(IndicatorParams.from_config(cfg))
    dets = [d(cfg) for d in DETECTORS if cfg.indicators.get(d.name).enabled]
    out = []
    for candle in candles:
        snap = indicators.update(candle)  # type: ignore[arg-type]
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
def test_after_warm_up_no_detector_is_asked_and_nothing_changes(
    data_dir: Path, cfg: StrategyConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    candles = load_candles(data_dir, "SOLUSDTM", "5min")
    candles = candles[:1500] + candles[1503:3000]  # a gap at 1500: a new warm-up, readiness asked again
    want = _reference(cfg, candles[:1500]) + _reference(cfg, candles[1500:])  # the state starts over at the gap
    asked: list[int] = []
    real = Detector.ready

    def counted(self: Detector, snap: object) -> bool:
        asked.append(bar)
        return real(self, snap)  # type: ignore[arg-type]

    monkeypatch.setattr(detectors.Detector, "ready", counted)
    st = TimeframeState(cfg, cfg.timeframes.primary_required_indicators, "5min")
    for bar, candle in enumerate(candles):
        st.update(candle)
        assert (st.signals, st.ready) == want[bar]
    # Asked on the 200 warm-up bars only (each detector each bar), then again for the 200 after the gap.
    per_bar = len(st.detectors)
    assert sorted(set(asked)) == [*range(200), *range(1500, 1700)]
    assert len(asked) == 400 * per_bar
