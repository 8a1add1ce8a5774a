"""The whole indicator set as one compiled per-bar step over float arrays (numba, see engine/jit.py).

``indicator_step`` applies one closed candle in O(1) and writes the snapshot row (engine/indicators/layout.py).
Live and paper call it once per closed candle through ``IndicatorSet``; the backtest calls it from a compiled loop.
Its arithmetic is the readable per-indicator classes' (reference.py) operation for operation, in the same order:
tests/indicators/test_fused.py requires every field of every snapshot to be bit-identical over the real series.
Change an indicator here and in the reference together.

All running state lives in one float64 array ``state``: the scalars at the ``X_*`` indices below, then one ring
buffer per window (a ``deque(maxlen=n)`` of the reference) at the offsets held in ``ip``. A ring writes at its
position and advances it; once full, the slot at the position is the oldest value (the deque's ``[0]``). Bar
counts and positions are exact integers in float. ``ip`` holds the periods (``P_*``) and ring offsets
(``P_OFF_*``), ``fp`` the float factors (``F_*``), both computed once from the parameters by ``indicator_params``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from engine.indicators.layout import (
    N_SNAP,
    S_AC,
    S_ADX,
    S_AO,
    S_ATR,
    S_ATR_PCT,
    S_BARS,
    S_BB_BANDWIDTH,
    S_BB_LOWER,
    S_BB_MID,
    S_BB_PERCENT_B,
    S_BB_UPPER,
    S_CLOSE,
    S_EMA9,
    S_EMA50,
    S_EMA100,
    S_EMA200,
    S_HIGH,
    S_KC_LOWER,
    S_KC_UPPER,
    S_KDJ_D,
    S_KDJ_J,
    S_KDJ_K,
    S_LOW,
    S_MACD,
    S_MACD_HIST,
    S_MACD_SIGNAL,
    S_MINUS_DI,
    S_OBV,
    S_OBV_SLOPE,
    S_OBV_Z,
    S_OPEN,
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
from engine.indicators.params import IndicatorParams
from engine.indicators.snapshot import IndicatorSnapshot
from engine.jit import kernel
from engine.models import Candle

NAN = math.nan
INF = math.inf
_new_tuple = tuple.__new__

# ip: integer parameters. Periods first (names follow the reference classes' letters in the comments below) ...
P_RSI_ON = 0  # 1 when the standalone RSI is enabled
P_R_N = 1  # standalone RSI period
P_Q_N = 2  # StochRsi: its RSI period, stoch window, %K and %D smoothing
P_Q_W = 3
P_Q_KN = 4
P_Q_DN = 5
P_S_N = 6  # Stochastic: window, %K smoothing, %D period
P_S_KN = 7
P_S_DN = 8
P_W_N = 9  # WilliamsR window
P_J_N = 10  # Kdj window
P_A_FN = 11  # AwesomeOscillator fast, slow, AC periods
P_A_SN = 12
P_A_CN = 13
P_E1_N = 14  # Ema short, long, mid trend, trend
P_E2_N = 15
P_E3_N = 16
P_E4_N = 17
P_M_FN = 18  # Macd fast, slow, signal
P_M_SN = 19
P_M_GN = 20
P_B_N = 21  # Bollinger period
P_K_N = 22  # Keltner period
P_O_W = 23  # Obv slope window, slope history, minimum slope samples for z
P_O_HN = 24
P_O_MIN = 25
P_T_N = 26  # Atr period
P_D_N = 27  # Adx period
# ... then the offset of each ring buffer inside ``state``
P_OFF_QQ = 28  # StochRsi: RSI values (q_w)
P_OFF_QK = 29  # StochRsi: raw %K values (q_kn)
P_OFF_QD = 30  # StochRsi: %K values for %D (q_dn)
P_OFF_SH = 31  # Stochastic: highs, lows (s_n each), raw %K (s_kn), %K for %D (s_dn)
P_OFF_SL = 32
P_OFF_SK = 33
P_OFF_SD = 34
P_OFF_WH = 35  # WilliamsR: highs, lows (w_n each)
P_OFF_WL = 36
P_OFF_JH = 37  # Kdj: highs, lows (j_n each)
P_OFF_JL = 38
P_OFF_AF = 39  # AwesomeOscillator: median prices (a_fn, a_sn), AO values (a_cn)
P_OFF_AS = 40
P_OFF_AC = 41
P_OFF_B = 42  # Bollinger: closes minus the first close (b_n)
P_OFF_K = 43  # Keltner: true ranges (k_n)
P_OFF_O = 44  # Obv: OBV values (o_w), slopes (o_hn)
P_OFF_OH = 45
N_IP = 46

# fp: float factors
F_KDJ_INITIAL = 0
F_J_KA = 1  # 1 / kdj_k_smooth and 1 − that
F_J_KA1 = 2
F_J_DA = 3  # 1 / kdj_d_smooth and 1 − that
F_J_DA1 = 4
F_E1_A = 5  # EMA α = 2 / (n + 1) of the four trend EMAs ...
F_E2_A = 6
F_E3_A = 7
F_E4_A = 8
F_M_FA = 9  # ... and of MACD fast, slow, signal
F_M_SA = 10
F_M_GA = 11
F_BB_K = 12  # bb_std_dev
F_KC_M = 13  # keltner_multiplier
F_OBV_CAP = 14  # obv_z_cap
N_FP = 15

# state: scalars
X_B = 0  # candles since the reset (1 on the first)
X_PH = 1  # previous candle's high, low, close
X_PL = 2
X_PC = 3
X_R_G = 4  # standalone RSI: Wilder gains, losses
X_R_L = 5
X_Q_G = 6  # StochRsi: Wilder gains, losses, window extremes, %K and %D ring sums
X_Q_L = 7
X_Q_HH = 8
X_Q_LL = 9
X_Q_KS = 10
X_Q_DS = 11
X_S_HH = 12  # Stochastic: window extremes, %K and %D ring sums
X_S_LL = 13
X_S_KS = 14
X_S_DS = 15
X_W_HH = 16  # WilliamsR window extremes
X_W_LL = 17
X_J_HH = 18  # Kdj window extremes, K, D
X_J_LL = 19
X_J_K = 20
X_J_D = 21
X_A_FS = 22  # AwesomeOscillator ring sums: fast, slow, AC
X_A_SS = 23
X_A_CS = 24
X_E1 = 25  # the four EMAs (their seed sums during warm-up)
X_E2 = 26
X_E3 = 27
X_E4 = 28
X_M_F = 29  # Macd EMAs: fast, slow, signal
X_M_S = 30
X_M_G = 31
X_B_ANCHOR = 32  # Bollinger: first close, sum and sum of squares of the offset closes
X_B_S = 33
X_B_SS = 34
X_K_S = 35  # Keltner: true-range ring sum
X_O_S = 36  # Obv: slope sum, sum of squares, running OBV
X_O_SS = 37
X_OBV = 38
X_ATR = 39
X_D_TR = 40  # Adx: Wilder sums of TR, +DM, -DM, ADX
X_D_P = 41
X_D_M = 42
X_ADX = 43
# ring positions (the Stochastic, WilliamsR and Kdj high and low rings share one)
X_POS_QQ = 44
X_POS_QK = 45
X_POS_QD = 46
X_POS_S = 47
X_POS_SK = 48
X_POS_SD = 49
X_POS_W = 50
X_POS_J = 51
X_POS_AF = 52
X_POS_AS = 53
X_POS_AC = 54
X_POS_B = 55
X_POS_K = 56
X_POS_O = 57
X_POS_OH = 58
N_SCALARS = 59


def indicator_params(p: IndicatorParams) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    """(ip, fp, state_len) for ``p``: computed once in Python so the step only reads arrays."""
    periods = {
        P_RSI_ON: 1 if p.rsi_enabled else 0,
        P_R_N: p.rsi_period,
        P_Q_N: p.stoch_rsi_rsi_period,
        P_Q_W: p.stoch_rsi_stoch_period,
        P_Q_KN: p.stoch_rsi_k_smooth,
        P_Q_DN: p.stoch_rsi_d_smooth,
        P_S_N: p.stoch_k_period,
        P_S_KN: p.stoch_k_smooth,
        P_S_DN: p.stoch_d_period,
        P_W_N: p.williams_period,
        P_J_N: p.kdj_period,
        P_A_FN: p.ao_fast,
        P_A_SN: p.ao_slow,
        P_A_CN: p.ao_ac_period,
        P_E1_N: p.ema_short,
        P_E2_N: p.ema_long,
        P_E3_N: p.ema_mid_trend,
        P_E4_N: p.ema_trend,
        P_M_FN: p.macd_fast,
        P_M_SN: p.macd_slow,
        P_M_GN: p.macd_signal,
        P_B_N: p.bb_period,
        P_K_N: p.keltner_period,
        P_O_W: p.obv_slope_window,
        P_O_HN: p.obv_slope_history,
        P_O_MIN: p.obv_min_slope_samples,
        P_T_N: p.atr_period,
        P_D_N: p.adx_period,
    }
    rings = (
        (P_OFF_QQ, p.stoch_rsi_stoch_period),
        (P_OFF_QK, p.stoch_rsi_k_smooth),
        (P_OFF_QD, p.stoch_rsi_d_smooth),
        (P_OFF_SH, p.stoch_k_period),
        (P_OFF_SL, p.stoch_k_period),
        (P_OFF_SK, p.stoch_k_smooth),
        (P_OFF_SD, p.stoch_d_period),
        (P_OFF_WH, p.williams_period),
        (P_OFF_WL, p.williams_period),
        (P_OFF_JH, p.kdj_period),
        (P_OFF_JL, p.kdj_period),
        (P_OFF_AF, p.ao_fast),
        (P_OFF_AS, p.ao_slow),
        (P_OFF_AC, p.ao_ac_period),
        (P_OFF_B, p.bb_period),
        (P_OFF_K, p.keltner_period),
        (P_OFF_O, p.obv_slope_window),
        (P_OFF_OH, p.obv_slope_history),
    )
    ip = np.zeros(N_IP, dtype=np.int64)
    for i, n in periods.items():
        ip[i] = n
    offset = N_SCALARS
    for i, n in rings:
        if n < 1:
            raise ValueError(f"indicator windows must hold at least one value, got {n} ({p})")
        ip[i] = offset
        offset += n
    fp = np.zeros(N_FP, dtype=np.float64)
    # Each factor computed exactly as the reference does, in Python floats.
    j_ka = 1.0 / p.kdj_k_smooth
    j_da = 1.0 / p.kdj_d_smooth
    fp[F_KDJ_INITIAL] = p.kdj_initial
    fp[F_J_KA] = j_ka
    fp[F_J_KA1] = 1.0 - j_ka
    fp[F_J_DA] = j_da
    fp[F_J_DA1] = 1.0 - j_da
    fp[F_E1_A] = 2.0 / (p.ema_short + 1)
    fp[F_E2_A] = 2.0 / (p.ema_long + 1)
    fp[F_E3_A] = 2.0 / (p.ema_mid_trend + 1)
    fp[F_E4_A] = 2.0 / (p.ema_trend + 1)
    fp[F_M_FA] = 2.0 / (p.macd_fast + 1)
    fp[F_M_SA] = 2.0 / (p.macd_slow + 1)
    fp[F_M_GA] = 2.0 / (p.macd_signal + 1)
    fp[F_BB_K] = p.bb_std_dev
    fp[F_KC_M] = p.keltner_multiplier
    fp[F_OBV_CAP] = p.obv_z_cap
    return ip, fp, offset


@kernel
def indicator_reset(ip: npt.NDArray[np.int64], fp: npt.NDArray[np.float64], state: npt.NDArray[np.float64]) -> None:
    """A fresh set: zero sums, empty rings at position 0, extremes at ∓inf, KDJ's K and D at their initial value."""
    state[:] = 0.0
    state[X_Q_HH] = -INF
    state[X_Q_LL] = INF
    state[X_S_HH] = -INF
    state[X_S_LL] = INF
    state[X_W_HH] = -INF
    state[X_W_LL] = INF
    state[X_J_HH] = -INF
    state[X_J_LL] = INF
    state[X_J_K] = fp[F_KDJ_INITIAL]
    state[X_J_D] = fp[F_KDJ_INITIAL]


@kernel
def _push(st: npt.NDArray[np.float64], off: int, n: int, at: int, x: float) -> None:
    """Append ``x`` to the ring of ``n`` values at ``off`` whose position is ``st[at]`` (deque.append)."""
    pos = int(st[at])
    st[off + pos] = x
    pos += 1
    st[at] = 0.0 if pos == n else pos


@kernel
def _oldest(st: npt.NDArray[np.float64], off: int, at: int) -> float:
    """The oldest value of a full ring (deque[0])."""
    return float(st[off + int(st[at])])


@kernel
def _ring_max(st: npt.NDArray[np.float64], off: int, n: int, at: int) -> float:
    """``max(deque)`` of a full ring: oldest to newest, replaced only by a strictly greater value."""
    pos = int(st[at])
    m = st[off + pos]
    for i in range(1, n):
        j = pos + i
        if j >= n:
            j -= n
        x = st[off + j]
        m = max(m, x)
    return float(m)


@kernel
def _ring_min(st: npt.NDArray[np.float64], off: int, n: int, at: int) -> float:
    """``min(deque)`` of a full ring: oldest to newest, replaced only by a strictly smaller value."""
    pos = int(st[at])
    m = st[off + pos]
    for i in range(1, n):
        j = pos + i
        if j >= n:
            j -= n
        x = st[off + j]
        m = min(m, x)
    return float(m)


@kernel
def _hl_window(
    st: npt.NDArray[np.float64],
    b: int,
    n: int,
    off_h: int,
    off_l: int,
    at: int,
    ihh: int,
    ill: int,
    h: float,
    lo: float,
) -> None:
    """SlidingExtremes of highs and lows (Stochastic, WilliamsR, Kdj): two rings sharing the position ``st[at]``;
    the running extreme is recomputed from the window only when the value leaving it was that extreme."""
    pos = int(st[at])
    oh = st[off_h + pos]
    ol = st[off_l + pos]
    st[off_h + pos] = h
    st[off_l + pos] = lo
    pos += 1
    st[at] = 0.0 if pos == n else pos
    if b > n:
        if h >= st[ihh]:
            st[ihh] = h
        elif oh == st[ihh]:
            st[ihh] = _ring_max(st, off_h, n, at)
        if lo <= st[ill]:
            st[ill] = lo
        elif ol == st[ill]:
            st[ill] = _ring_min(st, off_l, n, at)
    else:
        st[ihh] = max(st[ihh], h)
        st[ill] = min(st[ill], lo)


@kernel
def _ema_seeded(st: npt.NDArray[np.float64], i: int, b: int, n: int, a: float, x: float) -> None:
    """Ema: SMA seed over the first ``n`` values, then value += α·(x − value)."""
    if b > n:
        st[i] += a * (x - st[i])
    else:
        st[i] += x
        if b == n:
            st[i] = st[i] / n


@kernel
def indicator_step(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
    row: npt.NDArray[np.float64],
) -> None:
    """Apply one closed candle and write every column of ``row`` (NaN where the reference yields None)."""
    st = state
    b = int(st[X_B]) + 1
    st[X_B] = b

    # StochRsi warm-up thresholds
    q_n = ip[P_Q_N]
    q_w = ip[P_Q_W]
    q_kn = ip[P_Q_KN]
    q_dn = ip[P_Q_DN]
    q_first = q_n + 1  # first bar with an RSI
    q_full = q_first + q_w - 1  # first bar with a full window of RSI values
    q_kfirst = q_full + q_kn - 1
    q_dfirst = q_kfirst + q_dn - 1

    rsi = NAN
    srsi = NAN
    has_srsi = False
    pdi = NAN
    mdi = NAN
    adx_out = NAN
    if b > 1:
        ph = st[X_PH]
        pl = st[X_PL]
        pc = st[X_PC]
        # TrueRange (also Adx's TR), gains/losses of both RSIs, Adx directional movement, Obv
        tr = max(h - lo, abs(h - pc), abs(lo - pc))  # numba's max keeps the first of equals, as Python's
        delta = c - pc
        gain = delta if delta > 0 else 0.0
        loss = -delta if delta < 0 else 0.0

        if ip[P_RSI_ON] != 0:
            r_n = ip[P_R_N]
            if b > r_n + 1:
                st[X_R_G] = (st[X_R_G] * (r_n - 1) + gain) / r_n
                st[X_R_L] = (st[X_R_L] * (r_n - 1) + loss) / r_n
            else:
                st[X_R_G] += gain
                st[X_R_L] += loss
                if b == r_n + 1:
                    st[X_R_G] = st[X_R_G] / r_n
                    st[X_R_L] = st[X_R_L] / r_n
            if b > r_n:
                r_g = st[X_R_G]
                r_l = st[X_R_L]
                if r_l == 0.0:
                    rsi = 100.0 if r_g > 0.0 else 50.0
                else:
                    rsi = 100.0 - 100.0 / (1.0 + r_g / r_l)

        if b > q_first:
            st[X_Q_G] = (st[X_Q_G] * (q_n - 1) + gain) / q_n
            st[X_Q_L] = (st[X_Q_L] * (q_n - 1) + loss) / q_n
        else:
            st[X_Q_G] += gain
            st[X_Q_L] += loss
            if b == q_first:
                st[X_Q_G] = st[X_Q_G] / q_n
                st[X_Q_L] = st[X_Q_L] / q_n
        if b >= q_first:
            has_srsi = True
            q_g = st[X_Q_G]
            q_l = st[X_Q_L]
            if q_l == 0.0:
                srsi = 100.0 if q_g > 0.0 else 50.0
            else:
                srsi = 100.0 - 100.0 / (1.0 + q_g / q_l)

        d_n = ip[P_D_N]
        d_first = d_n + 1
        d_afirst = d_first + d_n - 1
        up = h - ph
        down = pl - lo
        pdm = up if up > down and up > 0.0 else 0.0
        mdm = down if down > up and down > 0.0 else 0.0
        if b > d_first:
            st[X_D_TR] = st[X_D_TR] - st[X_D_TR] / d_n + tr
            st[X_D_P] = st[X_D_P] - st[X_D_P] / d_n + pdm
            st[X_D_M] = st[X_D_M] - st[X_D_M] / d_n + mdm
        else:
            st[X_D_TR] += tr
            st[X_D_P] += pdm
            st[X_D_M] += mdm
        if b >= d_first:
            d_tr = st[X_D_TR]
            pdi = 100.0 * st[X_D_P] / d_tr if d_tr != 0.0 else 0.0
            mdi = 100.0 * st[X_D_M] / d_tr if d_tr != 0.0 else 0.0
            total = pdi + mdi
            dx = 100.0 * abs(pdi - mdi) / total if total != 0.0 else 0.0
            if b > d_afirst:
                st[X_ADX] = (st[X_ADX] * (d_n - 1) + dx) / d_n
            else:
                st[X_ADX] += dx
                if b == d_afirst:
                    st[X_ADX] = st[X_ADX] / d_n
            if b >= d_afirst:
                adx_out = st[X_ADX]

        if c > pc:
            st[X_OBV] += v
        elif c < pc:
            st[X_OBV] -= v
    else:
        tr = h - lo
        st[X_B_ANCHOR] = c
    st[X_PH] = h
    st[X_PL] = lo
    st[X_PC] = c

    # StochRsi: extremes of the RSI window (the running extreme is recomputed only when it leaves the window)
    q_k = NAN
    q_d = NAN
    if has_srsi:
        off = ip[P_OFF_QQ]
        if b > q_full:
            old = _oldest(st, off, X_POS_QQ)
            _push(st, off, q_w, X_POS_QQ, srsi)
            if srsi >= st[X_Q_HH]:
                st[X_Q_HH] = srsi
            elif old == st[X_Q_HH]:
                st[X_Q_HH] = _ring_max(st, off, q_w, X_POS_QQ)
            if srsi <= st[X_Q_LL]:
                st[X_Q_LL] = srsi
            elif old == st[X_Q_LL]:
                st[X_Q_LL] = _ring_min(st, off, q_w, X_POS_QQ)
        else:
            _push(st, off, q_w, X_POS_QQ, srsi)
            st[X_Q_HH] = max(st[X_Q_HH], srsi)
            st[X_Q_LL] = min(st[X_Q_LL], srsi)
        if b >= q_full:
            rng = st[X_Q_HH] - st[X_Q_LL]
            x = 50.0 if rng == 0.0 else 100.0 * (srsi - st[X_Q_LL]) / rng
            off = ip[P_OFF_QK]
            if b >= q_full + q_kn:
                st[X_Q_KS] += x - _oldest(st, off, X_POS_QK)
            else:
                st[X_Q_KS] += x
            _push(st, off, q_kn, X_POS_QK, x)
            if b >= q_kfirst:
                q_k = st[X_Q_KS] / q_kn
                off = ip[P_OFF_QD]
                if b >= q_kfirst + q_dn:
                    st[X_Q_DS] += q_k - _oldest(st, off, X_POS_QD)
                else:
                    st[X_Q_DS] += q_k
                _push(st, off, q_dn, X_POS_QD, q_k)
                if b >= q_dfirst:
                    q_d = st[X_Q_DS] / q_dn

    # Stochastic, WilliamsR and Kdj windows of highs and lows
    s_n = ip[P_S_N]
    s_kn = ip[P_S_KN]
    s_dn = ip[P_S_DN]
    s_kfirst = s_n + s_kn - 1
    s_dfirst = s_kfirst + s_dn - 1
    _hl_window(st, b, s_n, ip[P_OFF_SH], ip[P_OFF_SL], X_POS_S, X_S_HH, X_S_LL, h, lo)
    s_k = NAN
    s_d = NAN
    if b >= s_n:
        rng = st[X_S_HH] - st[X_S_LL]
        x = 50.0 if rng == 0.0 else 100.0 * (c - st[X_S_LL]) / rng
        off = ip[P_OFF_SK]
        if b >= s_n + s_kn:
            st[X_S_KS] += x - _oldest(st, off, X_POS_SK)
        else:
            st[X_S_KS] += x
        _push(st, off, s_kn, X_POS_SK, x)
        if b >= s_kfirst:
            s_k = st[X_S_KS] / s_kn
            off = ip[P_OFF_SD]
            if b >= s_kfirst + s_dn:
                st[X_S_DS] += s_k - _oldest(st, off, X_POS_SD)
            else:
                st[X_S_DS] += s_k
            _push(st, off, s_dn, X_POS_SD, s_k)
            if b >= s_dfirst:
                s_d = st[X_S_DS] / s_dn

    w_n = ip[P_W_N]
    _hl_window(st, b, w_n, ip[P_OFF_WH], ip[P_OFF_WL], X_POS_W, X_W_HH, X_W_LL, h, lo)
    wr = NAN
    if b >= w_n:
        w_hh = st[X_W_HH]
        w_ll = st[X_W_LL]
        wr = -50.0 if w_hh == w_ll else -100.0 * (w_hh - c) / (w_hh - w_ll)

    j_n = ip[P_J_N]
    _hl_window(st, b, j_n, ip[P_OFF_JH], ip[P_OFF_JL], X_POS_J, X_J_HH, X_J_LL, h, lo)
    kdj_k = NAN
    kdj_d = NAN
    kdj_j = NAN
    if b >= j_n:
        rng = st[X_J_HH] - st[X_J_LL]
        x = 50.0 if rng == 0.0 else 100.0 * (c - st[X_J_LL]) / rng
        j_k = fp[F_J_KA1] * st[X_J_K] + fp[F_J_KA] * x
        j_d = fp[F_J_DA1] * st[X_J_D] + fp[F_J_DA] * j_k
        st[X_J_K] = j_k
        st[X_J_D] = j_d
        kdj_k = j_k
        kdj_d = j_d
        kdj_j = 3.0 * j_k - 2.0 * j_d

    # AwesomeOscillator
    a_fn = ip[P_A_FN]
    a_sn = ip[P_A_SN]
    a_cn = ip[P_A_CN]
    a_first = max(a_fn, a_sn)
    x = (h + lo) / 2.0
    off = ip[P_OFF_AF]
    if b > a_fn:
        st[X_A_FS] += x - _oldest(st, off, X_POS_AF)
    else:
        st[X_A_FS] += x
    _push(st, off, a_fn, X_POS_AF, x)
    off = ip[P_OFF_AS]
    if b > a_sn:
        st[X_A_SS] += x - _oldest(st, off, X_POS_AS)
    else:
        st[X_A_SS] += x
    _push(st, off, a_sn, X_POS_AS, x)
    ao = NAN
    ac = NAN
    if b >= a_first:
        ao = st[X_A_FS] / a_fn - st[X_A_SS] / a_sn
        off = ip[P_OFF_AC]
        if b >= a_first + a_cn:
            st[X_A_CS] += ao - _oldest(st, off, X_POS_AC)
        else:
            st[X_A_CS] += ao
        _push(st, off, a_cn, X_POS_AC, ao)
        if b >= a_first + a_cn - 1:
            ac = ao - st[X_A_CS] / a_cn

    # Ema ×4: SMA seed, then value += α·(x − value)
    e1_n = ip[P_E1_N]
    e2_n = ip[P_E2_N]
    e3_n = ip[P_E3_N]
    e4_n = ip[P_E4_N]
    _ema_seeded(st, X_E1, b, e1_n, fp[F_E1_A], c)
    _ema_seeded(st, X_E2, b, e2_n, fp[F_E2_A], c)
    _ema_seeded(st, X_E3, b, e3_n, fp[F_E3_A], c)
    _ema_seeded(st, X_E4, b, e4_n, fp[F_E4_A], c)

    # Macd
    m_fn = ip[P_M_FN]
    m_sn = ip[P_M_SN]
    m_gn = ip[P_M_GN]
    m_first = max(m_fn, m_sn)
    m_gfirst = m_first + m_gn - 1
    _ema_seeded(st, X_M_F, b, m_fn, fp[F_M_FA], c)
    _ema_seeded(st, X_M_S, b, m_sn, fp[F_M_SA], c)
    macd = NAN
    macd_sig = NAN
    macd_hist = NAN
    if b >= m_first:
        macd = st[X_M_F] - st[X_M_S]
        if b > m_gfirst:
            st[X_M_G] += fp[F_M_GA] * (macd - st[X_M_G])
        else:
            st[X_M_G] += macd
            if b == m_gfirst:
                st[X_M_G] = st[X_M_G] / m_gn
        if b >= m_gfirst:
            macd_sig = st[X_M_G]
            macd_hist = macd - st[X_M_G]

    # Bollinger and the Keltner squeeze
    k_n = ip[P_K_N]
    b_n = ip[P_B_N]
    off = ip[P_OFF_K]
    if b > k_n:
        st[X_K_S] += tr - _oldest(st, off, X_POS_K)
    else:
        st[X_K_S] += tr
    _push(st, off, k_n, X_POS_K, tr)
    b_anchor = st[X_B_ANCHOR]
    x = c - b_anchor
    off = ip[P_OFF_B]
    if b > b_n:
        old = _oldest(st, off, X_POS_B)
        _push(st, off, b_n, X_POS_B, x)
        st[X_B_S] += x
        st[X_B_SS] += x * x
        st[X_B_S] -= old
        st[X_B_SS] -= old * old
    else:
        _push(st, off, b_n, X_POS_B, x)
        st[X_B_S] += x
        st[X_B_SS] += x * x
    mid = NAN
    upper = NAN
    lower = NAN
    pct_b = NAN
    bandwidth = NAN
    kc_u = NAN
    kc_l = NAN
    squeeze = NAN
    if b >= b_n:
        b_s = st[X_B_S]
        mid = b_anchor + b_s / b_n
        mean = b_s / b_n
        var = st[X_B_SS] / b_n - mean * mean
        width = fp[F_BB_K] * math.sqrt(var if var > 0.0 else 0.0)
        upper = mid + width
        lower = mid - width
        band = upper - lower
        pct_b = (c - lower) / band if band != 0.0 else 0.5
        bandwidth = 100.0 * band / mid
        if b >= k_n:
            kc_w = fp[F_KC_M] * (st[X_K_S] / k_n)
            kc_u = mid + kc_w
            kc_l = mid - kc_w
            squeeze = 1.0 if lower > kc_l and upper < kc_u else 0.0

    # Obv slope and its z-score
    o_w = ip[P_O_W]
    o_hn = ip[P_O_HN]
    obv = st[X_OBV]
    off = ip[P_OFF_O]
    _push(st, off, o_w, X_POS_O, obv)
    slope = NAN
    z = NAN
    if b >= o_w:
        slope = (obv - _oldest(st, off, X_POS_O)) / o_w
        off = ip[P_OFF_OH]
        if b - o_w >= o_hn:
            old = _oldest(st, off, X_POS_OH)
            _push(st, off, o_hn, X_POS_OH, slope)
            st[X_O_S] += slope
            st[X_O_SS] += slope * slope
            st[X_O_S] -= old
            st[X_O_SS] -= old * old
        else:
            _push(st, off, o_hn, X_POS_OH, slope)
            st[X_O_S] += slope
            st[X_O_SS] += slope * slope
        count = min(b - o_w + 1, o_hn)
        if count >= ip[P_O_MIN]:
            mean = st[X_O_S] / count
            mm = mean * mean
            var = st[X_O_SS] / count - mm
            if var <= 1e-12 * (mm if mm > 1.0 else 1.0):
                z = 0.0
            else:
                o_cap = fp[F_OBV_CAP]
                z = (slope - mean) / math.sqrt(var)
                z = z if z < o_cap else o_cap
                z = z if z > -o_cap else -o_cap

    # Atr
    t_n = ip[P_T_N]
    if b > t_n:
        st[X_ATR] = (st[X_ATR] * (t_n - 1) + tr) / t_n
    else:
        st[X_ATR] += tr
        if b == t_n:
            st[X_ATR] = st[X_ATR] / t_n
    atr_out = NAN
    atr_pct = NAN
    if b >= t_n:
        atr_out = st[X_ATR]
        if c != 0:
            atr_pct = 100.0 * atr_out / c

    row[S_OPEN] = o
    row[S_HIGH] = h
    row[S_LOW] = lo
    row[S_CLOSE] = c
    row[S_VOLUME] = v
    row[S_RSI] = rsi
    row[S_STOCH_RSI_RSI] = srsi
    row[S_STOCH_RSI_K] = q_k
    row[S_STOCH_RSI_D] = q_d
    row[S_STOCH_K] = s_k
    row[S_STOCH_D] = s_d
    row[S_WILLIAMS_R] = wr
    row[S_KDJ_K] = kdj_k
    row[S_KDJ_D] = kdj_d
    row[S_KDJ_J] = kdj_j
    row[S_AO] = ao
    row[S_AC] = ac
    row[S_EMA9] = st[X_E1] if b >= e1_n else NAN
    row[S_EMA50] = st[X_E2] if b >= e2_n else NAN
    row[S_EMA100] = st[X_E3] if b >= e3_n else NAN
    row[S_EMA200] = st[X_E4] if b >= e4_n else NAN
    row[S_MACD] = macd
    row[S_MACD_SIGNAL] = macd_sig
    row[S_MACD_HIST] = macd_hist
    row[S_BB_MID] = mid
    row[S_BB_UPPER] = upper
    row[S_BB_LOWER] = lower
    row[S_BB_BANDWIDTH] = bandwidth
    row[S_BB_PERCENT_B] = pct_b
    row[S_KC_UPPER] = kc_u
    row[S_KC_LOWER] = kc_l
    row[S_SQUEEZE_ON] = squeeze
    row[S_OBV] = obv
    row[S_OBV_SLOPE] = slope
    row[S_OBV_Z] = z
    row[S_ATR] = atr_out
    row[S_ATR_PCT] = atr_pct
    row[S_ADX] = adx_out
    row[S_PLUS_DI] = pdi
    row[S_MINUS_DI] = mdi
    row[S_BARS] = b


def snapshot_from_row(candle: Candle, row: npt.NDArray[np.float64]) -> IndicatorSnapshot:
    """The ``IndicatorSnapshot`` of a row written by ``indicator_step`` for ``candle``: NaN → None, the squeeze
    column → bool, bars → int. Built positionally (NamedTuple fields are in layout order)."""
    vals = row.tolist()
    out: list[object] = [None if x != x else x for x in vals]  # noqa: PLR0124  # x != x: NaN, without a call
    sq = vals[S_SQUEEZE_ON]
    out[S_SQUEEZE_ON] = None if sq != sq else sq == 1.0  # noqa: PLR0124
    out[S_BARS] = int(vals[S_BARS])
    out[S_VOLUME] = candle
    return _new_tuple(IndicatorSnapshot, out[S_VOLUME:])


def row_from_snapshot(
    snap: IndicatorSnapshot | None, out: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.float64]:
    """The row ``indicator_step`` writes for ``snap`` (None → NaN, squeeze → 1.0/0.0; no snapshot: all NaN), into
    ``out`` when given: to feed the other kernels from hand-made or reference snapshots."""
    row = np.empty(N_SNAP, dtype=np.float64) if out is None else out
    if snap is None:
        row[:] = np.nan
        return row
    c = snap.candle
    row[S_OPEN : S_VOLUME + 1] = (c.open, c.high, c.low, c.close, c.volume)
    row[S_VOLUME + 1 :] = [math.nan if v is None else float(v) for v in snap[1:]]
    return row
