"""Per-candle cost of the whole indicator set: ENYGMA's incremental engine against talipp (incremental) and
against recomputing TA-Lib and pandas-ta over a rolling 500-candle window, all in the same run. ENYGMA is measured
three ways: ``IndicatorSet.update`` (the compiled step plus the ``IndicatorSnapshot`` object, as live uses it), the
compiled step called from Python without building a snapshot, and the step called from a compiled loop over the
candle arrays (as the backtest runs it).

    .venv/bin/python -m bench.indicators [--json FILE]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import best_of, emit, parse, timed
from engine.indicators import IndicatorSet
from engine.indicators.kernel import indicator_reset, indicator_step
from engine.jit import kernel
from engine.marketdata.candle_files import load_candles
from engine.models import Candle

WINDOW = 500


def all_steps(step: Callable[[int], None], ends: Iterable[int]) -> None:
    for end in ends:
        step(end)


def ours(candles: list[Candle]) -> float:
    ind = IndicatorSet()
    return timed(lambda: [ind.update(c) for c in candles]) / len(candles)


def kernel_step(candles: list[Candle]) -> float:
    """The compiled step called once per candle from Python, writing its row only (no snapshot object)."""
    ind = IndicatorSet()
    ip, fp, state, row = ind.ip, ind.fp, ind.state, ind.row
    ohlcv = [(c.open, c.high, c.low, c.close, c.volume) for c in candles]

    def run() -> None:
        for o, h, lo, c, v in ohlcv:
            indicator_step(ip, fp, state, o, h, lo, c, v, row)

    indicator_reset(ip, fp, state)
    return timed(run) / len(candles)


@kernel
def _step_all(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    ohlcv: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
) -> None:
    for i in range(ohlcv.shape[0]):
        indicator_step(ip, fp, state, ohlcv[i, 0], ohlcv[i, 1], ohlcv[i, 2], ohlcv[i, 3], ohlcv[i, 4], row)


def kernel_loop(candles: list[Candle]) -> float:
    """The compiled step called from a compiled loop over the candle arrays (compiled before timing)."""
    ind = IndicatorSet()
    ip, fp, state, row = ind.ip, ind.fp, ind.state, ind.row
    ohlcv = np.array([(c.open, c.high, c.low, c.close, c.volume) for c in candles], dtype=np.float64)
    _step_all(ip, fp, state, ohlcv[:1], row)
    indicator_reset(ip, fp, state)
    return timed(lambda: _step_all(ip, fp, state, ohlcv, row)) / len(candles)


def talipp_set(candles: list[Candle]) -> float:
    from talipp.indicators import ADX, AO, ATR, BB, EMA, MACD, OBV, RSI, KeltnerChannels, Stoch, StochRSI, Williams
    from talipp.ohlcv import OHLCV

    close_inds: list[Any] = [
        StochRSI(14, 14, 3, 3),
        EMA(9),
        EMA(50),
        EMA(100),
        EMA(200),
        MACD(12, 26, 9),
        BB(20, 2.0),
        RSI(14),
    ]
    bar_inds: list[Any] = [
        Stoch(14, 3),
        Stoch(9, 3),
        Williams(10),
        AO(5, 34),
        KeltnerChannels(20, 20, 1.5, 1.5),
        OBV(),
        ATR(14),
        ADX(14, 14),
    ]
    bars = [OHLCV(c.open, c.high, c.low, c.close, c.volume) for c in candles]

    def run() -> None:
        for c, b in zip(candles, bars, strict=True):
            for i in close_inds:
                i.add(c.close)
            for i in bar_inds:
                i.add(b)

    return timed(run) / len(candles)


def talib_recompute(candles: list[Candle], n: int) -> float:
    import talib

    h = np.array([c.high for c in candles])
    lo = np.array([c.low for c in candles])
    c = np.array([c.close for c in candles])
    v = np.array([c.volume for c in candles])

    SMA = talib.MA_Type.SMA  # type: ignore[attr-defined]  # talib's stubs do not re-export MA_Type

    def step(end: int) -> None:
        hh, ll, cc, vv = h[end - WINDOW : end], lo[end - WINDOW : end], c[end - WINDOW : end], v[end - WINDOW : end]
        talib.STOCHRSI(cc, 14, 14, 3)
        talib.STOCH(hh, ll, cc, 14, 3, SMA, 3, SMA)
        talib.STOCH(hh, ll, cc, 9, 3, SMA, 3, SMA)
        talib.WILLR(hh, ll, cc, 10)
        med = talib.MEDPRICE(hh, ll)
        talib.SMA(med, 5)
        talib.SMA(med, 34)
        for p in (9, 50, 100, 200):
            talib.EMA(cc, p)
        talib.MACD(cc, 12, 26, 9)
        talib.BBANDS(cc, 20, 2, 2, SMA)
        talib.SMA(talib.TRANGE(hh, ll, cc), 20)
        talib.OBV(cc, vv)
        talib.ATR(hh, ll, cc, 14)
        talib.ADX(hh, ll, cc, 14)
        talib.PLUS_DI(hh, ll, cc, 14)
        talib.MINUS_DI(hh, ll, cc, 14)

    ends = range(WINDOW, WINDOW + n)
    return timed(lambda: all_steps(step, ends)) / n


def pandas_ta_recompute(candles: list[Candle], n: int) -> float:
    import pandas as pd
    import pandas_ta as ta

    df = pd.DataFrame(
        {
            "open": [c.open for c in candles],
            "high": [c.high for c in candles],
            "low": [c.low for c in candles],
            "close": [c.close for c in candles],
            "volume": [c.volume for c in candles],
        }
    )

    def step(end: int) -> None:
        w = df.iloc[end - WINDOW : end]
        ta.stochrsi(w.close, 14, 14, 3, 3)
        ta.stoch(w.high, w.low, w.close, 14, 3, 3)
        ta.kdj(w.high, w.low, w.close, 9, 3)
        ta.willr(w.high, w.low, w.close, 10)
        ta.ao(w.high, w.low, 5, 34)
        for p in (9, 50, 100, 200):
            ta.ema(w.close, p)
        ta.macd(w.close, 12, 26, 9)
        ta.bbands(w.close, 20, 2.0)
        ta.kc(w.high, w.low, w.close, 20, 1.5)
        ta.obv(w.close, w.volume)
        ta.atr(w.high, w.low, w.close, 14)
        ta.adx(w.high, w.low, w.close, 14)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ends = range(WINDOW, WINDOW + n)
        return timed(lambda: all_steps(step, ends)) / n


def main() -> None:
    args = parse(__doc__ or "")
    candles = load_candles(args.data_dir, "ETHUSDTM", "5min")
    t_ours = best_of(5, lambda: ours(candles))
    t_step = best_of(5, lambda: kernel_step(candles))
    t_loop = best_of(5, lambda: kernel_loop(candles))
    t_talipp = best_of(2, lambda: talipp_set(candles))
    t_talib = best_of(2, lambda: talib_recompute(candles, 2000))
    t_pta = best_of(1, lambda: pandas_ta_recompute(candles, 100))
    us = 1e6
    rows = [
        ("ENYGMA incremental (IndicatorSet.update)", f"{t_ours * us:9.1f} µs/candle"),
        ("ENYGMA kernel step from Python, no snapshot", f"{t_step * us:9.2f} µs/candle"),
        ("ENYGMA kernel step in a compiled loop", f"{t_loop * us:9.3f} µs/candle"),
        ("talipp (incremental)", f"{t_talipp * us:9.1f} µs/candle"),
        ("TA-Lib recompute, 500 window", f"{t_talib * us:9.1f} µs/candle"),
        ("pandas-ta recompute, 500 window", f"{t_pta * us:9.1f} µs/candle"),
    ]
    figures = {
        "series": "ETHUSDTM 5min",
        "candles": len(candles),
        "us_per_candle": {
            "enygma": t_ours * us,
            "enygma_kernel_step": t_step * us,
            "enygma_kernel_loop": t_loop * us,
            "talipp": t_talipp * us,
            "talib_recompute_500": t_talib * us,
            "pandas_ta_recompute_500": t_pta * us,
        },
    }
    ratios = {
        "vs_talipp": t_talipp / t_ours,
        "vs_talib_recompute": t_talib / t_ours,
        "vs_pandas_ta_recompute": t_pta / t_ours,
    }
    emit("Indicator set, cost per new candle (lower is better)", rows, figures, ratios, args.json)


if __name__ == "__main__":
    main()
