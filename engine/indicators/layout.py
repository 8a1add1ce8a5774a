"""The snapshot as the compiled strategy core sees it: one float64 row per closed candle.

Index constants are module globals so numba folds them into the compiled code. A value that is not defined yet
(``None`` in ``IndicatorSnapshot``) is NaN; ``squeeze_on`` is 1.0 / 0.0 / NaN; ``bars`` counts candles since the
last reset. The five candle values come first, then the ``IndicatorSnapshot`` fields in their declared order.
"""

from __future__ import annotations

S_OPEN = 0
S_HIGH = 1
S_LOW = 2
S_CLOSE = 3
S_VOLUME = 4
S_RSI = 5
S_STOCH_RSI_RSI = 6
S_STOCH_RSI_K = 7
S_STOCH_RSI_D = 8
S_STOCH_K = 9
S_STOCH_D = 10
S_WILLIAMS_R = 11
S_KDJ_K = 12
S_KDJ_D = 13
S_KDJ_J = 14
S_AO = 15
S_AC = 16
S_EMA9 = 17
S_EMA50 = 18
S_EMA100 = 19
S_EMA200 = 20
S_MACD = 21
S_MACD_SIGNAL = 22
S_MACD_HIST = 23
S_BB_MID = 24
S_BB_UPPER = 25
S_BB_LOWER = 26
S_BB_BANDWIDTH = 27
S_BB_PERCENT_B = 28
S_KC_UPPER = 29
S_KC_LOWER = 30
S_SQUEEZE_ON = 31
S_OBV = 32
S_OBV_SLOPE = 33
S_OBV_Z = 34
S_ATR = 35
S_ATR_PCT = 36
S_ADX = 37
S_PLUS_DI = 38
S_MINUS_DI = 39
S_BARS = 40
N_SNAP = 41

# IndicatorSnapshot field name → its column (every field but ``candle``).
SNAPSHOT_COLUMNS: dict[str, int] = {
    name: S_RSI + i
    for i, name in enumerate(
        (
            "rsi",
            "stoch_rsi_rsi",
            "stoch_rsi_k",
            "stoch_rsi_d",
            "stoch_k",
            "stoch_d",
            "williams_r",
            "kdj_k",
            "kdj_d",
            "kdj_j",
            "ao",
            "ac",
            "ema9",
            "ema50",
            "ema100",
            "ema200",
            "macd",
            "macd_signal",
            "macd_hist",
            "bb_mid",
            "bb_upper",
            "bb_lower",
            "bb_bandwidth",
            "bb_percent_b",
            "kc_upper",
            "kc_lower",
            "squeeze_on",
            "obv",
            "obv_slope",
            "obv_z",
            "atr",
            "atr_pct",
            "adx",
            "plus_di",
            "minus_di",
            "bars",
        )
    )
}
