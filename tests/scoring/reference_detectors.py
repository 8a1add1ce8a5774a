"""The readable reference of the signal detectors (spec §4.2): the Python classes the engine ran before
``engine.scoring.detect_kernel`` compiled them. Each keeps only the bounded history its rules need.

tests/scoring/test_detect_kernel.py holds the kernel to these, bar for bar, over the real candles."""

from __future__ import annotations

from collections import deque
from operator import attrgetter
from typing import Any, ClassVar

from engine.config.strategy import StrategyConfig
from engine.indicators.snapshot import IndicatorSnapshot
from engine.scoring.signals import Direction, Signal, cross_down, cross_up

BULL, BEAR = Direction.BULLISH, Direction.BEARISH


class DivergenceTracker:
    """§4.1 over the last ``window`` (oscillator, close) pairs, in O(1) per bar.

    A bar is a swing once its two neighbours on each side are known, and stays one for as long as those four
    are inside the window; so each swing is found once, when the bar two back is decided. Only the last two
    swings of each kind matter, and only while the older of them is still inside the window: so when a swing is
    found, the verdict is settled until that older swing leaves the window, and the bars between only compare
    their number with that last bar. Equal, bar for bar, to ``regular_divergence`` over the window (a property
    test proves it).
    """

    __slots__ = ("_bear_until", "_bull_until", "_close", "_min", "_oh", "_ol", "_osc", "_ph", "_pl", "_seen", "_window")

    def __init__(self, window: int, min_history: int) -> None:
        # The four values before the newest, oldest first (a tuple unpacks faster than a deque).
        self._osc = self._close = (0.0, 0.0, 0.0, 0.0)
        # The last two confirmed swings (older, newer), each (bar number, value): price and oscillator lows and
        # highs. The starting placeholders lie far before any window, so they never count as swings.
        self._pl = self._ph = self._ol = self._oh = _NO_SWINGS
        self._window = window
        self._min = min_history
        self._seen = 0
        self._bull_until = self._bear_until = -1  # the last bar on which the current swings say bullish / bearish

    def update(self, osc: float, close: float) -> Direction:
        bar = self._seen
        self._seen = bar + 1
        c0, c1, c, c3 = self._close
        self._close = (c1, c, c3, close)
        o0, o1, o, o3 = self._osc
        self._osc = (o1, o, o3, osc)
        if bar >= 4:  # the bar two back (c, o) now has two neighbours on each side: is it a swing?
            lows = highs = False
            if c < c0 and c < c1 and c < c3 and c < close:
                self._pl, lows = (self._pl[1], (bar - 2, c)), True
            elif c > c0 and c > c1 and c > c3 and c > close:
                self._ph, highs = (self._ph[1], (bar - 2, c)), True
            if o < o0 and o < o1 and o < o3 and o < osc:
                self._ol, lows = (self._ol[1], (bar - 2, o)), True
            elif o > o0 and o > o1 and o > o3 and o > osc:
                self._oh, highs = (self._oh[1], (bar - 2, o)), True
            if lows:
                (pl0, pl1), (ol0, ol1) = self._pl, self._ol
                # bullish while both older lows are in the window: first = bar − window + 3 ≤ their bar numbers
                ok = pl1[1] < pl0[1] and ol1[1] > ol0[1]
                self._bull_until = min(pl0[0], ol0[0]) + self._window - 3 if ok else -1
            if highs:
                (ph0, ph1), (oh0, oh1) = self._ph, self._oh
                ok = ph1[1] > ph0[1] and oh1[1] < oh0[1]
                self._bear_until = min(ph0[0], oh0[0]) + self._window - 3 if ok else -1
        if bar + 1 < self._min:
            return Direction.NEUTRAL
        if bar <= self._bull_until:
            return Direction.BULLISH
        if bar <= self._bear_until:
            return Direction.BEARISH
        return Direction.NEUTRAL


class TwinPeaksTracker:
    """§4.2 AO twin peaks over the last ``window`` values, in O(1) per bar; equal, bar for bar, to ``twin_peaks``
    over the window (a property test proves it).

    A value is a peak (trough) once its right neighbour is known, and counts while its left neighbour is still in
    the window. Only the last two troughs and the last two peaks matter, each with the last peak (trough) found
    before it: whether one lies between the two is then one comparison.
    """

    __slots__ = ("_peaks", "_prev", "_prev2", "_seen", "_troughs", "_window")

    def __init__(self, window: int) -> None:
        self._window = window
        self._seen = 0
        self._prev2 = self._prev = 0.0  # the values one and two bars before the newest
        # (older, newer), each (bar number, value, bar of the last opposite extreme found before it); the starting
        # placeholders lie far before any window.
        self._peaks = self._troughs = _NO_EXTREMA

    def update(self, value: float) -> Direction:
        bar = self._seen
        self._seen = bar + 1
        a, b = self._prev2, self._prev
        if bar >= 2:  # the bar before now has both neighbours: a peak or a trough?
            if b > a and b > value:
                self._peaks = (self._peaks[1], (bar - 1, b, self._troughs[1][0]))
            elif b < a and b < value:
                self._troughs = (self._troughs[1], (bar - 1, b, self._peaks[1][0]))
        self._prev2, self._prev = b, value
        first = bar - self._window + 2  # the oldest bar whose left neighbour is still in the window
        (t1, t1v, _), (_, t2v, peak_before_t2) = self._troughs
        if t1 >= first and t1v < 0 and t2v < 0 and t2v > t1v and peak_before_t2 > t1 and value > t2v:
            return Direction.BULLISH
        (p1, p1v, _), (_, p2v, trough_before_p2) = self._peaks
        if p1 >= first and p1v > 0 and p2v > 0 and p2v < p1v and trough_before_p2 > p1 and value < p2v:
            return Direction.BEARISH
        return Direction.NEUTRAL


_SIGNALS: dict[tuple[str, str, Direction, str, str], Signal] = {}
_NO_SWING = (-(2**62), 0.0)
_NO_SWINGS: tuple[tuple[int, float], tuple[int, float]] = (_NO_SWING, _NO_SWING)
_NO_EXTREMUM = (-(2**62), 0.0, -(2**62))
_NO_EXTREMA: tuple[tuple[int, float, int], tuple[int, float, int]] = (_NO_EXTREMUM, _NO_EXTREMUM)


class Detector:
    """Base: a name, the snapshot fields that must be defined for readiness, and the category map."""

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    _fields_of: ClassVar[attrgetter[Any]]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "fields" in cls.__dict__:
            cls._fields_of = attrgetter(*cls.fields)

    def __init__(self, cfg: StrategyConfig) -> None:
        self.cfg = cfg
        self.categories = cfg.indicators.get(self.name).signals
        dd = cfg.divergence_detection
        self._div = DivergenceTracker(dd.window_bars, dd.min_history_bars)
        self._div_strength = dd.strength

    def ready(self, snap: IndicatorSnapshot) -> bool:
        values = self._fields_of(snap)
        return None not in values if len(self.fields) > 1 else values is not None

    def signal(self, kind: str, direction: Direction, strength: str) -> Signal:
        """Signals are immutable and there are few distinct ones: each is built once and shared by every symbol."""
        key = (self.name, kind, direction, strength, self.categories.get(kind, "other"))
        sig = _SIGNALS.get(key)
        if sig is None:
            sig = _SIGNALS[key] = Signal(*key)
        return sig

    def divergence(self, osc: float, close: float, out: list[Signal]) -> None:
        d = self._div.update(osc, close)
        if d is not Direction.NEUTRAL:
            out.append(self.signal("divergence", d, self._div_strength))

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:  # pragma: no cover - abstract
        raise NotImplementedError


class _KdCross(Detector):
    """Shared %K/%D cross + zone + divergence logic of StochRSI and Stochastic."""

    k_field: ClassVar[str]
    d_field: ClassVar[str]

    def __init__(
        self,
        cfg: StrategyConfig,
        *,
        oversold: float,
        overbought: float,
        lo: float,
        hi: float,
        cross_lo: float,
        cross_hi: float,
    ) -> None:
        super().__init__(cfg)
        self._prev: tuple[float, float] | None = None
        self._os, self._ob, self._lo, self._hi = oversold, overbought, lo, hi
        self._cross_lo, self._cross_hi = cross_lo, cross_hi

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        k, d = getattr(snap, self.k_field), getattr(snap, self.d_field)
        out: list[Signal] = []
        if k is None or d is None:
            return out
        prev, self._prev = self._prev, (k, d)
        if prev is not None:
            if cross_up(prev[0], prev[1], k, d):
                out.append(self.signal("kdCross", BULL, "strong" if k < self._cross_lo else "moderate"))
            elif cross_down(prev[0], prev[1], k, d):
                out.append(self.signal("kdCross", BEAR, "strong" if k > self._cross_hi else "moderate"))
        if k < self._os:
            out.append(self.signal("zone", BULL, "extreme" if k < self._lo else "moderate"))
        elif k > self._ob:
            out.append(self.signal("zone", BEAR, "extreme" if k > self._hi else "moderate"))
        self.divergence(k, snap.candle.close, out)
        return out


class StochRsiDetector(_KdCross):
    name = "stoch_rsi"
    fields = ("stoch_rsi_rsi", "stoch_rsi_k", "stoch_rsi_d")
    k_field, d_field = "stoch_rsi_k", "stoch_rsi_d"

    def __init__(self, cfg: StrategyConfig) -> None:
        p = cfg.indicators.stoch_rsi.params
        super().__init__(
            cfg,
            oversold=p.oversold,
            overbought=p.overbought,
            lo=p.extreme_low,
            hi=p.extreme_high,
            cross_lo=p.oversold,
            cross_hi=p.overbought,
        )


class StochasticDetector(_KdCross):
    name = "stochastic"
    fields = ("stoch_k", "stoch_d")
    k_field, d_field = "stoch_k", "stoch_d"

    def __init__(self, cfg: StrategyConfig) -> None:
        p = cfg.indicators.stochastic.params
        super().__init__(
            cfg,
            oversold=p.oversold,
            overbought=p.overbought,
            lo=p.extreme_low,
            hi=p.extreme_high,
            cross_lo=p.oversold + p.cross_zone_margin,
            cross_hi=p.overbought - p.cross_zone_margin,
        )


class WilliamsRDetector(Detector):
    name = "williams_r"
    fields = ("williams_r",)

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.indicators.williams_r.params
        self._prev: float | None = None
        self._run_low = 0  # consecutive bars ending at the previous bar with %R < oversold
        self._run_high = 0

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        r = snap.williams_r
        out: list[Signal] = []
        if r is None:
            return out
        p = self.p
        before_low, before_high = self._run_low, self._run_high
        prev, self._prev = self._prev, r
        self._run_low = before_low + 1 if r < p.oversold else 0
        self._run_high = before_high + 1 if r > p.overbought else 0
        very = p.cross_very_strong_min_bars_in_zone
        if prev is not None:
            if cross_up(prev, p.oversold, r, p.oversold):
                out.append(self.signal("levelCross", BULL, "veryStrong" if before_low >= very else "strong"))
            elif cross_down(prev, p.overbought, r, p.overbought):
                out.append(self.signal("levelCross", BEAR, "veryStrong" if before_high >= very else "strong"))
        if r < p.oversold:
            strength = (
                "extreme" if r < p.extreme_low else "strong" if self._run_low >= p.persistent_bars else "moderate"
            )
            out.append(self.signal("zone", BULL, strength))
        elif r > p.overbought:
            strength = (
                "extreme" if r > p.extreme_high else "strong" if self._run_high >= p.persistent_bars else "moderate"
            )
            out.append(self.signal("zone", BEAR, strength))
        self.divergence(r, snap.candle.close, out)
        return out


class KdjDetector(Detector):
    name = "kdj"
    fields = ("kdj_k", "kdj_d", "kdj_j")

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.indicators.kdj.params
        self._prev: tuple[float, float] | None = None
        self._run_low = 0
        self._run_high = 0

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        k, d, j = snap.kdj_k, snap.kdj_d, snap.kdj_j
        out: list[Signal] = []
        if k is None or d is None or j is None:
            return out
        p = self.p
        self._run_low = self._run_low + 1 if j < p.j_oversold else 0
        self._run_high = self._run_high + 1 if j > p.j_overbought else 0
        if j < p.j_oversold:
            out.append(self.signal("jExtreme", BULL, "extreme"))
        elif j > p.j_overbought:
            out.append(self.signal("jExtreme", BEAR, "extreme"))
        prev, self._prev = self._prev, (k, d)
        if prev is not None:
            if cross_up(prev[0], prev[1], k, d):
                strength = (
                    "veryStrong"
                    if j < 50 and self._run_low >= p.persistent_bars
                    else "strong"
                    if j < 50
                    else "moderate"
                )
                out.append(self.signal("kdCross", BULL, strength))
            elif cross_down(prev[0], prev[1], k, d):
                strength = (
                    "veryStrong"
                    if j > 50 and self._run_high >= p.persistent_bars
                    else "strong"
                    if j > 50
                    else "moderate"
                )
                out.append(self.signal("kdCross", BEAR, strength))
        self.divergence(j, snap.candle.close, out)
        return out


class AoDetector(Detector):
    name = "ao"
    fields = ("ao", "ac")

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self._hist: deque[float] = deque(maxlen=cfg.indicators.ao.params.twin_peaks_window)
        self._twin = TwinPeaksTracker(cfg.indicators.ao.params.twin_peaks_window)

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        ao, ac = snap.ao, snap.ac
        out: list[Signal] = []
        if ao is None:
            return out
        hist = self._hist
        prev = hist[-1] if hist else None
        hist.append(ao)
        if prev is not None and ac is not None:
            if cross_up(prev, 0.0, ao, 0.0):
                out.append(self.signal("zeroCross", BULL, "veryStrong" if ac > 0 else "strong"))
            elif cross_down(prev, 0.0, ao, 0.0):
                out.append(self.signal("zeroCross", BEAR, "veryStrong" if ac < 0 else "strong"))
        if len(hist) >= 4:
            a0, a1, a2, a3 = hist[-4], hist[-3], hist[-2], hist[-1]
            if min(a0, a1, a2, a3) > 0 and a1 < a0 and a2 < a1 and a3 > a2:
                out.append(self.signal("saucer", BULL, "strong"))
            elif max(a0, a1, a2, a3) < 0 and a1 > a0 and a2 > a1 and a3 < a2:
                out.append(self.signal("saucer", BEAR, "strong"))
        twin = self._twin.update(ao)
        if twin is not Direction.NEUTRAL:
            out.append(self.signal("twinPeaks", twin, "veryStrong"))
        self.divergence(ao, snap.candle.close, out)
        return out


class EmaTrendDetector(Detector):
    name = "ema_trend"
    fields = ("ema9", "ema50", "ema100", "ema200")

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.indicators.ema_trend.params
        self._prev: tuple[float, float, float] | None = None

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        e9, e50, e100, e200 = snap.ema9, snap.ema50, snap.ema100, snap.ema200
        out: list[Signal] = []
        if e9 is None or e50 is None or e100 is None or e200 is None:
            return out
        p, close = self.p, snap.candle.close
        prev, self._prev = self._prev, (e9, e50, e200)
        if prev is not None:
            if cross_up(prev[0], prev[1], e9, e50):
                out.append(self.signal("emaCross", BULL, "strong"))
            elif cross_down(prev[0], prev[1], e9, e50):
                out.append(self.signal("emaCross", BEAR, "strong"))
            if cross_up(prev[1], prev[2], e50, e200):
                out.append(self.signal("goldenDeathCross", BULL, "veryStrong"))
            elif cross_down(prev[1], prev[2], e50, e200):
                out.append(self.signal("goldenDeathCross", BEAR, "veryStrong"))
        d200 = 100.0 * (close - e200) / e200
        d100 = 100.0 * (close - e100) / e100
        d50 = 100.0 * (close - e50) / e50
        trend = trend_direction(close, e9, e50, e200)
        if trend is not Direction.NEUTRAL:
            strong = abs(d200) > p.strong_trend_distance_pct
            out.append(self.signal("trendDirection", trend, "strong" if strong else "moderate"))
        if d200 < -p.extreme_distance200_pct:
            out.append(self.signal("extremeDistance", BULL, "veryStrong"))
        elif d100 < -p.extreme_distance100_pct:
            out.append(self.signal("extremeDistance", BULL, "strong"))
        elif d50 < -p.extreme_distance50_pct:
            out.append(self.signal("extremeDistance", BULL, "moderate"))
        elif d200 > p.extreme_distance200_pct:
            out.append(self.signal("extremeDistance", BEAR, "veryStrong"))
        elif d100 > p.extreme_distance100_pct:
            out.append(self.signal("extremeDistance", BEAR, "strong"))
        elif d50 > p.extreme_distance50_pct:
            out.append(self.signal("extremeDistance", BEAR, "moderate"))
        return out


def trend_direction(close: float, ema9: float, ema50: float, ema200: float) -> Direction:
    """§3.7: bullish if close > EMA200 and EMA9 > EMA50; bearish on the mirror; neutral otherwise."""
    if close > ema200 and ema9 > ema50:
        return Direction.BULLISH
    if close < ema200 and ema9 < ema50:
        return Direction.BEARISH
    return Direction.NEUTRAL


class MacdDetector(Detector):
    name = "macd"
    fields = ("macd", "macd_signal", "macd_hist")

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self._prev: tuple[float, float, float] | None = None

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        m, s, h = snap.macd, snap.macd_signal, snap.macd_hist
        out: list[Signal] = []
        if m is None or s is None or h is None:
            return out
        prev, self._prev = self._prev, (m, s, h)
        if prev is not None:
            pm, ps, ph = prev
            if cross_up(pm, ps, m, s):
                out.append(self.signal("signalCross", BULL, "veryStrong" if m < 0 else "strong"))
            elif cross_down(pm, ps, m, s):
                out.append(self.signal("signalCross", BEAR, "veryStrong" if m > 0 else "strong"))
            if cross_up(pm, 0.0, m, 0.0):
                out.append(self.signal("zeroCross", BULL, "strong"))
            elif cross_down(pm, 0.0, m, 0.0):
                out.append(self.signal("zeroCross", BEAR, "strong"))
            if ph < 0 < h:
                out.append(self.signal("histogramFlip", BULL, "strong"))
            elif ph > 0 > h:
                out.append(self.signal("histogramFlip", BEAR, "strong"))
        self.divergence(m, snap.candle.close, out)
        return out


class BollingerDetector(Detector):
    name = "bollinger"
    fields = ("bb_mid", "bb_upper", "bb_lower", "squeeze_on")

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.indicators.bollinger.params
        self._prev: tuple[float, float, float, bool] | None = None
        self._below: deque[bool] = deque(maxlen=self.p.walk_lookback)
        self._above: deque[bool] = deque(maxlen=self.p.walk_lookback)

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        mid, up, lo, sq = snap.bb_mid, snap.bb_upper, snap.bb_lower, snap.squeeze_on
        out: list[Signal] = []
        if mid is None or up is None or lo is None or sq is None:
            return out
        p, close = self.p, snap.candle.close
        self._below.append(close < mid)
        self._above.append(close > mid)
        prev, self._prev = self._prev, (close, up, lo, sq)
        if prev is not None:
            pc, pu, pl, psq = prev
            if psq and not sq:
                if close > mid:
                    out.append(self.signal("squeezeFire", BULL, "veryStrong"))
                elif close < mid:
                    out.append(self.signal("squeezeFire", BEAR, "veryStrong"))
            if pc < pu and close > up:
                out.append(self.signal("breakout", BULL, "veryStrong" if psq else "strong"))
            elif pc > pl and close < lo:
                out.append(self.signal("breakout", BEAR, "veryStrong" if psq else "strong"))
        walking_down = sum(self._below) >= p.walk_min_closes
        walking_up = sum(self._above) >= p.walk_min_closes
        if close <= lo * (1 + p.touch_tolerance):
            out.append(
                self.signal("bandTouch", BEAR, "weak") if walking_down else self.signal("bandTouch", BULL, "moderate")
            )
        elif close >= up * (1 - p.touch_tolerance):
            out.append(
                self.signal("bandTouch", BULL, "weak") if walking_up else self.signal("bandTouch", BEAR, "moderate")
            )
        return out


class ObvDetector(Detector):
    name = "obv"
    fields = ("obv", "obv_slope", "obv_z")

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.indicators.obv.params
        self._closes: deque[float] = deque(maxlen=self.p.price_confirm_bars)
        self._obvs: deque[float] = deque(maxlen=self.p.breakout_window - 1)  # the OBVs before the current one
        self._vols: deque[float] = deque(maxlen=self.p.breakout_window)

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        p, close = self.p, snap.candle.close
        self._closes.append(close)
        self._vols.append(snap.candle.volume)
        obv, z = snap.obv, snap.obv_z
        out: list[Signal] = []
        if obv is None:
            return out
        prior = self._obvs
        window_full = len(prior) == p.breakout_window - 1
        high, low = (max(prior), min(prior)) if window_full else (0.0, 0.0)
        prior.append(obv)
        if z is None:
            return out
        past = self._closes[0] if len(self._closes) == p.price_confirm_bars else None
        if z > p.z_score_trigger:
            confirm = past is not None and close > past
            out.append(
                self.signal(
                    "slope", BULL, "veryStrong" if confirm else "strong" if abs(z) > p.z_score_strong else "moderate"
                )
            )
        elif z < -p.z_score_trigger:
            confirm = past is not None and close < past
            out.append(
                self.signal(
                    "slope", BEAR, "veryStrong" if confirm else "strong" if abs(z) > p.z_score_strong else "moderate"
                )
            )
        if window_full:  # a breakout beyond the previous breakoutWindow − 1 OBVs
            if obv > high:
                out.append(self.signal("breakout", BULL, "veryStrong" if self._volume_spike() else "strong"))
            elif obv < low:
                out.append(self.signal("breakout", BEAR, "veryStrong" if self._volume_spike() else "strong"))
        self.divergence(obv, close, out)
        return out

    def _volume_spike(self) -> bool:
        """A volume among the last volumeSpikeLookback above volumeSpikeFactor × the breakoutWindow mean."""
        p, vols = self.p, list(self._vols)
        if len(vols) < p.breakout_window:
            return False
        limit = p.volume_spike_factor * (sum(vols) / len(vols))
        return any(v > limit for v in vols[-p.volume_spike_lookback :])


class AdxDetector(Detector):
    name = "adx"
    fields = ("adx", "plus_di", "minus_di")

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.indicators.adx.params
        self._adx: deque[float] = deque(maxlen=3)
        self._prev_di: tuple[float, float] | None = None

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        adx, pdi, mdi = snap.adx, snap.plus_di, snap.minus_di
        out: list[Signal] = []
        if pdi is None or mdi is None:
            return out
        prev, self._prev_di = self._prev_di, (pdi, mdi)
        if adx is None:
            return out
        self._adx.append(adx)
        p = self.p
        trending = adx >= p.trend_threshold
        if trending and pdi != mdi:
            out.append(
                self.signal(
                    "trendDirection",
                    BULL if pdi > mdi else BEAR,
                    "veryStrong" if adx >= p.strong_trend_threshold else "strong",
                )
            )
        if prev is not None:
            rising = len(self._adx) == 3 and self._adx[-1] > self._adx[0]
            strength = "veryStrong" if trending and rising else "strong" if trending else "moderate"
            if cross_up(prev[0], prev[1], pdi, mdi):
                out.append(self.signal("diCross", BULL, strength))
            elif cross_up(prev[1], prev[0], mdi, pdi):
                out.append(self.signal("diCross", BEAR, strength))
        return out


class RsiDetector(Detector):
    """Standalone RSI (disabled by default): level crosses of 30/70, zones, divergence."""

    name = "rsi"
    fields = ("rsi",)

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.indicators.rsi.params
        self._prev: float | None = None

    def update(self, snap: IndicatorSnapshot) -> list[Signal]:
        r = snap.rsi
        out: list[Signal] = []
        if r is None:
            return out
        p = self.p
        prev, self._prev = self._prev, r
        if prev is not None:
            if cross_up(prev, p.oversold, r, p.oversold):
                out.append(self.signal("levelCross", BULL, "strong"))
            elif cross_down(prev, p.overbought, r, p.overbought):
                out.append(self.signal("levelCross", BEAR, "strong"))
        if r < p.oversold:
            out.append(self.signal("zone", BULL, "moderate"))
        elif r > p.overbought:
            out.append(self.signal("zone", BEAR, "moderate"))
        self.divergence(r, snap.candle.close, out)
        return out


DETECTORS: tuple[type[Detector], ...] = (
    StochRsiDetector,
    StochasticDetector,
    WilliamsRDetector,
    KdjDetector,
    AoDetector,
    EmaTrendDetector,
    MacdDetector,
    BollingerDetector,
    ObvDetector,
    AdxDetector,
    RsiDetector,
)
