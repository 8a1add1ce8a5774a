"""The compiled detectors (engine.scoring.detect_kernel) against the readable Python reference, bar for bar, on
every real series: the same signals in the same order and the same ready detectors, for the default config and
for configs that move every window and threshold the kernel sizes from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import StrategyConfig, default_strategy_config
from engine.indicators import IndicatorParams, IndicatorSet, IndicatorSnapshot
from engine.indicators.kernel import row_from_snapshot
from engine.indicators.layout import N_SNAP
from engine.jit import kernel
from engine.marketdata.aggregate import CandleAggregator
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from engine.pysum import ring_sum
from engine.scoring.codes import INDICATORS, MAX_SIGNALS, SIG_COLUMNS
from engine.scoring.detect_kernel import (
    detect_reset,
    detect_step,
    detector_params,
    new_outputs,
    ready_names,
    signals_from_rows,
    trend_direction_k,
)
from engine.scoring.signals import Direction, Signal
from tests.scoring import reference_detectors as ref

SYMBOLS = ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM")
CFG = default_strategy_config()


def _with(cfg: StrategyConfig, name: str, enabled: bool | None = None, signals: Any = None, **params: Any) -> Any:
    ind = cfg.indicators
    icfg = ind.get(name)
    update: dict[str, Any] = {"params": icfg.params.model_copy(update=params)}  # type: ignore[attr-defined]
    if enabled is not None:
        update["enabled"] = enabled
    if signals is not None:
        update["signals"] = signals
    return cfg.model_copy(update={"indicators": ind.model_copy(update={name: icfg.model_copy(update=update)})})


def _rsi_on() -> StrategyConfig:
    return _with(CFG, "rsi", enabled=True)  # type: ignore[no-any-return]


def _odd() -> StrategyConfig:
    """Every config-sized window and threshold moved: short walks and breakout windows, a twin-peaks window too
    short for a saucer, a spike lookback longer than the window, a divergence strength and categories changed,
    one detector off and RSI on."""
    cfg: Any = _with(CFG, "rsi", enabled=True, oversold=45.0, overbought=55.0)
    cfg = _with(cfg, "stochastic", enabled=False)
    cfg = _with(cfg, "ao", twin_peaks_window=3, signals={"zeroCross": "momentum"})
    cfg = _with(cfg, "bollinger", walk_lookback=2, walk_min_closes=1, touch_tolerance=0.01)
    cfg = _with(cfg, "obv", price_confirm_bars=1, breakout_window=2, volume_spike_lookback=30, z_score_trigger=0.2)
    cfg = _with(cfg, "williams_r", persistent_bars=1, cross_very_strong_min_bars_in_zone=2)
    cfg = _with(cfg, "kdj", persistent_bars=1, j_oversold=10.0, j_overbought=90.0)
    cfg = _with(cfg, "adx", trend_threshold=15.0, strong_trend_threshold=30.0)
    cfg = _with(cfg, "ema_trend", extreme_distance50_pct=0.3, extreme_distance100_pct=0.6, extreme_distance200_pct=1.0)
    dd = cfg.divergence_detection.model_copy(update={"window_bars": 30, "min_history_bars": 1, "strength": "moderate"})
    return cfg.model_copy(update={"divergence_detection": dd})  # type: ignore[no-any-return]


CONFIGS = {"default": CFG, "rsi": _rsi_on(), "odd": _odd()}


def _series(data_dir: Path, symbol: str, timeframe: str) -> list[Candle]:
    candles = load_candles(data_dir, symbol, "5min")
    if timeframe == "5min":
        return candles
    agg = CandleAggregator("5min", timeframe)
    return [c for c in map(agg.update, candles) if c is not None]


def _reference(cfg: StrategyConfig, snaps: list[IndicatorSnapshot]) -> list[tuple[list[Signal], tuple[str, ...]]]:
    """TimeframeState.update before the kernel: every enabled detector updated, the ready ones' signals kept."""
    dets = [d(cfg) for d in ref.DETECTORS if cfg.indicators.get(d.name).enabled]
    out = []
    for snap in snaps:
        signals: list[Signal] = []
        ready = []
        for det in dets:
            found = det.update(snap)
            if det.ready(snap):
                ready.append(det.name)
                signals.extend(found)
        out.append((signals, tuple(ready)))
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("timeframe", ["5min", "30min"])
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_the_kernel_says_what_the_python_detectors_say(
    data_dir: Path, symbol: str, timeframe: str, config: str
) -> None:
    cfg = CONFIGS[config]
    indicators = IndicatorSet(IndicatorParams.from_config(cfg))
    snaps = [indicators.update(c) for c in _series(data_dir, symbol, timeframe)]
    want = _reference(cfg, snaps)
    ip, fp, state_len = detector_params(cfg)
    state = np.full(state_len, 7.0)  # reset must set every slot it reads
    detect_reset(ip, fp, state)
    sig, ready_mask = new_outputs()
    row = np.empty(N_SNAP)
    kinds: set[tuple[str, str]] = set()
    for bar, snap in enumerate(snaps):
        row_from_snapshot(snap, row)
        n = detect_step(ip, fp, state, row, sig, ready_mask)
        got = (signals_from_rows(sig, n), ready_names(ready_mask))
        assert got == want[bar], (bar, snap)
        kinds.update((s.indicator, s.kind) for s in got[0])
    # The series exercise the detectors: most signal kinds fire somewhere.
    assert len(kinds) >= (20 if timeframe == "5min" else 15), sorted(kinds)


def test_every_signal_kind_fires_on_the_real_series(data_dir: Path) -> None:
    """Over the four 5min series, the default config plus RSI emits every (indicator, kind) of the config (56
    distinct signals counting strengths), so the equality above covers each detector's every kind."""
    cfg = CONFIGS["rsi"]
    seen: set[tuple[str, str]] = set()
    for symbol in SYMBOLS:
        indicators = IndicatorSet(IndicatorParams.from_config(cfg))
        ip, fp, state_len = detector_params(cfg)
        state = np.empty(state_len)
        detect_reset(ip, fp, state)
        sig, ready_mask = new_outputs()
        row = np.empty(N_SNAP)
        for candle in load_candles(data_dir, symbol, "5min"):
            row_from_snapshot(indicators.update(candle), row)
            n = detect_step(ip, fp, state, row, sig, ready_mask)
            seen.update((s.indicator, s.kind) for s in signals_from_rows(sig, n))
    expected = {(name, kind) for name in INDICATORS for kind in cfg.indicators.get(name).signals}
    assert seen == expected, sorted(expected ^ seen)


def test_detector_params_size_the_state_from_the_config() -> None:
    _, _, default_len = detector_params(CFG)
    _, _, odd_len = detector_params(CONFIGS["odd"])
    # default rings: walk 5 + 5, closes 5, previous OBVs 19, volumes 20; odd: 2 + 2, 1, 1, 2
    assert default_len - odd_len == (10 + 5 + 19 + 20) - (4 + 1 + 1 + 2)
    bad = CFG.model_copy(
        update={"divergence_detection": CFG.divergence_detection.model_copy(update={"strength": "huge"})}
    )
    with pytest.raises(ValueError, match="huge"):
        detector_params(bad)


def test_no_bar_fills_more_than_the_signal_rows() -> None:
    assert 4 * len(INDICATORS) <= MAX_SIGNALS  # at most four signals per detector and bar


@pytest.mark.parametrize(
    ("close", "e9", "e50", "e200", "want"),
    [
        (101.0, 3.0, 2.0, 100.0, Direction.BULLISH),
        (99.0, 2.0, 3.0, 100.0, Direction.BEARISH),
        (100.0, 3.0, 2.0, 100.0, Direction.NEUTRAL),  # close on EMA200: no trend
        (101.0, 2.0, 2.0, 100.0, Direction.NEUTRAL),
        (101.0, 2.0, 3.0, 100.0, Direction.NEUTRAL),
    ],
)
def test_trend_direction_kernel_and_reference_agree(
    close: float, e9: float, e50: float, e200: float, want: Direction
) -> None:
    assert ref.trend_direction(close, e9, e50, e200) is want
    assert trend_direction_k(close, e9, e50, e200) == int(want)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(st.floats(-1e17, 1e17), st.sampled_from([1e16, -1e16, 1.0, 0.1])), max_size=40),
    first=st.integers(0, 39),
)
def test_the_ring_sum_is_pythons_sum(values: list[float], first: int) -> None:
    """The OBV volume mean sums like Python 3.12's compensated ``sum()``, from the oldest value of the ring on,
    so ``[1e16, 1.0, -1e16]`` gives 1.0 where a plain loop gives 0.0."""
    cap = max(len(values), 1)
    first %= cap
    ring = np.zeros(cap + 3)
    for i, v in enumerate(values):
        ring[3 + (first + i) % cap] = v
    assert ring_sum(ring, 3, cap, first, len(values)).hex() == float(sum(values)).hex()  # bit for bit
    assert ring_sum(np.array([1e16, 1.0, -1e16]), 0, 3, 0, 3) == 1.0


@kernel
def _detect_all(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    rows: npt.NDArray[np.float64],
    sig_all: npt.NDArray[np.int64],
    nsig: npt.NDArray[np.int64],
    ready_all: npt.NDArray[np.int64],
) -> None:
    """The backtest's shape: ``detect_step`` called from a compiled loop over the history."""
    sig = np.zeros((MAX_SIGNALS, SIG_COLUMNS), dtype=np.int64)
    for bar in range(rows.shape[0]):
        n = detect_step(ip, fp, state, rows[bar], sig, ready_all[bar])
        nsig[bar] = n
        sig_all[bar, :n] = sig[:n]


def test_a_compiled_loop_calling_the_step_says_what_per_bar_calls_say(data_dir: Path) -> None:
    cfg = CONFIGS["rsi"]
    indicators = IndicatorSet(IndicatorParams.from_config(cfg))
    candles = load_candles(data_dir, "XRPUSDTM", "5min")
    rows = np.empty((len(candles), N_SNAP))
    for bar, candle in enumerate(candles):
        row_from_snapshot(indicators.update(candle), rows[bar])
    ip, fp, state_len = detector_params(cfg)
    state = np.empty(state_len)
    detect_reset(ip, fp, state)
    sig_all = np.zeros((len(candles), MAX_SIGNALS, SIG_COLUMNS), dtype=np.int64)
    nsig = np.zeros(len(candles), dtype=np.int64)
    ready_all = np.zeros((len(candles), len(INDICATORS)), dtype=np.int64)
    _detect_all(ip, fp, state, rows, sig_all, nsig, ready_all)
    again = np.empty(state_len)
    detect_reset(ip, fp, again)
    sig, ready_mask = new_outputs()
    for bar in range(len(candles)):
        n = detect_step(ip, fp, again, rows[bar], sig, ready_mask)
        assert n == nsig[bar] and (sig[:n] == sig_all[bar, :n]).all() and (ready_mask == ready_all[bar]).all()
    assert (state == again).all()
    assert nsig.sum() > 5 * len(candles)  # about seven signals a bar once warm
