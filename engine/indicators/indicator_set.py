"""All indicators of one symbol and timeframe, updated together once per closed candle in O(1).

The per-indicator classes (oscillators.py, trend.py, volatility.py, composed in reference.py) are the readable
definition. ``IndicatorSet`` runs the same arithmetic, operation for operation, fused into one generator whose local
variables hold all the running state: one candle costs one ``send`` instead of ~40 method calls, and the snapshot is
built positionally. tests/indicators/test_fused.py feeds the full real series through both and requires every
snapshot field to be equal. Change an indicator in both places together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from typing import cast

from engine.indicators.params import IndicatorParams
from engine.indicators.snapshot import IndicatorSnapshot
from engine.models import Candle

# An EMA200 seeded on 500 candles is still off by up to 6.6 bp of price, on 1,000 by 0.05 bp (measured on the
# shared data, see docs/INDICATORS.md): warm up on 1,000 candles so the slowest indicator has converged.
RECOMMENDED_WARMUP_CANDLES = 1000


class IndicatorSet:
    """Feeds each closed candle to every indicator; warm-up is just feeding history through ``update``."""

    __slots__ = ("_step", "bars", "params")

    def __init__(self, params: IndicatorParams | None = None) -> None:
        self.params = params or IndicatorParams()
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a gap in the candles): warm-up starts over."""
        gen = _fused(self.params)
        next(gen)
        self._step = cast(Callable[[Candle], IndicatorSnapshot], gen.send)
        self.bars = 0

    def update(self, candle: Candle) -> IndicatorSnapshot:
        """Apply one closed candle and return every indicator value after it."""
        self.bars += 1
        return self._step(candle)


def _fused(p: IndicatorParams) -> Generator[IndicatorSnapshot | None, Candle, None]:
    """Receives candles, yields snapshots. ``b`` counts candles since the start (1 on the first); every warm-up
    test below is written against it instead of per-indicator counters. Comments name the reference class."""
    sqrt = math.sqrt
    new_snapshot = tuple.__new__
    snapshot_cls = IndicatorSnapshot
    inf = math.inf

    # WilderRsi (standalone, optional): Wilder means of gains and losses; defined from bar n + 1
    rsi_on = p.rsi_enabled
    r_n = p.rsi_period
    r_n1 = r_n - 1
    r_g = r_l = 0.0
    # StochRsi: its own WilderRsi, SlidingExtremes over the RSI values, Sma %K, Sma %D
    q_n = p.stoch_rsi_rsi_period
    q_n1 = q_n - 1
    q_g = q_l = 0.0
    q_w = p.stoch_rsi_stoch_period
    q_first = q_n + 1  # first bar with an RSI
    q_full = q_first + q_w - 1  # first bar with a full window of RSI values
    q_q: deque[float] = deque(maxlen=q_w)  # the window's highs and lows are the same RSI values
    q_hh, q_ll = -inf, inf
    q_kn = p.stoch_rsi_k_smooth
    q_kq: deque[float] = deque(maxlen=q_kn)
    q_ks = 0.0
    q_kfirst = q_full + q_kn - 1
    q_dn = p.stoch_rsi_d_smooth
    q_dq: deque[float] = deque(maxlen=q_dn)
    q_ds = 0.0
    q_dfirst = q_kfirst + q_dn - 1
    # Stochastic: SlidingExtremes of highs/lows, Sma %K, Sma %D
    s_n = p.stoch_k_period
    s_hq: deque[float] = deque(maxlen=s_n)
    s_lq: deque[float] = deque(maxlen=s_n)
    s_hh, s_ll = -inf, inf
    s_kn = p.stoch_k_smooth
    s_kq: deque[float] = deque(maxlen=s_kn)
    s_ks = 0.0
    s_kfirst = s_n + s_kn - 1
    s_dn = p.stoch_d_period
    s_dq: deque[float] = deque(maxlen=s_dn)
    s_ds = 0.0
    s_dfirst = s_kfirst + s_dn - 1
    # WilliamsR
    w_n = p.williams_period
    w_hq: deque[float] = deque(maxlen=w_n)
    w_lq: deque[float] = deque(maxlen=w_n)
    w_hh, w_ll = -inf, inf
    # Kdj
    j_n = p.kdj_period
    j_hq: deque[float] = deque(maxlen=j_n)
    j_lq: deque[float] = deque(maxlen=j_n)
    j_hh, j_ll = -inf, inf
    j_ka = 1.0 / p.kdj_k_smooth
    j_ka1 = 1.0 - j_ka
    j_da = 1.0 / p.kdj_d_smooth
    j_da1 = 1.0 - j_da
    j_k = j_d = p.kdj_initial
    # AwesomeOscillator: Sma fast and slow of the median price, Sma of AO for AC
    a_fn = p.ao_fast
    a_fq: deque[float] = deque(maxlen=a_fn)
    a_fs = 0.0
    a_sn = p.ao_slow
    a_sq: deque[float] = deque(maxlen=a_sn)
    a_ss = 0.0
    a_first = max(a_fn, a_sn)
    a_cn = p.ao_ac_period
    a_cq: deque[float] = deque(maxlen=a_cn)
    a_cs = 0.0
    a_cfirst = a_first + a_cn - 1
    # Ema ×4 (values e*, seed sums z*)
    e1_n, e2_n, e3_n, e4_n = p.ema_short, p.ema_long, p.ema_mid_trend, p.ema_trend
    e1_a, e2_a, e3_a, e4_a = 2.0 / (e1_n + 1), 2.0 / (e2_n + 1), 2.0 / (e3_n + 1), 2.0 / (e4_n + 1)
    e1 = e2 = e3 = e4 = 0.0
    # Macd: Ema fast, Ema slow, Ema signal of the MACD line
    m_fn, m_sn, m_gn = p.macd_fast, p.macd_slow, p.macd_signal
    m_fa, m_sa, m_ga = 2.0 / (m_fn + 1), 2.0 / (m_sn + 1), 2.0 / (m_gn + 1)
    m_f = m_s = m_g = 0.0
    m_first = max(m_fn, m_sn)
    m_gfirst = m_first + m_gn - 1
    # Bollinger: SlidingSum of closes offset by the first close, Sma of TR for Keltner
    b_n = p.bb_period
    b_q: deque[float] = deque(maxlen=b_n)
    b_anchor = b_s = b_ss = 0.0
    b_k = p.bb_std_dev
    k_n = p.keltner_period
    k_q: deque[float] = deque(maxlen=k_n)
    k_s = 0.0
    k_m = p.keltner_multiplier
    # Obv: running OBV, the last ``window`` values, running sums of up to ``history`` slopes
    o_w = p.obv_slope_window
    o_q: deque[float] = deque(maxlen=o_w)
    o_hn = p.obv_slope_history
    o_hq: deque[float] = deque(maxlen=o_hn)
    o_s = o_ss = 0.0
    o_min = p.obv_min_slope_samples
    o_cap = p.obv_z_cap
    obv = 0.0
    # Atr: WilderMean of TR
    t_n = p.atr_period
    t_n1 = t_n - 1
    atr = 0.0
    # Adx: WilderSum of TR, +DM, -DM from the second bar; WilderMean of DX
    d_n = p.adx_period
    d_n1 = d_n - 1
    d_tr = d_p = d_m = 0.0
    d_first = d_n + 1
    d_afirst = d_first + d_n - 1
    adx = 0.0

    # Outputs of the current bar (None until defined)
    rsi: float | None
    srsi: float | None
    q_k: float | None
    q_d: float | None
    s_k: float | None
    s_d: float | None
    wr: float | None
    kdj_k: float | None
    kdj_d: float | None
    kdj_j: float | None
    ao: float | None
    ac: float | None
    macd: float | None
    macd_sig: float | None
    macd_hist: float | None
    mid: float | None
    upper: float | None
    lower: float | None
    bandwidth: float | None
    pct_b: float | None
    kc_u: float | None
    kc_l: float | None
    squeeze: bool | None
    slope: float | None
    z: float | None
    atr_out: float | None
    atr_pct: float | None
    adx_out: float | None
    pdi: float | None
    mdi: float | None

    b = 0
    ph = pl = pc = 0.0  # previous candle's high, low, close (from bar 2)
    candle = yield None
    while True:
        h, lo, c = candle.high, candle.low, candle.close
        b += 1

        if b > 1:
            # TrueRange (also Adx's TR), gains/losses of both RSIs, Adx directional movement, Obv
            tr = max(h - lo, abs(h - pc), abs(lo - pc))
            delta = c - pc
            gain = delta if delta > 0 else 0.0
            loss = -delta if delta < 0 else 0.0

            rsi = None
            if rsi_on:
                if b > r_n + 1:
                    r_g = (r_g * r_n1 + gain) / r_n
                    r_l = (r_l * r_n1 + loss) / r_n
                else:
                    r_g += gain
                    r_l += loss
                    if b == r_n + 1:
                        r_g = r_g / r_n
                        r_l = r_l / r_n
                if b > r_n:
                    if r_l == 0.0:
                        rsi = 100.0 if r_g > 0.0 else 50.0
                    else:
                        rsi = 100.0 - 100.0 / (1.0 + r_g / r_l)

            if b > q_first:
                q_g = (q_g * q_n1 + gain) / q_n
                q_l = (q_l * q_n1 + loss) / q_n
            else:
                q_g += gain
                q_l += loss
                if b == q_first:
                    q_g = q_g / q_n
                    q_l = q_l / q_n
            if b >= q_first:
                if q_l == 0.0:
                    srsi = 100.0 if q_g > 0.0 else 50.0
                else:
                    srsi = 100.0 - 100.0 / (1.0 + q_g / q_l)
            else:
                srsi = None

            up, down = h - ph, pl - lo
            pdm = up if up > down and up > 0.0 else 0.0
            mdm = down if down > up and down > 0.0 else 0.0
            if b > d_first:
                d_tr = d_tr - d_tr / d_n + tr
                d_p = d_p - d_p / d_n + pdm
                d_m = d_m - d_m / d_n + mdm
            else:
                d_tr += tr
                d_p += pdm
                d_m += mdm
            if b >= d_first:
                pdi = 100.0 * d_p / d_tr if d_tr else 0.0
                mdi = 100.0 * d_m / d_tr if d_tr else 0.0
                total = pdi + mdi
                dx = 100.0 * abs(pdi - mdi) / total if total else 0.0
                if b > d_afirst:
                    adx = (adx * d_n1 + dx) / d_n
                else:
                    adx += dx
                    if b == d_afirst:
                        adx = adx / d_n
                adx_out = adx if b >= d_afirst else None
            else:
                pdi = mdi = adx_out = None

            if c > pc:
                obv += candle.volume
            elif c < pc:
                obv -= candle.volume
        else:
            tr = h - lo
            rsi = srsi = pdi = mdi = adx_out = None
            b_anchor = c
        ph, pl, pc = h, lo, c

        # StochRsi: extremes of the RSI window (the running extreme is recomputed only when it leaves the window)
        q_k = q_d = None
        if srsi is not None:
            if b > q_full:
                old = q_q[0]
                q_q.append(srsi)
                if srsi >= q_hh:
                    q_hh = srsi
                elif old == q_hh:
                    q_hh = max(q_q)
                if srsi <= q_ll:
                    q_ll = srsi
                elif old == q_ll:
                    q_ll = min(q_q)
            else:
                q_q.append(srsi)
                q_hh = max(q_hh, srsi)
                q_ll = min(q_ll, srsi)
            if b >= q_full:
                rng = q_hh - q_ll
                x = 50.0 if rng == 0.0 else 100.0 * (srsi - q_ll) / rng
                if b >= q_full + q_kn:
                    q_ks += x - q_kq[0]
                else:
                    q_ks += x
                q_kq.append(x)
                if b >= q_kfirst:
                    q_k = q_ks / q_kn
                    if b >= q_kfirst + q_dn:
                        q_ds += q_k - q_dq[0]
                    else:
                        q_ds += q_k
                    q_dq.append(q_k)
                    if b >= q_dfirst:
                        q_d = q_ds / q_dn

        # Stochastic, WilliamsR and Kdj windows of highs and lows
        if b > s_n:
            oh, ol = s_hq[0], s_lq[0]
            s_hq.append(h)
            s_lq.append(lo)
            if h >= s_hh:
                s_hh = h
            elif oh == s_hh:
                s_hh = max(s_hq)
            if lo <= s_ll:
                s_ll = lo
            elif ol == s_ll:
                s_ll = min(s_lq)
        else:
            s_hq.append(h)
            s_lq.append(lo)
            s_hh = max(s_hh, h)
            s_ll = min(s_ll, lo)
        s_k = s_d = None
        if b >= s_n:
            rng = s_hh - s_ll
            x = 50.0 if rng == 0.0 else 100.0 * (c - s_ll) / rng
            if b >= s_n + s_kn:
                s_ks += x - s_kq[0]
            else:
                s_ks += x
            s_kq.append(x)
            if b >= s_kfirst:
                s_k = s_ks / s_kn
                if b >= s_kfirst + s_dn:
                    s_ds += s_k - s_dq[0]
                else:
                    s_ds += s_k
                s_dq.append(s_k)
                if b >= s_dfirst:
                    s_d = s_ds / s_dn

        if b > w_n:
            oh, ol = w_hq[0], w_lq[0]
            w_hq.append(h)
            w_lq.append(lo)
            if h >= w_hh:
                w_hh = h
            elif oh == w_hh:
                w_hh = max(w_hq)
            if lo <= w_ll:
                w_ll = lo
            elif ol == w_ll:
                w_ll = min(w_lq)
        else:
            w_hq.append(h)
            w_lq.append(lo)
            w_hh = max(w_hh, h)
            w_ll = min(w_ll, lo)
        if b >= w_n:
            wr = -50.0 if w_hh == w_ll else -100.0 * (w_hh - c) / (w_hh - w_ll)
        else:
            wr = None

        if b > j_n:
            oh, ol = j_hq[0], j_lq[0]
            j_hq.append(h)
            j_lq.append(lo)
            if h >= j_hh:
                j_hh = h
            elif oh == j_hh:
                j_hh = max(j_hq)
            if lo <= j_ll:
                j_ll = lo
            elif ol == j_ll:
                j_ll = min(j_lq)
        else:
            j_hq.append(h)
            j_lq.append(lo)
            j_hh = max(j_hh, h)
            j_ll = min(j_ll, lo)
        if b >= j_n:
            rng = j_hh - j_ll
            x = 50.0 if rng == 0.0 else 100.0 * (c - j_ll) / rng
            j_k = j_ka1 * j_k + j_ka * x
            j_d = j_da1 * j_d + j_da * j_k
            kdj_k = j_k
            kdj_d = j_d
            kdj_j = 3.0 * j_k - 2.0 * j_d
        else:
            kdj_k = kdj_d = kdj_j = None

        # AwesomeOscillator
        x = (h + lo) / 2.0
        if b > a_fn:
            a_fs += x - a_fq[0]
        else:
            a_fs += x
        a_fq.append(x)
        if b > a_sn:
            a_ss += x - a_sq[0]
        else:
            a_ss += x
        a_sq.append(x)
        ao = ac = None
        if b >= a_first:
            ao = a_fs / a_fn - a_ss / a_sn
            if b >= a_first + a_cn:
                a_cs += ao - a_cq[0]
            else:
                a_cs += ao
            a_cq.append(ao)
            if b >= a_cfirst:
                ac = ao - a_cs / a_cn

        # Ema ×4: SMA seed, then value += α·(x − value)
        if b > e1_n:
            e1 += e1_a * (c - e1)
        else:
            e1 += c
            if b == e1_n:
                e1 = e1 / e1_n
        if b > e2_n:
            e2 += e2_a * (c - e2)
        else:
            e2 += c
            if b == e2_n:
                e2 = e2 / e2_n
        if b > e3_n:
            e3 += e3_a * (c - e3)
        else:
            e3 += c
            if b == e3_n:
                e3 = e3 / e3_n
        if b > e4_n:
            e4 += e4_a * (c - e4)
        else:
            e4 += c
            if b == e4_n:
                e4 = e4 / e4_n

        # Macd
        if b > m_fn:
            m_f += m_fa * (c - m_f)
        else:
            m_f += c
            if b == m_fn:
                m_f = m_f / m_fn
        if b > m_sn:
            m_s += m_sa * (c - m_s)
        else:
            m_s += c
            if b == m_sn:
                m_s = m_s / m_sn
        macd = macd_sig = macd_hist = None
        if b >= m_first:
            macd = m_f - m_s
            if b > m_gfirst:
                m_g += m_ga * (macd - m_g)
            else:
                m_g += macd
                if b == m_gfirst:
                    m_g = m_g / m_gn
            if b >= m_gfirst:
                macd_sig = m_g
                macd_hist = macd - m_g

        # Bollinger and the Keltner squeeze
        if b > k_n:
            k_s += tr - k_q[0]
        else:
            k_s += tr
        k_q.append(tr)
        x = c - b_anchor
        if b > b_n:
            old = b_q[0]
            b_q.append(x)
            b_s += x
            b_ss += x * x
            b_s -= old
            b_ss -= old * old
        else:
            b_q.append(x)
            b_s += x
            b_ss += x * x
        if b >= b_n:
            mid = b_anchor + b_s / b_n
            mean = b_s / b_n
            var = b_ss / b_n - mean * mean
            width = b_k * sqrt(var if var > 0.0 else 0.0)
            upper = mid + width
            lower = mid - width
            band = upper - lower
            pct_b = (c - lower) / band if band else 0.5
            bandwidth = 100.0 * band / mid
            if b >= k_n:
                kc_w = k_m * (k_s / k_n)
                kc_u = mid + kc_w
                kc_l = mid - kc_w
                squeeze = lower > kc_l and upper < kc_u
            else:
                kc_u = kc_l = squeeze = None
        else:
            mid = upper = lower = pct_b = bandwidth = kc_u = kc_l = squeeze = None

        # Obv slope and its z-score
        o_q.append(obv)
        slope = z = None
        if b >= o_w:
            slope = (obv - o_q[0]) / o_w
            if b - o_w >= o_hn:
                old = o_hq[0]
                o_hq.append(slope)
                o_s += slope
                o_ss += slope * slope
                o_s -= old
                o_ss -= old * old
            else:
                o_hq.append(slope)
                o_s += slope
                o_ss += slope * slope
            count = len(o_hq)
            if count >= o_min:
                mean = o_s / count
                mm = mean * mean
                var = o_ss / count - mm
                if var <= 1e-12 * (mm if mm > 1.0 else 1.0):
                    z = 0.0
                else:
                    z = (slope - mean) / sqrt(var)
                    z = z if z < o_cap else o_cap
                    z = z if z > -o_cap else -o_cap

        # Atr
        if b > t_n:
            atr = (atr * t_n1 + tr) / t_n
        else:
            atr += tr
            if b == t_n:
                atr = atr / t_n
        if b >= t_n:
            atr_out = atr
            atr_pct = None if c == 0 else 100.0 * atr / c
        else:
            atr_out = atr_pct = None

        candle = yield new_snapshot(
            snapshot_cls,
            (
                candle,
                rsi,
                srsi,
                q_k,
                q_d,
                s_k,
                s_d,
                wr,
                kdj_k,
                kdj_d,
                kdj_j,
                ao,
                ac,
                e1 if b >= e1_n else None,
                e2 if b >= e2_n else None,
                e3 if b >= e3_n else None,
                e4 if b >= e4_n else None,
                macd,
                macd_sig,
                macd_hist,
                mid,
                upper,
                lower,
                bandwidth,
                pct_b,
                kc_u,
                kc_l,
                squeeze,
                obv,
                slope,
                z,
                atr_out,
                atr_pct,
                adx_out,
                pdi,
                mdi,
                b,
            ),
        )
