"""The fused ``IndicatorSet`` against the readable per-indicator classes (``ReferenceIndicatorSet``): the full real
series of every symbol, every snapshot field, bit for bit; across a reset; and with non-default parameters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.indicators import IndicatorParams, IndicatorSet, IndicatorSnapshot
from engine.indicators.reference import ReferenceIndicatorSet
from engine.marketdata.candle_files import load_candles
from engine.models import Candle

SERIES = [(s, "5min") for s in ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM")] + [("ETHUSDTM", "30min")]

# Every period shifted off its default (and the standalone RSI on), so that no warm-up threshold of the fused
# loop can be right by coincidence of two equal periods.
ODD = IndicatorParams(
    rsi_enabled=True,
    rsi_period=9,
    stoch_rsi_rsi_period=11,
    stoch_rsi_stoch_period=7,
    stoch_rsi_k_smooth=4,
    stoch_rsi_d_smooth=2,
    stoch_k_period=6,
    stoch_k_smooth=2,
    stoch_d_period=5,
    williams_period=17,
    kdj_period=5,
    kdj_k_smooth=4,
    kdj_d_smooth=2,
    kdj_initial=40.0,
    ao_fast=3,
    ao_slow=21,
    ao_ac_period=7,
    ema_short=5,
    ema_long=21,
    ema_mid_trend=60,
    ema_trend=150,
    macd_fast=30,
    macd_slow=10,
    macd_signal=5,
    bb_period=15,
    bb_std_dev=2.5,
    keltner_period=25,
    keltner_multiplier=1.25,
    obv_slope_window=9,
    obv_slope_history=30,
    obv_min_slope_samples=40,  # more than the history: z is never defined
    obv_z_cap=1.5,
    atr_period=10,
    adx_period=12,
)


def _same(a: object, b: object) -> bool:
    """Equal values of the same type (so 0/None and True/1.0 differ), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _assert_equal(fused: list[IndicatorSnapshot], ref: list[IndicatorSnapshot], label: str) -> None:
    assert len(fused) == len(ref)
    for i, (f, r) in enumerate(zip(fused, ref, strict=True)):
        bad = [
            (name, getattr(f, name), getattr(r, name))
            for name in IndicatorSnapshot._fields
            if not _same(getattr(f, name), getattr(r, name))
        ]
        assert not bad, f"{label} bar {i}: fused != reference for {bad[:4]}"


def _both(candles: list[Candle], params: IndicatorParams | None = None) -> tuple[list[IndicatorSnapshot], ...]:
    fused, ref = IndicatorSet(params), ReferenceIndicatorSet(params)
    return [fused.update(c) for c in candles], [ref.update(c) for c in candles]


@pytest.mark.parametrize(("symbol", "interval"), SERIES)
def test_fused_equals_reference_on_full_series(data_dir: Path, symbol: str, interval: str) -> None:
    candles = load_candles(data_dir, symbol, interval)
    fused, ref = _both(candles)
    _assert_equal(fused, ref, f"{symbol} {interval}")
    # Every field is exercised: each one is defined (not None) by the end of the series, except the disabled RSI.
    last = fused[-1]
    assert [n for n in IndicatorSnapshot._fields if getattr(last, n) is None] == ["rsi"]


@pytest.mark.parametrize("symbol", ["ETHUSDTM", "XRPUSDTM"])
def test_fused_equals_reference_with_other_periods(data_dir: Path, symbol: str) -> None:
    candles = load_candles(data_dir, symbol, "5min")
    fused, ref = _both(candles, ODD)
    _assert_equal(fused, ref, f"{symbol} odd params")
    assert fused[-1].rsi is not None and fused[-1].obv_z is None


def test_reset_starts_warm_up_over(data_dir: Path) -> None:
    candles = load_candles(data_dir, "SOLUSDTM", "5min")[:1500]
    fused, ref = IndicatorSet(), ReferenceIndicatorSet()
    for c in candles[:700]:
        fused.update(c)
        ref.update(c)
    fused.reset()
    ref.reset()
    assert fused.bars == 0
    tail_f = [fused.update(c) for c in candles[700:]]
    tail_r = [ref.update(c) for c in candles[700:]]
    _assert_equal(tail_f, tail_r, "after reset")
    assert fused.bars == len(candles) - 700 == tail_f[-1].bars
    # ... and equal to a fresh set fed only the tail
    fresh = IndicatorSet()
    _assert_equal(tail_f, [fresh.update(c) for c in candles[700:]], "fresh")


def test_flat_and_degenerate_candles() -> None:
    # Flat prices (zero ranges, zero variance, zero losses), a zero close, zero volume: the edge branches.
    candles = [Candle(i * 300_000, 5.0, 5.0, 5.0, 5.0, 0.0) for i in range(260)]
    candles += [Candle((260 + i) * 300_000, 5.0, 6.0 + i % 3, 4.0 - i % 2, 5.0 + (i % 5) - 2, 1.0) for i in range(60)]
    candles += [Candle(320 * 300_000, 0.0, 1.0, 0.0, 0.0, 3.0)]
    fused, ref = _both(candles, IndicatorParams(rsi_enabled=True))
    _assert_equal(fused, ref, "synthetic")
    assert fused[-1].atr_pct is None and fused[100].squeeze_on is False
