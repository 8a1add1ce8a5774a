"""The eleven signal detectors (spec §4.2) as one compiled per-bar step over float arrays.

Live, paper and backtest run the same machine code: ``detect_step`` takes one snapshot row (layout
``engine.indicators.layout``) and writes the bar's signals as int64 rows (layout ``engine.scoring.codes``).
Every threshold and window length comes from the config once, through ``detector_params``: ``ip`` (int64:
which detectors are on, integer params, the category of each signal kind, the offsets of the bounded histories
inside the state) and ``fp`` (float64 thresholds). All history lives in one float64 ``state`` array (bar numbers
and counters are exact integers in it), so a step allocates nothing.

The float operations are today's Python detectors' (tests/scoring/reference_detectors.py), in the same order,
and a test over the real candles holds the two equal bar for bar.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from engine.config.strategy import StrategyConfig
from engine.indicators.layout import (
    S_AC,
    S_ADX,
    S_AO,
    S_BB_LOWER,
    S_BB_MID,
    S_BB_UPPER,
    S_CLOSE,
    S_EMA9,
    S_EMA50,
    S_EMA100,
    S_EMA200,
    S_KDJ_D,
    S_KDJ_J,
    S_KDJ_K,
    S_MACD,
    S_MACD_HIST,
    S_MACD_SIGNAL,
    S_MINUS_DI,
    S_OBV,
    S_OBV_SLOPE,
    S_OBV_Z,
    S_PLUS_DI,
    S_RSI,
    S_SQUEEZE_ON,
    S_STOCH_D,
    S_STOCH_K,
    S_STOCH_RSI_D,
    S_STOCH_RSI_K,
    S_STOCH_RSI_RSI,
    S_VOLUME,
    S_WILLIAMS_R,
)
from engine.jit import kernel
from engine.pysum import ring_sum
from engine.scoring.codes import (
    CATEGORIES,
    I_ADX,
    I_AO,
    I_BOLLINGER,
    I_EMA_TREND,
    I_KDJ,
    I_MACD,
    I_OBV,
    I_RSI,
    I_STOCH_RSI,
    I_STOCHASTIC,
    I_WILLIAMS_R,
    INDICATORS,
    K_BAND_TOUCH,
    K_BREAKOUT,
    K_DI_CROSS,
    K_DIVERGENCE,
    K_EMA_CROSS,
    K_EXTREME_DISTANCE,
    K_GOLDEN_DEATH_CROSS,
    K_HISTOGRAM_FLIP,
    K_J_EXTREME,
    K_KD_CROSS,
    K_LEVEL_CROSS,
    K_SAUCER,
    K_SIGNAL_CROSS,
    K_SLOPE,
    K_SQUEEZE_FIRE,
    K_TREND_DIRECTION,
    K_TWIN_PEAKS,
    K_ZERO_CROSS,
    K_ZONE,
    KINDS,
    MAX_SIGNALS,
    N_INDICATORS,
    N_KINDS,
    SIG_CATEGORY,
    SIG_COLUMNS,
    SIG_DIRECTION,
    SIG_INDICATOR,
    SIG_KIND,
    SIG_STRENGTH,
    ST_EXTREME,
    ST_MODERATE,
    ST_STRONG,
    ST_VERY_STRONG,
    ST_WEAK,
    STRENGTHS,
)
from engine.scoring.signals import Direction, Signal

# A bar number far before any window (the Python trackers' -(2**62), exact in float64).
NO_BAR = -4611686018427387904.0

# --------------------------------------------------------------------------- ip: int64 parameters
IP_ENABLED = 0  # + indicator index: 1 if the detector runs
IP_CATEGORY = IP_ENABLED + N_INDICATORS  # + indicator * N_KINDS + kind: CATEGORIES index of that signal
IP_DIV_WINDOW = IP_CATEGORY + N_INDICATORS * N_KINDS  # divergenceDetection.windowBars
IP_DIV_MIN = IP_DIV_WINDOW + 1  # divergenceDetection.minHistoryBars
IP_DIV_STRENGTH = IP_DIV_WINDOW + 2  # STRENGTHS index of divergenceDetection.strength
IP_WR_PERSISTENT = IP_DIV_WINDOW + 3  # williams_r.persistentBars
IP_WR_VERY = IP_DIV_WINDOW + 4  # williams_r.crossVeryStrongMinBarsInZone
IP_KDJ_PERSISTENT = IP_DIV_WINDOW + 5  # kdj.persistentBars
IP_AO_WINDOW = IP_DIV_WINDOW + 6  # ao.twinPeaksWindow (also the AO history's length)
IP_BB_LOOKBACK = IP_DIV_WINDOW + 7  # bollinger.walkLookback
IP_BB_MIN_CLOSES = IP_DIV_WINDOW + 8  # bollinger.walkMinCloses
IP_OBV_CONFIRM = IP_DIV_WINDOW + 9  # obv.priceConfirmBars
IP_OBV_WINDOW = IP_DIV_WINDOW + 10  # obv.breakoutWindow
IP_OBV_SPIKE_LOOKBACK = IP_DIV_WINDOW + 11  # obv.volumeSpikeLookback
IP_OFF_BB_BELOW = IP_DIV_WINDOW + 12  # state offset of the walkLookback "close < mid" ring (1.0 / 0.0)
IP_OFF_BB_ABOVE = IP_DIV_WINDOW + 13  # state offset of the walkLookback "close > mid" ring
IP_OFF_OBV_CLOSES = IP_DIV_WINDOW + 14  # state offset of the priceConfirmBars closes ring
IP_OFF_OBV_PRIOR = IP_DIV_WINDOW + 15  # state offset of the breakoutWindow − 1 previous OBVs ring
IP_OFF_OBV_VOLS = IP_DIV_WINDOW + 16  # state offset of the breakoutWindow volumes ring
N_IP = IP_DIV_WINDOW + 17

# --------------------------------------------------------------------------- fp: float64 thresholds
F_KD_OVERSOLD, F_KD_OVERBOUGHT, F_KD_LO, F_KD_HI, F_KD_CROSS_LO, F_KD_CROSS_HI = range(6)  # relative, %K/%D pair
F_STOCH_RSI = 0  # the six above for StochRSI
F_STOCHASTIC = 6  # and for the Stochastic (cross zone = oversold + margin, overbought − margin)
F_WR_OVERSOLD = 12
F_WR_OVERBOUGHT = 13
F_WR_EXTREME_LOW = 14
F_WR_EXTREME_HIGH = 15
F_KDJ_J_OVERSOLD = 16
F_KDJ_J_OVERBOUGHT = 17
F_EMA_STRONG_PCT = 18
F_EMA_D50_PCT = 19
F_EMA_D100_PCT = 20
F_EMA_D200_PCT = 21
F_BB_TOUCH = 22
F_OBV_Z_TRIGGER = 23
F_OBV_Z_STRONG = 24
F_OBV_SPIKE_FACTOR = 25
F_ADX_TREND = 26
F_ADX_STRONG = 27
F_RSI_OVERSOLD = 28
F_RSI_OVERBOUGHT = 29
N_FP = 30

# --------------------------------------------------------------------------- state: trackers (relative offsets)
# DivergenceTracker: the four values before the newest (oldest first), the last two swings of each kind as
# (older bar, older value, newer bar, newer value), bars seen, and the last bars the swings say bullish / bearish.
DV_OSC = 0
DV_CLOSE = 4
DV_PL = 8
DV_PH = 12
DV_OL = 16
DV_OH = 20
DV_SEEN = 24
DV_BULL_UNTIL = 25
DV_BEAR_UNTIL = 26
DV_SIZE = 27
# TwinPeaksTracker: the values two and one bars back, bars seen, then the last two peaks and the last two troughs
# as (older bar, older value, older's opposite-before, newer bar, newer value, newer's opposite-before).
TW_PREV2 = 0
TW_PREV = 1
TW_SEEN = 2
TW_PEAKS = 3
TW_TROUGHS = 9
TW_SIZE = 15

# --------------------------------------------------------------------------- state: detectors (absolute offsets)
# %K/%D detectors (StochRSI, Stochastic): has-previous flag, previous %K and %D, then a divergence tracker.
KD_HAS_PREV, KD_K, KD_D, KD_DIV = 0, 1, 2, 3
X_STOCH_RSI = 0
X_STOCHASTIC = X_STOCH_RSI + 3 + DV_SIZE
# Williams %R: has-previous, previous %R, zone runs ending at the previous bar, divergence.
X_WR = X_STOCHASTIC + 3 + DV_SIZE
WR_HAS_PREV, WR_PREV, WR_RUN_LOW, WR_RUN_HIGH, WR_DIV = 0, 1, 2, 3, 4
# KDJ: has-previous, previous K and D, J runs, divergence.
X_KDJ = X_WR + 4 + DV_SIZE
KDJ_HAS_PREV, KDJ_K, KDJ_D, KDJ_RUN_LOW, KDJ_RUN_HIGH, KDJ_DIV = 0, 1, 2, 3, 4, 5
# AO: the history's length (capped at twinPeaksWindow) and its last four values (oldest first), twin peaks,
# divergence.
X_AO = X_KDJ + 5 + DV_SIZE
AO_LEN, AO_A0, AO_A1, AO_A2, AO_A3, AO_TWIN, AO_DIV = 0, 1, 2, 3, 4, 5, 5 + TW_SIZE
# EMA trend: has-previous, previous EMA9, EMA50, EMA200.
X_EMA = X_AO + 5 + TW_SIZE + DV_SIZE
EMA_HAS_PREV, EMA_E9, EMA_E50, EMA_E200 = 0, 1, 2, 3
# MACD: has-previous, previous MACD, signal, histogram, divergence.
X_MACD = X_EMA + 4
MACD_HAS_PREV, MACD_M, MACD_S, MACD_H, MACD_DIV = 0, 1, 2, 3, 4
# Bollinger: has-previous, previous close, upper, lower, squeeze; the walk rings' length, next slot and sums.
X_BB = X_MACD + 4 + DV_SIZE
BB_HAS_PREV, BB_C, BB_U, BB_L, BB_SQ, BB_LEN, BB_POS, BB_BELOW, BB_ABOVE = range(9)
# OBV: length and next slot of the closes, previous-OBVs and volumes rings, divergence.
X_OBV = X_BB + 9
OBV_C_LEN, OBV_C_POS, OBV_P_LEN, OBV_P_POS, OBV_V_LEN, OBV_V_POS, OBV_DIV = 0, 1, 2, 3, 4, 5, 6
# ADX: has-previous, previous +DI and −DI, the last three ADX values' count and values (oldest first).
X_ADX = X_OBV + 6 + DV_SIZE
ADX_HAS_PREV, ADX_PDI, ADX_MDI, ADX_LEN, ADX_A0, ADX_A1, ADX_A2 = range(7)
# Standalone RSI: has-previous, previous RSI, divergence.
X_RSI = X_ADX + 7
RSI_HAS_PREV, RSI_PREV, RSI_DIV = 0, 1, 2
# The config-sized rings follow.
X_RINGS = X_RSI + 2 + DV_SIZE


def detector_params(cfg: StrategyConfig) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    """(ip, fp, state_len) for ``cfg``: computed once per timeframe, read by every step."""
    ind = cfg.indicators
    ip = np.zeros(N_IP, dtype=np.int64)
    fp = np.zeros(N_FP, dtype=np.float64)
    for i, name in enumerate(INDICATORS):
        icfg = ind.get(name)
        ip[IP_ENABLED + i] = 1 if icfg.enabled else 0
        for k, kind in enumerate(KINDS):
            ip[IP_CATEGORY + i * N_KINDS + k] = CATEGORIES.index(icfg.signals.get(kind, "other"))
    dd = cfg.divergence_detection
    if dd.strength not in STRENGTHS:
        raise ValueError(f"divergenceDetection.strength {dd.strength!r} is not one of {', '.join(STRENGTHS)}")
    ip[IP_DIV_WINDOW], ip[IP_DIV_MIN], ip[IP_DIV_STRENGTH] = (
        dd.window_bars,
        dd.min_history_bars,
        STRENGTHS.index(dd.strength),
    )
    sr, so = ind.stoch_rsi.params, ind.stochastic.params
    fp[F_STOCH_RSI : F_STOCH_RSI + 6] = (
        sr.oversold,
        sr.overbought,
        sr.extreme_low,
        sr.extreme_high,
        sr.oversold,
        sr.overbought,
    )
    fp[F_STOCHASTIC : F_STOCHASTIC + 6] = (
        so.oversold,
        so.overbought,
        so.extreme_low,
        so.extreme_high,
        so.oversold + so.cross_zone_margin,
        so.overbought - so.cross_zone_margin,
    )
    wr = ind.williams_r.params
    fp[F_WR_OVERSOLD], fp[F_WR_OVERBOUGHT] = wr.oversold, wr.overbought
    fp[F_WR_EXTREME_LOW], fp[F_WR_EXTREME_HIGH] = wr.extreme_low, wr.extreme_high
    ip[IP_WR_PERSISTENT], ip[IP_WR_VERY] = wr.persistent_bars, wr.cross_very_strong_min_bars_in_zone
    kdj = ind.kdj.params
    fp[F_KDJ_J_OVERSOLD], fp[F_KDJ_J_OVERBOUGHT] = kdj.j_oversold, kdj.j_overbought
    ip[IP_KDJ_PERSISTENT] = kdj.persistent_bars
    ip[IP_AO_WINDOW] = ind.ao.params.twin_peaks_window
    ema = ind.ema_trend.params
    fp[F_EMA_STRONG_PCT] = ema.strong_trend_distance_pct
    fp[F_EMA_D50_PCT], fp[F_EMA_D100_PCT] = ema.extreme_distance50_pct, ema.extreme_distance100_pct
    fp[F_EMA_D200_PCT] = ema.extreme_distance200_pct
    bb = ind.bollinger.params
    fp[F_BB_TOUCH] = bb.touch_tolerance
    ip[IP_BB_LOOKBACK], ip[IP_BB_MIN_CLOSES] = bb.walk_lookback, bb.walk_min_closes
    obv = ind.obv.params
    fp[F_OBV_Z_TRIGGER], fp[F_OBV_Z_STRONG] = obv.z_score_trigger, obv.z_score_strong
    fp[F_OBV_SPIKE_FACTOR] = obv.volume_spike_factor
    ip[IP_OBV_CONFIRM], ip[IP_OBV_WINDOW] = obv.price_confirm_bars, obv.breakout_window
    ip[IP_OBV_SPIKE_LOOKBACK] = obv.volume_spike_lookback
    adx = ind.adx.params
    fp[F_ADX_TREND], fp[F_ADX_STRONG] = adx.trend_threshold, adx.strong_trend_threshold
    rsi = ind.rsi.params
    fp[F_RSI_OVERSOLD], fp[F_RSI_OVERBOUGHT] = rsi.oversold, rsi.overbought
    end = X_RINGS
    for slot, size in (
        (IP_OFF_BB_BELOW, bb.walk_lookback),
        (IP_OFF_BB_ABOVE, bb.walk_lookback),
        (IP_OFF_OBV_CLOSES, obv.price_confirm_bars),
        (IP_OFF_OBV_PRIOR, obv.breakout_window - 1),
        (IP_OFF_OBV_VOLS, obv.breakout_window),
    ):
        ip[slot] = end
        end += size
    return ip, fp, end


# --------------------------------------------------------------------------- trackers


@kernel
def div_reset(state: npt.NDArray[np.float64], o: int) -> None:
    """A fresh DivergenceTracker at ``state[o:o + DV_SIZE]``: swing placeholders far before any window."""
    for i in range(DV_SIZE):
        state[o + i] = 0.0
    for s in (DV_PL, DV_PH, DV_OL, DV_OH):
        state[o + s] = NO_BAR
        state[o + s + 2] = NO_BAR
    state[o + DV_BULL_UNTIL] = -1.0
    state[o + DV_BEAR_UNTIL] = -1.0


@kernel
def _push_swing(state: npt.NDArray[np.float64], s: int, bar: float, value: float) -> None:
    """The newer swing becomes the older; (bar, value) the newer."""
    state[s] = state[s + 2]
    state[s + 1] = state[s + 3]
    state[s + 2] = bar
    state[s + 3] = value


@kernel
def div_update(state: npt.NDArray[np.float64], o: int, window: int, min_history: int, osc: float, close: float) -> int:
    """§4.1 regular divergence over the last ``window`` (osc, close) pairs in O(1): +1 / −1 / 0 (see
    tests/scoring/reference_detectors.DivergenceTracker for the reasoning)."""
    bar = state[o + DV_SEEN]
    state[o + DV_SEEN] = bar + 1.0
    c0, c1, c, c3 = state[o + DV_CLOSE], state[o + DV_CLOSE + 1], state[o + DV_CLOSE + 2], state[o + DV_CLOSE + 3]
    state[o + DV_CLOSE], state[o + DV_CLOSE + 1], state[o + DV_CLOSE + 2], state[o + DV_CLOSE + 3] = c1, c, c3, close
    o0, o1, v, o3 = state[o + DV_OSC], state[o + DV_OSC + 1], state[o + DV_OSC + 2], state[o + DV_OSC + 3]
    state[o + DV_OSC], state[o + DV_OSC + 1], state[o + DV_OSC + 2], state[o + DV_OSC + 3] = o1, v, o3, osc
    if bar >= 4.0:  # the bar two back (c, v) now has two neighbours on each side: is it a swing?
        lows = False
        highs = False
        if c < c0 and c < c1 and c < c3 and c < close:
            _push_swing(state, o + DV_PL, bar - 2.0, c)
            lows = True
        elif c > c0 and c > c1 and c > c3 and c > close:
            _push_swing(state, o + DV_PH, bar - 2.0, c)
            highs = True
        if v < o0 and v < o1 and v < o3 and v < osc:
            _push_swing(state, o + DV_OL, bar - 2.0, v)
            lows = True
        elif v > o0 and v > o1 and v > o3 and v > osc:
            _push_swing(state, o + DV_OH, bar - 2.0, v)
            highs = True
        if lows:
            pl, ol = o + DV_PL, o + DV_OL
            if state[pl + 3] < state[pl + 1] and state[ol + 3] > state[ol + 1]:
                state[o + DV_BULL_UNTIL] = min(state[pl], state[ol]) + window - 3
            else:
                state[o + DV_BULL_UNTIL] = -1.0
        if highs:
            ph, oh = o + DV_PH, o + DV_OH
            if state[ph + 3] > state[ph + 1] and state[oh + 3] < state[oh + 1]:
                state[o + DV_BEAR_UNTIL] = min(state[ph], state[oh]) + window - 3
            else:
                state[o + DV_BEAR_UNTIL] = -1.0
    if bar + 1.0 < min_history:
        return 0
    if bar <= state[o + DV_BULL_UNTIL]:
        return 1
    if bar <= state[o + DV_BEAR_UNTIL]:
        return -1
    return 0


@kernel
def twin_reset(state: npt.NDArray[np.float64], o: int) -> None:
    """A fresh TwinPeaksTracker at ``state[o:o + TW_SIZE]``: extremum placeholders far before any window."""
    for i in range(TW_SIZE):
        state[o + i] = 0.0
    for s in (TW_PEAKS, TW_TROUGHS):
        for j in (0, 2, 3, 5):
            state[o + s + j] = NO_BAR


@kernel
def _push_extremum(state: npt.NDArray[np.float64], s: int, bar: float, value: float, before: float) -> None:
    state[s] = state[s + 3]
    state[s + 1] = state[s + 4]
    state[s + 2] = state[s + 5]
    state[s + 3] = bar
    state[s + 4] = value
    state[s + 5] = before


@kernel
def twin_update(state: npt.NDArray[np.float64], o: int, window: int, value: float) -> int:
    """§4.2 AO twin peaks over the last ``window`` values in O(1): +1 / −1 / 0 (see
    tests/scoring/reference_detectors.TwinPeaksTracker)."""
    bar = state[o + TW_SEEN]
    state[o + TW_SEEN] = bar + 1.0
    a, b = state[o + TW_PREV2], state[o + TW_PREV]
    pk, tr = o + TW_PEAKS, o + TW_TROUGHS
    if bar >= 2.0:  # the bar before now has both neighbours: a peak or a trough?
        if b > a and b > value:
            _push_extremum(state, pk, bar - 1.0, b, state[tr + 3])
        elif b < a and b < value:
            _push_extremum(state, tr, bar - 1.0, b, state[pk + 3])
    state[o + TW_PREV2], state[o + TW_PREV] = b, value
    first = bar - window + 2  # the oldest bar whose left neighbour is still in the window
    t1, t1v, t2v, peak_before_t2 = state[tr], state[tr + 1], state[tr + 4], state[tr + 5]
    if t1 >= first and t1v < 0 and t2v < 0 and t2v > t1v and peak_before_t2 > t1 and value > t2v:
        return 1
    p1, p1v, p2v, trough_before_p2 = state[pk], state[pk + 1], state[pk + 4], state[pk + 5]
    if p1 >= first and p1v > 0 and p2v > 0 and p2v < p1v and trough_before_p2 > p1 and value < p2v:
        return -1
    return 0


@kernel
def _ring_push(state: npt.NDArray[np.float64], start: int, cap: int, len_at: int, pos_at: int, x: float) -> None:
    """Append ``x`` to a bounded ring at ``state[start:start + cap]`` (a ``deque(maxlen=cap)``); its length and
    next slot are kept at ``len_at`` and ``pos_at``."""
    pos = int(state[pos_at])
    if state[len_at] != cap:
        state[len_at] += 1.0
    state[start + pos] = x
    state[pos_at] = float((pos + 1) % cap)


@kernel
def _ring_first(state: npt.NDArray[np.float64], cap: int, len_at: int, pos_at: int) -> int:
    """Slot of the oldest value of a ring."""
    return (int(state[pos_at]) - int(state[len_at]) + cap) % cap


# --------------------------------------------------------------------------- detectors


@kernel
def trend_direction_k(close: float, ema9: float, ema50: float, ema200: float) -> int:
    """§3.7: +1 if close > EMA200 and EMA9 > EMA50; −1 on the mirror; 0 otherwise."""
    if close > ema200 and ema9 > ema50:
        return 1
    if close < ema200 and ema9 < ema50:
        return -1
    return 0


@kernel
def _emit(
    ip: npt.NDArray[np.int64], sig: npt.NDArray[np.int64], n: int, ind: int, kind: int, direction: int, strength: int
) -> int:
    sig[n, SIG_INDICATOR] = ind
    sig[n, SIG_KIND] = kind
    sig[n, SIG_DIRECTION] = direction
    sig[n, SIG_STRENGTH] = strength
    sig[n, SIG_CATEGORY] = ip[IP_CATEGORY + ind * N_KINDS + kind]
    return n + 1


@kernel
def _divergence(
    ip: npt.NDArray[np.int64],
    state: npt.NDArray[np.float64],
    o: int,
    osc: float,
    close: float,
    sig: npt.NDArray[np.int64],
    n: int,
    ind: int,
) -> int:
    d = div_update(state, o, ip[IP_DIV_WINDOW], ip[IP_DIV_MIN], osc, close)
    if d != 0:
        n = _emit(ip, sig, n, ind, K_DIVERGENCE, d, ip[IP_DIV_STRENGTH])
    return n


@kernel
def _kd_cross(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
    ind: int,
    k_col: int,
    d_col: int,
    x: int,
    f: int,
) -> int:
    """StochRSI and Stochastic: %K/%D cross, zone, divergence of %K."""
    k, d = row[k_col], row[d_col]
    if math.isnan(k) or math.isnan(d):
        return n
    has_prev, pk, pd = state[x + KD_HAS_PREV], state[x + KD_K], state[x + KD_D]
    state[x + KD_HAS_PREV], state[x + KD_K], state[x + KD_D] = 1.0, k, d
    if has_prev != 0.0:
        if pk <= pd and k > d:
            n = _emit(ip, sig, n, ind, K_KD_CROSS, 1, ST_STRONG if k < fp[f + F_KD_CROSS_LO] else ST_MODERATE)
        elif pk >= pd and k < d:
            n = _emit(ip, sig, n, ind, K_KD_CROSS, -1, ST_STRONG if k > fp[f + F_KD_CROSS_HI] else ST_MODERATE)
    if k < fp[f + F_KD_OVERSOLD]:
        n = _emit(ip, sig, n, ind, K_ZONE, 1, ST_EXTREME if k < fp[f + F_KD_LO] else ST_MODERATE)
    elif k > fp[f + F_KD_OVERBOUGHT]:
        n = _emit(ip, sig, n, ind, K_ZONE, -1, ST_EXTREME if k > fp[f + F_KD_HI] else ST_MODERATE)
    return _divergence(ip, state, x + KD_DIV, k, row[S_CLOSE], sig, n, ind)


@kernel
def _williams_r(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    r = row[S_WILLIAMS_R]
    if math.isnan(r):
        return n
    x, ind = X_WR, I_WILLIAMS_R
    oversold, overbought = fp[F_WR_OVERSOLD], fp[F_WR_OVERBOUGHT]
    before_low, before_high = state[x + WR_RUN_LOW], state[x + WR_RUN_HIGH]
    has_prev, prev = state[x + WR_HAS_PREV], state[x + WR_PREV]
    state[x + WR_HAS_PREV], state[x + WR_PREV] = 1.0, r
    run_low = before_low + 1.0 if r < oversold else 0.0
    run_high = before_high + 1.0 if r > overbought else 0.0
    state[x + WR_RUN_LOW], state[x + WR_RUN_HIGH] = run_low, run_high
    very = ip[IP_WR_VERY]
    if has_prev != 0.0:
        if prev <= oversold and r > oversold:
            n = _emit(ip, sig, n, ind, K_LEVEL_CROSS, 1, ST_VERY_STRONG if before_low >= very else ST_STRONG)
        elif prev >= overbought and r < overbought:
            n = _emit(ip, sig, n, ind, K_LEVEL_CROSS, -1, ST_VERY_STRONG if before_high >= very else ST_STRONG)
    persistent = ip[IP_WR_PERSISTENT]
    if r < oversold:
        strength = ST_EXTREME if r < fp[F_WR_EXTREME_LOW] else ST_STRONG if run_low >= persistent else ST_MODERATE
        n = _emit(ip, sig, n, ind, K_ZONE, 1, strength)
    elif r > overbought:
        strength = ST_EXTREME if r > fp[F_WR_EXTREME_HIGH] else ST_STRONG if run_high >= persistent else ST_MODERATE
        n = _emit(ip, sig, n, ind, K_ZONE, -1, strength)
    return _divergence(ip, state, x + WR_DIV, r, row[S_CLOSE], sig, n, ind)


@kernel
def _kdj(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    k, d, j = row[S_KDJ_K], row[S_KDJ_D], row[S_KDJ_J]
    if math.isnan(k) or math.isnan(d) or math.isnan(j):
        return n
    x, ind = X_KDJ, I_KDJ
    j_oversold, j_overbought = fp[F_KDJ_J_OVERSOLD], fp[F_KDJ_J_OVERBOUGHT]
    run_low = state[x + KDJ_RUN_LOW] + 1.0 if j < j_oversold else 0.0
    run_high = state[x + KDJ_RUN_HIGH] + 1.0 if j > j_overbought else 0.0
    state[x + KDJ_RUN_LOW], state[x + KDJ_RUN_HIGH] = run_low, run_high
    if j < j_oversold:
        n = _emit(ip, sig, n, ind, K_J_EXTREME, 1, ST_EXTREME)
    elif j > j_overbought:
        n = _emit(ip, sig, n, ind, K_J_EXTREME, -1, ST_EXTREME)
    has_prev, pk, pd = state[x + KDJ_HAS_PREV], state[x + KDJ_K], state[x + KDJ_D]
    state[x + KDJ_HAS_PREV], state[x + KDJ_K], state[x + KDJ_D] = 1.0, k, d
    persistent = ip[IP_KDJ_PERSISTENT]
    if has_prev != 0.0:
        if pk <= pd and k > d:
            strength = ST_VERY_STRONG if j < 50 and run_low >= persistent else ST_STRONG if j < 50 else ST_MODERATE
            n = _emit(ip, sig, n, ind, K_KD_CROSS, 1, strength)
        elif pk >= pd and k < d:
            strength = ST_VERY_STRONG if j > 50 and run_high >= persistent else ST_STRONG if j > 50 else ST_MODERATE
            n = _emit(ip, sig, n, ind, K_KD_CROSS, -1, strength)
    return _divergence(ip, state, x + KDJ_DIV, j, row[S_CLOSE], sig, n, ind)


@kernel
def _py_min4(a: float, b: float, c: float, d: float) -> float:
    """Python's ``min(a, b, c, d)``: the first value that nothing later is below."""
    m = a
    if b < m:  # noqa: PLR1730 - Python's min/max order, NaN and all
        m = b
    if c < m:  # noqa: PLR1730 - Python's min/max order, NaN and all
        m = c
    if d < m:  # noqa: PLR1730 - Python's min/max order, NaN and all
        m = d
    return m


@kernel
def _py_max4(a: float, b: float, c: float, d: float) -> float:
    """Python's ``max(a, b, c, d)``."""
    m = a
    if b > m:  # noqa: PLR1730 - Python's min/max order, NaN and all
        m = b
    if c > m:  # noqa: PLR1730 - Python's min/max order, NaN and all
        m = c
    if d > m:  # noqa: PLR1730 - Python's min/max order, NaN and all
        m = d
    return m


@kernel
def _ao(
    ip: npt.NDArray[np.int64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    """Zero cross, saucer, twin peaks, divergence. The history is a ``deque(maxlen=twinPeaksWindow)`` of which
    only the length and the last four values are read."""
    ao, ac = row[S_AO], row[S_AC]
    if math.isnan(ao):
        return n
    x, ind = X_AO, I_AO
    window = ip[IP_AO_WINDOW]
    had = state[x + AO_LEN]
    prev = state[x + AO_A3]
    state[x + AO_A0], state[x + AO_A1], state[x + AO_A2], state[x + AO_A3] = (
        state[x + AO_A1],
        state[x + AO_A2],
        state[x + AO_A3],
        ao,
    )
    length = min(had + 1.0, float(window))
    state[x + AO_LEN] = length
    if had > 0.0 and not math.isnan(ac):
        if prev <= 0.0 and ao > 0.0:
            n = _emit(ip, sig, n, ind, K_ZERO_CROSS, 1, ST_VERY_STRONG if ac > 0 else ST_STRONG)
        elif prev >= 0.0 and ao < 0.0:
            n = _emit(ip, sig, n, ind, K_ZERO_CROSS, -1, ST_VERY_STRONG if ac < 0 else ST_STRONG)
    if length >= 4.0:
        a0, a1, a2, a3 = state[x + AO_A0], state[x + AO_A1], state[x + AO_A2], state[x + AO_A3]
        if _py_min4(a0, a1, a2, a3) > 0 and a1 < a0 and a2 < a1 and a3 > a2:
            n = _emit(ip, sig, n, ind, K_SAUCER, 1, ST_STRONG)
        elif _py_max4(a0, a1, a2, a3) < 0 and a1 > a0 and a2 > a1 and a3 < a2:
            n = _emit(ip, sig, n, ind, K_SAUCER, -1, ST_STRONG)
    twin = twin_update(state, x + AO_TWIN, window, ao)
    if twin != 0:
        n = _emit(ip, sig, n, ind, K_TWIN_PEAKS, twin, ST_VERY_STRONG)
    return _divergence(ip, state, x + AO_DIV, ao, row[S_CLOSE], sig, n, ind)


@kernel
def _ema_trend(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    e9, e50, e100, e200 = row[S_EMA9], row[S_EMA50], row[S_EMA100], row[S_EMA200]
    if math.isnan(e9) or math.isnan(e50) or math.isnan(e100) or math.isnan(e200):
        return n
    x, ind = X_EMA, I_EMA_TREND
    close = row[S_CLOSE]
    has_prev, p9, p50, p200 = state[x + EMA_HAS_PREV], state[x + EMA_E9], state[x + EMA_E50], state[x + EMA_E200]
    state[x + EMA_HAS_PREV], state[x + EMA_E9], state[x + EMA_E50], state[x + EMA_E200] = 1.0, e9, e50, e200
    if has_prev != 0.0:
        if p9 <= p50 and e9 > e50:
            n = _emit(ip, sig, n, ind, K_EMA_CROSS, 1, ST_STRONG)
        elif p9 >= p50 and e9 < e50:
            n = _emit(ip, sig, n, ind, K_EMA_CROSS, -1, ST_STRONG)
        if p50 <= p200 and e50 > e200:
            n = _emit(ip, sig, n, ind, K_GOLDEN_DEATH_CROSS, 1, ST_VERY_STRONG)
        elif p50 >= p200 and e50 < e200:
            n = _emit(ip, sig, n, ind, K_GOLDEN_DEATH_CROSS, -1, ST_VERY_STRONG)
    d200 = 100.0 * (close - e200) / e200
    d100 = 100.0 * (close - e100) / e100
    d50 = 100.0 * (close - e50) / e50
    trend = trend_direction_k(close, e9, e50, e200)
    if trend != 0:
        strong = abs(d200) > fp[F_EMA_STRONG_PCT]
        n = _emit(ip, sig, n, ind, K_TREND_DIRECTION, trend, ST_STRONG if strong else ST_MODERATE)
    x200, x100, x50 = fp[F_EMA_D200_PCT], fp[F_EMA_D100_PCT], fp[F_EMA_D50_PCT]
    if d200 < -x200:
        n = _emit(ip, sig, n, ind, K_EXTREME_DISTANCE, 1, ST_VERY_STRONG)
    elif d100 < -x100:
        n = _emit(ip, sig, n, ind, K_EXTREME_DISTANCE, 1, ST_STRONG)
    elif d50 < -x50:
        n = _emit(ip, sig, n, ind, K_EXTREME_DISTANCE, 1, ST_MODERATE)
    elif d200 > x200:
        n = _emit(ip, sig, n, ind, K_EXTREME_DISTANCE, -1, ST_VERY_STRONG)
    elif d100 > x100:
        n = _emit(ip, sig, n, ind, K_EXTREME_DISTANCE, -1, ST_STRONG)
    elif d50 > x50:
        n = _emit(ip, sig, n, ind, K_EXTREME_DISTANCE, -1, ST_MODERATE)
    return n


@kernel
def _macd(
    ip: npt.NDArray[np.int64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    m, s, h = row[S_MACD], row[S_MACD_SIGNAL], row[S_MACD_HIST]
    if math.isnan(m) or math.isnan(s) or math.isnan(h):
        return n
    x, ind = X_MACD, I_MACD
    has_prev, pm, ps, ph = state[x + MACD_HAS_PREV], state[x + MACD_M], state[x + MACD_S], state[x + MACD_H]
    state[x + MACD_HAS_PREV], state[x + MACD_M], state[x + MACD_S], state[x + MACD_H] = 1.0, m, s, h
    if has_prev != 0.0:
        if pm <= ps and m > s:
            n = _emit(ip, sig, n, ind, K_SIGNAL_CROSS, 1, ST_VERY_STRONG if m < 0 else ST_STRONG)
        elif pm >= ps and m < s:
            n = _emit(ip, sig, n, ind, K_SIGNAL_CROSS, -1, ST_VERY_STRONG if m > 0 else ST_STRONG)
        if pm <= 0.0 and m > 0.0:
            n = _emit(ip, sig, n, ind, K_ZERO_CROSS, 1, ST_STRONG)
        elif pm >= 0.0 and m < 0.0:
            n = _emit(ip, sig, n, ind, K_ZERO_CROSS, -1, ST_STRONG)
        if ph < 0 < h:
            n = _emit(ip, sig, n, ind, K_HISTOGRAM_FLIP, 1, ST_STRONG)
        elif ph > 0 > h:
            n = _emit(ip, sig, n, ind, K_HISTOGRAM_FLIP, -1, ST_STRONG)
    return _divergence(ip, state, x + MACD_DIV, m, row[S_CLOSE], sig, n, ind)


@kernel
def _bollinger(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    """Squeeze fire, breakout, band touch (a walk along the band turns the touch around)."""
    mid, up, lo, sq = row[S_BB_MID], row[S_BB_UPPER], row[S_BB_LOWER], row[S_SQUEEZE_ON]
    if math.isnan(mid) or math.isnan(up) or math.isnan(lo) or math.isnan(sq):
        return n
    x, ind = X_BB, I_BOLLINGER
    close = row[S_CLOSE]
    cap = ip[IP_BB_LOOKBACK]
    below = 1.0 if close < mid else 0.0
    above = 1.0 if close > mid else 0.0
    below_at, above_at, pos = ip[IP_OFF_BB_BELOW], ip[IP_OFF_BB_ABOVE], int(state[x + BB_POS])
    if state[x + BB_LEN] == cap:  # the oldest leaves both windows (two deque(maxlen=walkLookback))
        state[x + BB_BELOW] -= state[below_at + pos]
        state[x + BB_ABOVE] -= state[above_at + pos]
    else:
        state[x + BB_LEN] += 1.0
    state[below_at + pos], state[above_at + pos] = below, above
    state[x + BB_POS] = float((pos + 1) % cap)
    state[x + BB_BELOW] += below  # the windows' sums: sum() of their booleans, an exact count
    state[x + BB_ABOVE] += above
    has_prev, pc, pu, pl, psq = (
        state[x + BB_HAS_PREV],
        state[x + BB_C],
        state[x + BB_U],
        state[x + BB_L],
        state[x + BB_SQ],
    )
    state[x + BB_HAS_PREV], state[x + BB_C], state[x + BB_U], state[x + BB_L], state[x + BB_SQ] = 1.0, close, up, lo, sq
    if has_prev != 0.0:
        if psq != 0.0 and sq == 0.0:
            if close > mid:
                n = _emit(ip, sig, n, ind, K_SQUEEZE_FIRE, 1, ST_VERY_STRONG)
            elif close < mid:
                n = _emit(ip, sig, n, ind, K_SQUEEZE_FIRE, -1, ST_VERY_STRONG)
        if pc < pu and close > up:
            n = _emit(ip, sig, n, ind, K_BREAKOUT, 1, ST_VERY_STRONG if psq != 0.0 else ST_STRONG)
        elif pc > pl and close < lo:
            n = _emit(ip, sig, n, ind, K_BREAKOUT, -1, ST_VERY_STRONG if psq != 0.0 else ST_STRONG)
    min_closes = ip[IP_BB_MIN_CLOSES]
    walking_down = state[x + BB_BELOW] >= min_closes
    walking_up = state[x + BB_ABOVE] >= min_closes
    tol = fp[F_BB_TOUCH]
    if close <= lo * (1 + tol):
        if walking_down:
            n = _emit(ip, sig, n, ind, K_BAND_TOUCH, -1, ST_WEAK)
        else:
            n = _emit(ip, sig, n, ind, K_BAND_TOUCH, 1, ST_MODERATE)
    elif close >= up * (1 - tol):
        if walking_up:
            n = _emit(ip, sig, n, ind, K_BAND_TOUCH, 1, ST_WEAK)
        else:
            n = _emit(ip, sig, n, ind, K_BAND_TOUCH, -1, ST_MODERATE)
    return n


@kernel
def _volume_spike(ip: npt.NDArray[np.int64], fp: npt.NDArray[np.float64], state: npt.NDArray[np.float64]) -> bool:
    """A volume among the last volumeSpikeLookback above volumeSpikeFactor × the breakoutWindow mean."""
    x = X_OBV
    cap = ip[IP_OBV_WINDOW]
    length = int(state[x + OBV_V_LEN])
    if length < cap:
        return False
    start = ip[IP_OFF_OBV_VOLS]
    first = _ring_first(state, cap, x + OBV_V_LEN, x + OBV_V_POS)
    limit = fp[F_OBV_SPIKE_FACTOR] * (ring_sum(state, start, cap, first, length) / length)
    for i in range(max(0, length - ip[IP_OBV_SPIKE_LOOKBACK]), length):
        if state[start + (first + i) % cap] > limit:
            return True
    return False


@kernel
def _obv(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    """Slope (z-score, confirmed by price), breakout beyond the previous breakoutWindow − 1 OBVs, divergence."""
    x, ind = X_OBV, I_OBV
    close = row[S_CLOSE]
    confirm_bars = ip[IP_OBV_CONFIRM]
    _ring_push(state, ip[IP_OFF_OBV_CLOSES], confirm_bars, x + OBV_C_LEN, x + OBV_C_POS, close)
    _ring_push(state, ip[IP_OFF_OBV_VOLS], ip[IP_OBV_WINDOW], x + OBV_V_LEN, x + OBV_V_POS, row[S_VOLUME])
    obv, z = row[S_OBV], row[S_OBV_Z]
    if math.isnan(obv):
        return n
    prior_cap = ip[IP_OBV_WINDOW] - 1
    prior_at = ip[IP_OFF_OBV_PRIOR]
    window_full = state[x + OBV_P_LEN] == prior_cap
    high = 0.0
    low = 0.0
    if window_full:  # Python's max() and min() over the ring, oldest first
        first = _ring_first(state, prior_cap, x + OBV_P_LEN, x + OBV_P_POS)
        high = state[prior_at + first]
        low = high
        for i in range(1, prior_cap):
            v = state[prior_at + (first + i) % prior_cap]
            if v > high:  # noqa: PLR1730 - Python's min/max order, NaN and all
                high = v
            if v < low:  # noqa: PLR1730 - Python's min/max order, NaN and all
                low = v
    _ring_push(state, prior_at, prior_cap, x + OBV_P_LEN, x + OBV_P_POS, obv)
    if math.isnan(z):
        return n
    has_past = state[x + OBV_C_LEN] == confirm_bars
    past = state[ip[IP_OFF_OBV_CLOSES] + _ring_first(state, confirm_bars, x + OBV_C_LEN, x + OBV_C_POS)]
    trigger, strong = fp[F_OBV_Z_TRIGGER], fp[F_OBV_Z_STRONG]
    if z > trigger:
        confirm = has_past and close > past
        strength = ST_VERY_STRONG if confirm else ST_STRONG if abs(z) > strong else ST_MODERATE
        n = _emit(ip, sig, n, ind, K_SLOPE, 1, strength)
    elif z < -trigger:
        confirm = has_past and close < past
        strength = ST_VERY_STRONG if confirm else ST_STRONG if abs(z) > strong else ST_MODERATE
        n = _emit(ip, sig, n, ind, K_SLOPE, -1, strength)
    if window_full:  # a breakout beyond the previous breakoutWindow − 1 OBVs
        if obv > high:
            n = _emit(ip, sig, n, ind, K_BREAKOUT, 1, ST_VERY_STRONG if _volume_spike(ip, fp, state) else ST_STRONG)
        elif obv < low:
            n = _emit(ip, sig, n, ind, K_BREAKOUT, -1, ST_VERY_STRONG if _volume_spike(ip, fp, state) else ST_STRONG)
    return _divergence(ip, state, x + OBV_DIV, obv, close, sig, n, ind)


@kernel
def _adx(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    adx, pdi, mdi = row[S_ADX], row[S_PLUS_DI], row[S_MINUS_DI]
    if math.isnan(pdi) or math.isnan(mdi):
        return n
    x, ind = X_ADX, I_ADX
    has_prev, ppdi, pmdi = state[x + ADX_HAS_PREV], state[x + ADX_PDI], state[x + ADX_MDI]
    state[x + ADX_HAS_PREV], state[x + ADX_PDI], state[x + ADX_MDI] = 1.0, pdi, mdi
    if math.isnan(adx):
        return n
    state[x + ADX_A0], state[x + ADX_A1], state[x + ADX_A2] = state[x + ADX_A1], state[x + ADX_A2], adx
    length = min(state[x + ADX_LEN] + 1.0, 3.0)
    state[x + ADX_LEN] = length
    trending = adx >= fp[F_ADX_TREND]
    if trending and pdi != mdi:
        direction = 1 if pdi > mdi else -1
        n = _emit(
            ip, sig, n, ind, K_TREND_DIRECTION, direction, ST_VERY_STRONG if adx >= fp[F_ADX_STRONG] else ST_STRONG
        )
    if has_prev != 0.0:
        rising = length == 3.0 and state[x + ADX_A2] > state[x + ADX_A0]
        strength = ST_VERY_STRONG if trending and rising else ST_STRONG if trending else ST_MODERATE
        if ppdi <= pmdi and pdi > mdi:
            n = _emit(ip, sig, n, ind, K_DI_CROSS, 1, strength)
        elif pmdi <= ppdi and mdi > pdi:
            n = _emit(ip, sig, n, ind, K_DI_CROSS, -1, strength)
    return n


@kernel
def _rsi(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
) -> int:
    """Standalone RSI (disabled by default): level crosses, zones, divergence."""
    r = row[S_RSI]
    if math.isnan(r):
        return n
    x, ind = X_RSI, I_RSI
    oversold, overbought = fp[F_RSI_OVERSOLD], fp[F_RSI_OVERBOUGHT]
    has_prev, prev = state[x + RSI_HAS_PREV], state[x + RSI_PREV]
    state[x + RSI_HAS_PREV], state[x + RSI_PREV] = 1.0, r
    if has_prev != 0.0:
        if prev <= oversold and r > oversold:
            n = _emit(ip, sig, n, ind, K_LEVEL_CROSS, 1, ST_STRONG)
        elif prev >= overbought and r < overbought:
            n = _emit(ip, sig, n, ind, K_LEVEL_CROSS, -1, ST_STRONG)
    if r < oversold:
        n = _emit(ip, sig, n, ind, K_ZONE, 1, ST_MODERATE)
    elif r > overbought:
        n = _emit(ip, sig, n, ind, K_ZONE, -1, ST_MODERATE)
    return _divergence(ip, state, x + RSI_DIV, r, row[S_CLOSE], sig, n, ind)


@kernel
def _ready(row: npt.NDArray[np.float64], ind: int) -> bool:
    """Every snapshot field the detector reads is defined (its ``fields`` in the reference)."""
    if ind == I_STOCH_RSI:
        return not (
            math.isnan(row[S_STOCH_RSI_RSI]) or math.isnan(row[S_STOCH_RSI_K]) or math.isnan(row[S_STOCH_RSI_D])
        )
    if ind == I_STOCHASTIC:
        return not (math.isnan(row[S_STOCH_K]) or math.isnan(row[S_STOCH_D]))
    if ind == I_WILLIAMS_R:
        return not math.isnan(row[S_WILLIAMS_R])
    if ind == I_KDJ:
        return not (math.isnan(row[S_KDJ_K]) or math.isnan(row[S_KDJ_D]) or math.isnan(row[S_KDJ_J]))
    if ind == I_AO:
        return not (math.isnan(row[S_AO]) or math.isnan(row[S_AC]))
    if ind == I_EMA_TREND:
        return not (
            math.isnan(row[S_EMA9])
            or math.isnan(row[S_EMA50])
            or math.isnan(row[S_EMA100])
            or math.isnan(row[S_EMA200])
        )
    if ind == I_MACD:
        return not (math.isnan(row[S_MACD]) or math.isnan(row[S_MACD_SIGNAL]) or math.isnan(row[S_MACD_HIST]))
    if ind == I_BOLLINGER:
        return not (
            math.isnan(row[S_BB_MID])
            or math.isnan(row[S_BB_UPPER])
            or math.isnan(row[S_BB_LOWER])
            or math.isnan(row[S_SQUEEZE_ON])
        )
    if ind == I_OBV:
        return not (math.isnan(row[S_OBV]) or math.isnan(row[S_OBV_SLOPE]) or math.isnan(row[S_OBV_Z]))
    if ind == I_ADX:
        return not (math.isnan(row[S_ADX]) or math.isnan(row[S_PLUS_DI]) or math.isnan(row[S_MINUS_DI]))
    return not math.isnan(row[S_RSI])


@kernel
def detect_reset(ip: npt.NDArray[np.int64], fp: npt.NDArray[np.float64], state: npt.NDArray[np.float64]) -> None:
    """A fresh set of detectors (``TimeframeState.reset``): no previous values, empty histories."""
    state[:] = 0.0
    for o in (
        X_STOCH_RSI + KD_DIV,
        X_STOCHASTIC + KD_DIV,
        X_WR + WR_DIV,
        X_KDJ + KDJ_DIV,
        X_AO + AO_DIV,
        X_MACD + MACD_DIV,
        X_OBV + OBV_DIV,
        X_RSI + RSI_DIV,
    ):
        div_reset(state, o)
    twin_reset(state, X_AO + AO_TWIN)


@kernel
def _run(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    n: int,
    ind: int,
) -> int:
    if ind == I_STOCH_RSI:
        return _kd_cross(ip, fp, state, row, sig, n, ind, S_STOCH_RSI_K, S_STOCH_RSI_D, X_STOCH_RSI, F_STOCH_RSI)
    if ind == I_STOCHASTIC:
        return _kd_cross(ip, fp, state, row, sig, n, ind, S_STOCH_K, S_STOCH_D, X_STOCHASTIC, F_STOCHASTIC)
    if ind == I_WILLIAMS_R:
        return _williams_r(ip, fp, state, row, sig, n)
    if ind == I_KDJ:
        return _kdj(ip, fp, state, row, sig, n)
    if ind == I_AO:
        return _ao(ip, state, row, sig, n)
    if ind == I_EMA_TREND:
        return _ema_trend(ip, fp, state, row, sig, n)
    if ind == I_MACD:
        return _macd(ip, state, row, sig, n)
    if ind == I_BOLLINGER:
        return _bollinger(ip, fp, state, row, sig, n)
    if ind == I_OBV:
        return _obv(ip, fp, state, row, sig, n)
    if ind == I_ADX:
        return _adx(ip, fp, state, row, sig, n)
    return _rsi(ip, fp, state, row, sig, n)


@kernel
def detect_step(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    sig_out: npt.NDArray[np.int64],
    ready_out: npt.NDArray[np.int64],
) -> int:
    """One bar: every enabled detector updates its state (in INDICATORS order); the signals of the ready ones go
    to ``sig_out`` in that order, ``ready_out[i]`` says which are ready. Returns the number of signals."""
    n = 0
    for ind in range(N_INDICATORS):
        if ip[IP_ENABLED + ind] == 0:
            ready_out[ind] = 0
            continue
        start = n
        n = _run(ip, fp, state, row, sig_out, n, ind)
        if _ready(row, ind):
            ready_out[ind] = 1
        else:
            ready_out[ind] = 0
            n = start
    return n


# --------------------------------------------------------------------------- decoding for Python callers

_SIGNALS: dict[tuple[int, ...], Signal] = {}
_READY: dict[bytes, tuple[str, ...]] = {}


def new_outputs() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(sig_out, ready_out) buffers for ``detect_step``."""
    return np.zeros((MAX_SIGNALS, SIG_COLUMNS), dtype=np.int64), np.zeros(N_INDICATORS, dtype=np.int64)


def signals_from_rows(sig: npt.NDArray[np.int64], n: int) -> list[Signal]:
    """The first ``n`` signal rows as ``Signal`` objects; each distinct one is built once and shared."""
    out: list[Signal] = []
    for r in sig[:n].tolist():
        key = tuple(r)
        s = _SIGNALS.get(key)
        if s is None:
            ind, kind, direction, strength, category = r
            s = _SIGNALS[key] = Signal(
                INDICATORS[ind], KINDS[kind], Direction(direction), STRENGTHS[strength], CATEGORIES[category]
            )
        out.append(s)
    return out


def ready_names(ready_out: npt.NDArray[np.int64]) -> tuple[str, ...]:
    """Names of the ready detectors, in INDICATORS order."""
    key = ready_out.tobytes()
    names = _READY.get(key)
    if names is None:
        names = _READY[key] = tuple(name for name, r in zip(INDICATORS, ready_out.tolist(), strict=True) if r)
    return names
