"""The indicator kernel called directly on its arrays, as the compiled backtest loop calls it: the row it writes is
the reference snapshot bit for bit (NaN exactly where the reference has None), ``IndicatorSet`` turns that same row
into its snapshot, and a reset state is a fresh state."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.indicators import IndicatorParams, IndicatorSet, IndicatorSnapshot
from engine.indicators.kernel import (
    N_SCALARS,
    P_OFF_OH,
    P_OFF_QQ,
    indicator_params,
    indicator_reset,
    indicator_step,
    row_from_snapshot,
    snapshot_from_row,
)
from engine.indicators.layout import N_SNAP, S_BARS, S_OBV, S_RSI, SNAPSHOT_COLUMNS
from engine.indicators.reference import ReferenceIndicatorSet
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from tests.indicators.test_fused import ODD


def _bits(row: npt.NDArray[np.float64]) -> list[int | None]:
    """The row's bit patterns (so -0.0 differs from 0.0), every NaN as None."""
    return [None if math.isnan(x) else int(b) for x, b in zip(row.tolist(), row.view(np.int64).tolist(), strict=True)]


def _fresh(params: IndicatorParams) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    ip, fp, n = indicator_params(params)
    state = np.full(n, 7.0)  # garbage: the reset must overwrite all of it
    indicator_reset(ip, fp, state)
    return ip, fp, state


@pytest.mark.parametrize(
    ("symbol", "params"), [("ETHUSDTM", IndicatorParams()), ("XRPUSDTM", ODD)], ids=["eth-default", "xrp-odd"]
)
def test_step_row_is_the_reference_snapshot(data_dir: Path, symbol: str, params: IndicatorParams) -> None:
    candles = load_candles(data_dir, symbol, "5min")
    ip, fp, state = _fresh(params)
    row = np.empty(N_SNAP)
    ref = ReferenceIndicatorSet(params)
    ind = IndicatorSet(params)
    for i, c in enumerate(candles):
        row[:] = 99.0  # every column must be written, none left from before
        indicator_step(ip, fp, state, c.open, c.high, c.low, c.close, c.volume, row)
        want = ref.update(c)
        assert _bits(row) == _bits(row_from_snapshot(want)), f"{symbol} bar {i}"
        got = ind.update(c)
        assert _bits(ind.row) == _bits(row), f"{symbol} bar {i}: IndicatorSet's row"
        assert got == snapshot_from_row(c, row) == want, f"{symbol} bar {i}: snapshot"
    assert ind.bars == len(candles) == int(row[S_BARS])


def test_warm_up_nan_placement() -> None:
    """With the default periods each column becomes defined at its documented bar (1-based) and stays defined."""
    first_defined = {
        "stoch_rsi_rsi": 15,  # RSI(14) needs 14 changes
        "stoch_rsi_k": 30,  # + 14 RSI values in the window, + 3 for %K
        "stoch_rsi_d": 32,
        "stoch_k": 16,
        "stoch_d": 18,
        "williams_r": 10,
        "kdj_k": 9,
        "kdj_d": 9,
        "kdj_j": 9,
        "ao": 34,
        "ac": 38,
        "ema9": 9,
        "ema50": 50,
        "ema100": 100,
        "ema200": 200,
        "macd": 26,
        "macd_signal": 34,
        "macd_hist": 34,
        "bb_mid": 20,
        "bb_upper": 20,
        "bb_lower": 20,
        "bb_bandwidth": 20,
        "bb_percent_b": 20,
        "kc_upper": 20,
        "kc_lower": 20,
        "squeeze_on": 20,
        "obv": 1,
        "obv_slope": 14,
        "obv_z": 18,  # 5 slopes
        "atr": 14,
        "atr_pct": 14,
        "adx": 28,
        "plus_di": 15,
        "minus_di": 15,
        "bars": 1,
    }
    assert set(first_defined) == set(SNAPSHOT_COLUMNS) - {"rsi"}
    ip, fp, state = _fresh(IndicatorParams())
    row = np.empty(N_SNAP)
    for b in range(1, 260):
        x = 100.0 + math.sin(b / 3.0) * 5.0
        indicator_step(ip, fp, state, x, x + 1.5, x - 1.0 - (b % 4) * 0.25, x + 0.5, 10.0 + b % 7, row)
        assert math.isnan(row[S_RSI])
        for name, first in first_defined.items():
            assert math.isnan(row[SNAPSHOT_COLUMNS[name]]) == (b < first), f"{name} at bar {b}"
    assert row[SNAPSHOT_COLUMNS["squeeze_on"]] in (0.0, 1.0) and row[S_BARS] == 259.0


def test_reset_after_bars_equals_a_fresh_state(data_dir: Path) -> None:
    candles = load_candles(data_dir, "SOLUSDTM", "5min")[:900]
    ip, fp, state = _fresh(ODD)
    row, fresh_row = np.empty(N_SNAP), np.empty(N_SNAP)
    for c in candles[:600]:
        indicator_step(ip, fp, state, c.open, c.high, c.low, c.close, c.volume, row)
    indicator_reset(ip, fp, state)
    ip2, fp2, fresh = _fresh(ODD)
    assert _bits(state) == _bits(fresh)
    for c in candles[600:]:
        indicator_step(ip, fp, state, c.open, c.high, c.low, c.close, c.volume, row)
        indicator_step(ip2, fp2, fresh, c.open, c.high, c.low, c.close, c.volume, fresh_row)
        assert _bits(row) == _bits(fresh_row)
    assert row[S_BARS] == 300.0


def test_snapshot_row_round_trip() -> None:
    c = Candle(0, 1.0, 2.0, 0.5, 1.5, 10.0)
    snap = IndicatorSnapshot(candle=c, stoch_k=-0.0, squeeze_on=False, obv=3.25, adx=12.5, bars=7)
    row = row_from_snapshot(snap)
    assert row[:5].tolist() == [1.0, 2.0, 0.5, 1.5, 10.0]
    assert row[S_OBV] == 3.25 and row[SNAPSHOT_COLUMNS["squeeze_on"]] == 0.0 and row[S_BARS] == 7.0
    assert math.copysign(1.0, row[SNAPSHOT_COLUMNS["stoch_k"]]) == -1.0
    back = snapshot_from_row(c, row)
    assert back == snap
    assert back.squeeze_on is False and type(back.bars) is int and back.rsi is None
    assert snapshot_from_row(c, row_from_snapshot(snap._replace(squeeze_on=True))).squeeze_on is True


def test_params_layout() -> None:
    ip, fp, n = indicator_params(ODD)
    # 18 rings after the scalars, back to back: the sum of every window.
    windows = (7, 4, 2, 6, 6, 2, 5, 17, 17, 5, 5, 3, 21, 7, 15, 25, 9, 30)
    assert ip[P_OFF_QQ] == N_SCALARS and n == N_SCALARS + sum(windows) == ip[P_OFF_OH] + 30
    assert fp.dtype == np.float64 and ip.dtype == np.int64
    with pytest.raises(ValueError, match="at least one value"):
        indicator_params(IndicatorParams(kdj_period=0))
