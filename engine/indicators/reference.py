"""The readable reference: one object per indicator, composed exactly as the spec lists them.

``IndicatorSet`` runs the same arithmetic compiled (kernel.py) for speed; the tests feed the full
real series through both and require every snapshot field to agree. Change an indicator here and there together."""

from __future__ import annotations

from engine.indicators.oscillators import AwesomeOscillator, Kdj, Stochastic, StochRsi, WilderRsi, WilliamsR
from engine.indicators.params import IndicatorParams
from engine.indicators.primitives import Ema
from engine.indicators.snapshot import IndicatorSnapshot
from engine.indicators.trend import Adx, Macd
from engine.indicators.volatility import Atr, Bollinger, Obv, TrueRange
from engine.models import Candle


class ReferenceIndicatorSet:
    """Feeds each closed candle to every per-indicator object; the specification ``IndicatorSet`` must match."""

    __slots__ = (
        "_adx",
        "_ao",
        "_atr",
        "_bb",
        "_ema9",
        "_ema50",
        "_ema100",
        "_ema200",
        "_kdj",
        "_macd",
        "_obv",
        "_rsi",
        "_stoch",
        "_stoch_rsi",
        "_tr",
        "_wr",
        "bars",
        "params",
    )

    def __init__(self, params: IndicatorParams | None = None) -> None:
        self.params = params or IndicatorParams()
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a gap in the candles): warm-up starts over."""
        p = self.params
        self._rsi = WilderRsi(p.rsi_period) if p.rsi_enabled else None
        self._stoch_rsi = StochRsi(
            p.stoch_rsi_rsi_period, p.stoch_rsi_stoch_period, p.stoch_rsi_k_smooth, p.stoch_rsi_d_smooth
        )
        self._stoch = Stochastic(p.stoch_k_period, p.stoch_k_smooth, p.stoch_d_period)
        self._wr = WilliamsR(p.williams_period)
        self._kdj = Kdj(p.kdj_period, p.kdj_k_smooth, p.kdj_d_smooth, p.kdj_initial)
        self._ao = AwesomeOscillator(p.ao_fast, p.ao_slow, p.ao_ac_period)
        self._ema9 = Ema(p.ema_short)
        self._ema50 = Ema(p.ema_long)
        self._ema100 = Ema(p.ema_mid_trend)
        self._ema200 = Ema(p.ema_trend)
        self._macd = Macd(p.macd_fast, p.macd_slow, p.macd_signal)
        self._tr = TrueRange()
        self._bb = Bollinger(p.bb_period, p.bb_std_dev, p.keltner_period, p.keltner_multiplier)
        self._obv = Obv(p.obv_slope_window, p.obv_slope_history, p.obv_min_slope_samples, p.obv_z_cap)
        self._atr = Atr(p.atr_period)
        self._adx = Adx(p.adx_period)
        self.bars = 0

    def update(self, candle: Candle) -> IndicatorSnapshot:
        """Apply one closed candle and return every indicator value after it."""
        h, lo, c = candle.high, candle.low, candle.close
        self.bars += 1
        srsi, sk, sd = self._stoch_rsi.update(c)
        stk, std = self._stoch.update(h, lo, c)
        kdj = self._kdj.update(h, lo, c)
        ao, ac = self._ao.update(h, lo)
        macd, macd_sig, macd_hist = self._macd.update(c)
        tr = self._tr.update(h, lo, c)
        bb = self._bb.update(c, tr)
        obv, obv_slope, obv_z = self._obv.update(c, candle.volume)
        atr = self._atr.update(tr)
        adx, pdi, mdi = self._adx.update(h, lo, c)
        return IndicatorSnapshot(
            candle=candle,
            rsi=None if self._rsi is None else self._rsi.update(c),
            stoch_rsi_rsi=srsi,
            stoch_rsi_k=sk,
            stoch_rsi_d=sd,
            stoch_k=stk,
            stoch_d=std,
            williams_r=self._wr.update(h, lo, c),
            kdj_k=None if kdj is None else kdj[0],
            kdj_d=None if kdj is None else kdj[1],
            kdj_j=None if kdj is None else kdj[2],
            ao=ao,
            ac=ac,
            ema9=self._ema9.update(c),
            ema50=self._ema50.update(c),
            ema100=self._ema100.update(c),
            ema200=self._ema200.update(c),
            macd=macd,
            macd_signal=macd_sig,
            macd_hist=macd_hist,
            bb_mid=None if bb is None else bb.mid,
            bb_upper=None if bb is None else bb.upper,
            bb_lower=None if bb is None else bb.lower,
            bb_bandwidth=None if bb is None else bb.bandwidth,
            bb_percent_b=None if bb is None else bb.percent_b,
            kc_upper=None if bb is None else bb.kc_upper,
            kc_lower=None if bb is None else bb.kc_lower,
            squeeze_on=None if bb is None else bb.squeeze_on,
            obv=obv,
            obv_slope=obv_slope,
            obv_z=obv_z,
            atr=atr,
            atr_pct=None if atr is None or c == 0 else 100.0 * atr / c,
            adx=adx,
            plus_di=pdi,
            minus_di=mdi,
            bars=self.bars,
        )
