"""Signals as the compiled strategy core sees them: small integers instead of strings.

A signal is one int64 row ``(indicator, kind, direction, strength, category)``: indices into the tuples below,
direction −1 / +1. The names are the spec's and the config's; ``Signal`` objects are built from these rows only
when a decision is explained. Constants are module globals so numba folds them into the compiled code.
"""

from __future__ import annotations

# Indicators with a signal detector, in evaluation (and signal) order.
INDICATORS = (
    "stoch_rsi",
    "stochastic",
    "williams_r",
    "kdj",
    "ao",
    "ema_trend",
    "macd",
    "bollinger",
    "obv",
    "adx",
    "rsi",
)
I_STOCH_RSI, I_STOCHASTIC, I_WILLIAMS_R, I_KDJ, I_AO, I_EMA_TREND, I_MACD, I_BOLLINGER, I_OBV, I_ADX, I_RSI = range(11)
N_INDICATORS = 11

KINDS = (
    "kdCross",
    "zone",
    "divergence",
    "levelCross",
    "jExtreme",
    "zeroCross",
    "saucer",
    "twinPeaks",
    "emaCross",
    "goldenDeathCross",
    "trendDirection",
    "extremeDistance",
    "signalCross",
    "histogramFlip",
    "squeezeFire",
    "breakout",
    "bandTouch",
    "slope",
    "diCross",
)
(
    K_KD_CROSS,
    K_ZONE,
    K_DIVERGENCE,
    K_LEVEL_CROSS,
    K_J_EXTREME,
    K_ZERO_CROSS,
    K_SAUCER,
    K_TWIN_PEAKS,
    K_EMA_CROSS,
    K_GOLDEN_DEATH_CROSS,
    K_TREND_DIRECTION,
    K_EXTREME_DISTANCE,
    K_SIGNAL_CROSS,
    K_HISTOGRAM_FLIP,
    K_SQUEEZE_FIRE,
    K_BREAKOUT,
    K_BAND_TOUCH,
    K_SLOPE,
    K_DI_CROSS,
) = range(19)
N_KINDS = 19

STRENGTHS = ("veryStrong", "strong", "moderate", "weak", "extreme", "unknown")
ST_VERY_STRONG, ST_STRONG, ST_MODERATE, ST_WEAK, ST_EXTREME, ST_UNKNOWN = range(6)
N_STRENGTHS = 6

CATEGORIES = ("divergence", "goldenDeathCross", "squeeze", "crossover", "momentum", "zone", "other")
C_DIVERGENCE, C_GOLDEN_DEATH_CROSS, C_SQUEEZE, C_CROSSOVER, C_MOMENTUM, C_ZONE, C_OTHER = range(7)
N_CATEGORIES = 7

# Columns of a signal row.
SIG_INDICATOR, SIG_KIND, SIG_DIRECTION, SIG_STRENGTH, SIG_CATEGORY = range(5)
SIG_COLUMNS = 5
# Room for the signals of one timeframe on one bar (eleven detectors emit at most 4 each).
MAX_SIGNALS = 64
