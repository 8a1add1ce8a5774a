"""Volatility and volume indicators of spec §3.9–§3.11: ATR, Bollinger with the Keltner squeeze, OBV."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from engine.indicators.primitives import SlidingSum, Sma, WilderMean


class TrueRange:
    """TR = max(H − L, |H − C₋₁|, |L − C₋₁|); the first candle's TR is H − L (spec §3)."""

    __slots__ = ("_prev_close",)

    def __init__(self) -> None:
        self._prev_close: float | None = None

    def update(self, high: float, low: float, close: float) -> float:
        pc, self._prev_close = self._prev_close, close
        if pc is None:
            return high - low
        return max(high - low, abs(high - pc), abs(low - pc))


class Atr:
    """§3.11: Wilder ATR seeded with the mean of the first ``period`` true ranges."""

    __slots__ = ("_mean",)

    def __init__(self, period: int) -> None:
        self._mean = WilderMean(period)

    def update(self, tr: float) -> float | None:
        return self._mean.update(tr)


@dataclass(frozen=True, slots=True)
class BollingerValues:
    mid: float
    upper: float
    lower: float
    bandwidth: float
    percent_b: float
    kc_upper: float | None
    kc_lower: float | None
    squeeze_on: bool | None


class Bollinger:
    """§3.9: SMA ± k·population σ; Keltner = mid ± m·mean(TR) over its own period; squeeze = BB inside KC."""

    __slots__ = ("_k", "_kc", "_m", "_win")

    def __init__(self, period: int, std_dev: float, keltner_period: int, keltner_multiplier: float) -> None:
        self._win = SlidingSum(period)
        self._kc = Sma(keltner_period)
        self._k = std_dev
        self._m = keltner_multiplier

    def update(self, close: float, tr: float) -> BollingerValues | None:
        atr_kc = self._kc.update(tr)
        if not self._win.push(close):
            return None
        mid = self._win.mean()
        width = self._k * math.sqrt(self._win.pvariance())
        upper, lower = mid + width, mid - width
        band = upper - lower
        pct_b = (close - lower) / band if band else 0.5
        if atr_kc is None:
            return BollingerValues(mid, upper, lower, 100.0 * band / mid, pct_b, None, None, None)
        kc_u, kc_l = mid + self._m * atr_kc, mid - self._m * atr_kc
        return BollingerValues(mid, upper, lower, 100.0 * band / mid, pct_b, kc_u, kc_l, lower > kc_l and upper < kc_u)


class Obv:
    """§3.10: OBV from 0, slope over ``slope_window`` values, z-score of the slope over up to ``history`` slopes."""

    __slots__ = ("_cap", "_hist", "_hist_max", "_min", "_obvs", "_prev_close", "_sum", "_sumsq", "_window", "value")

    def __init__(self, slope_window: int, history: int, min_samples: int, cap: float) -> None:
        self._window = slope_window
        self._obvs: deque[float] = deque(maxlen=slope_window)
        self._hist: deque[float] = deque()
        self._sum = 0.0
        self._sumsq = 0.0
        self._min = min_samples
        self._cap = cap
        self._prev_close: float | None = None
        self.value = 0.0
        self._hist_max = history

    def update(self, close: float, volume: float) -> tuple[float, float | None, float | None]:
        """(OBV, slope, clamped z)."""
        pc, self._prev_close = self._prev_close, close
        if pc is not None:
            if close > pc:
                self.value += volume
            elif close < pc:
                self.value -= volume
        obvs = self._obvs
        obvs.append(self.value)
        if len(obvs) < self._window:
            return self.value, None, None
        slope = (obvs[-1] - obvs[0]) / self._window
        hist = self._hist
        hist.append(slope)
        self._sum += slope
        self._sumsq += slope * slope
        if len(hist) > self._hist_max:
            old = hist.popleft()
            self._sum -= old
            self._sumsq -= old * old
        if len(hist) < self._min:
            return self.value, slope, None
        count = len(hist)
        mean = self._sum / count
        var = self._sumsq / count - mean * mean
        if var <= 1e-12 * max(1.0, mean * mean):
            return self.value, slope, 0.0
        z = (slope - mean) / math.sqrt(var)
        return self.value, slope, max(-self._cap, min(self._cap, z))
