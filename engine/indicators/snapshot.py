"""The per-bar output of the indicator set: the one contract between indicators and scoring."""

from __future__ import annotations

from typing import NamedTuple

from engine.models import Candle


class IndicatorSnapshot(NamedTuple):
    """Every indicator value after one closed candle; ``None`` until that output is defined.

    Immutable, read by attribute. A NamedTuple rather than a frozen dataclass because the indicator set builds one
    per candle and a tuple is built positionally in a fraction of the time; the fields are in constructor order.

    Scoring keeps whatever history it needs (previous values for crosses, windows for
    divergences); the indicators keep only their own O(1) state.
    """

    candle: Candle
    # Standalone RSI (spec §3.1, period 21); None when disabled in the config.
    rsi: float | None = None
    # StochRSI (§3.2): the Wilder RSI(14) inside it, then %K and %D.
    stoch_rsi_rsi: float | None = None
    stoch_rsi_k: float | None = None
    stoch_rsi_d: float | None = None
    # Stochastic (§3.3)
    stoch_k: float | None = None
    stoch_d: float | None = None
    # Williams %R (§3.4)
    williams_r: float | None = None
    # KDJ (§3.5)
    kdj_k: float | None = None
    kdj_d: float | None = None
    kdj_j: float | None = None
    # Awesome Oscillator and accelerator (§3.6)
    ao: float | None = None
    ac: float | None = None
    # EMA trend (§3.7)
    ema9: float | None = None
    ema50: float | None = None
    ema100: float | None = None
    ema200: float | None = None
    # MACD (§3.8)
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    # Bollinger and Keltner squeeze (§3.9)
    bb_mid: float | None = None
    bb_upper: float | None = None
    bb_lower: float | None = None
    bb_bandwidth: float | None = None
    bb_percent_b: float | None = None
    kc_upper: float | None = None
    kc_lower: float | None = None
    squeeze_on: bool | None = None
    # OBV (§3.10): running OBV, its 14-bar slope, and the clamped z-score of the slope
    obv: float | None = None
    obv_slope: float | None = None
    obv_z: float | None = None
    # ATR (§3.11) and ATR% of close
    atr: float | None = None
    atr_pct: float | None = None
    # ADX (§3.12)
    adx: float | None = None
    plus_di: float | None = None
    minus_di: float | None = None
    # Number of candles fed since the last reset (a gap resets the set)
    bars: int = 0
