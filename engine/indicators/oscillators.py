"""Momentum oscillators of spec §3.1–§3.6: Wilder RSI, StochRSI, Stochastic, Williams %R, KDJ, AO/AC."""

from __future__ import annotations

from engine.indicators.primitives import SlidingExtremes, Sma, WilderMean


class WilderRsi:
    """§3.1: RSI with Wilder smoothing seeded by the mean of the first ``period`` gains and losses."""

    __slots__ = ("_gain", "_loss", "_prev")

    def __init__(self, period: int) -> None:
        self._gain = WilderMean(period)
        self._loss = WilderMean(period)
        self._prev: float | None = None

    def update(self, close: float) -> float | None:
        prev, self._prev = self._prev, close
        if prev is None:
            return None
        delta = close - prev
        gain = self._gain.update(delta if delta > 0 else 0.0)
        loss = self._loss.update(-delta if delta < 0 else 0.0)
        if gain is None or loss is None:
            return None
        if loss == 0.0:
            return 100.0 if gain > 0.0 else 50.0
        return 100.0 - 100.0 / (1.0 + gain / loss)


def _stoch(value: float, low: float, high: float, flat: float) -> float:
    rng = high - low
    return flat if rng == 0.0 else 100.0 * (value - low) / rng


class StochRsi:
    """§3.2: raw = stochastic of RSI over ``stoch_period``; %K = SMA(raw), %D = SMA(%K)."""

    __slots__ = ("_d", "_k", "_rsi", "_window")

    def __init__(self, rsi_period: int, stoch_period: int, k_smooth: int, d_smooth: int) -> None:
        self._rsi = WilderRsi(rsi_period)
        self._window = SlidingExtremes(stoch_period)
        self._k = Sma(k_smooth)
        self._d = Sma(d_smooth)

    def update(self, close: float) -> tuple[float | None, float | None, float | None]:
        """(RSI, %K, %D)."""
        rsi = self._rsi.update(close)
        if rsi is None or not self._window.push(rsi, rsi):
            return rsi, None, None
        k = self._k.update(_stoch(rsi, self._window.low, self._window.high, 50.0))
        return rsi, k, (None if k is None else self._d.update(k))


class Stochastic:
    """§3.3: rawK over the last ``k_period`` highs/lows; %K = SMA(rawK), %D = SMA(%K)."""

    __slots__ = ("_d", "_k", "_window")

    def __init__(self, k_period: int, k_smooth: int, d_period: int) -> None:
        self._window = SlidingExtremes(k_period)
        self._k = Sma(k_smooth)
        self._d = Sma(d_period)

    def update(self, high: float, low: float, close: float) -> tuple[float | None, float | None]:
        if not self._window.push(high, low):
            return None, None
        k = self._k.update(_stoch(close, self._window.low, self._window.high, 50.0))
        return k, (None if k is None else self._d.update(k))


class WilliamsR:
    """§3.4: −100·(HH − close)/(HH − LL), −50 on a flat window."""

    __slots__ = ("_window",)

    def __init__(self, period: int) -> None:
        self._window = SlidingExtremes(period)

    def update(self, high: float, low: float, close: float) -> float | None:
        if not self._window.push(high, low):
            return None
        hh, ll = self._window.high, self._window.low
        return -50.0 if hh == ll else -100.0 * (hh - close) / (hh - ll)


class Kdj:
    """§3.5: RSV over ``period``; K and D start at ``initial`` and smooth with 1/kSmooth, 1/dSmooth; J = 3K − 2D."""

    __slots__ = ("_d", "_da", "_k", "_ka", "_window")

    def __init__(self, period: int, k_smooth: int, d_smooth: int, initial: float = 50.0) -> None:
        self._window = SlidingExtremes(period)
        self._ka = 1.0 / k_smooth
        self._da = 1.0 / d_smooth
        self._k = initial
        self._d = initial

    def update(self, high: float, low: float, close: float) -> tuple[float, float, float] | None:
        if not self._window.push(high, low):
            return None
        rsv = _stoch(close, self._window.low, self._window.high, 50.0)
        self._k = (1.0 - self._ka) * self._k + self._ka * rsv
        self._d = (1.0 - self._da) * self._d + self._da * self._k
        return self._k, self._d, 3.0 * self._k - 2.0 * self._d


class AwesomeOscillator:
    """§3.6: AO = SMA_fast(median) − SMA_slow(median); AC = AO − SMA_ac(AO)."""

    __slots__ = ("_ac", "_fast", "_slow")

    def __init__(self, fast: int, slow: int, ac_period: int) -> None:
        self._fast = Sma(fast)
        self._slow = Sma(slow)
        self._ac = Sma(ac_period)

    def update(self, high: float, low: float) -> tuple[float | None, float | None]:
        median = (high + low) / 2.0
        fast = self._fast.update(median)
        slow = self._slow.update(median)
        if fast is None or slow is None:
            return None, None
        ao = fast - slow
        mean = self._ac.update(ao)
        return ao, (None if mean is None else ao - mean)
