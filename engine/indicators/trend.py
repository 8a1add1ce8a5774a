"""Trend indicators of spec §3.7, §3.8, §3.12: EMA set, MACD, ADX."""

from __future__ import annotations

from engine.indicators.primitives import Ema, WilderMean, WilderSum


class Macd:
    """§3.8: MACD = EMA_fast − EMA_slow (each SMA-seeded on its own); signal = EMA of MACD, SMA-seeded."""

    __slots__ = ("_fast", "_signal", "_slow")

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        self._fast = Ema(fast)
        self._slow = Ema(slow)
        self._signal = Ema(signal)

    def update(self, close: float) -> tuple[float | None, float | None, float | None]:
        fast = self._fast.update(close)
        slow = self._slow.update(close)
        if fast is None or slow is None:
            return None, None, None
        macd = fast - slow
        signal = self._signal.update(macd)
        return macd, signal, (None if signal is None else macd - signal)


class Adx:
    """§3.12: standard Wilder ADX: sums of the first ``period`` TR/±DM, then S − S/n + x; ADX seeded by the mean DX."""

    __slots__ = ("_adx", "_mdm", "_pdm", "_prev", "_tr")

    def __init__(self, period: int) -> None:
        self._tr = WilderSum(period)
        self._pdm = WilderSum(period)
        self._mdm = WilderSum(period)
        self._adx = WilderMean(period)
        self._prev: tuple[float, float, float] | None = None

    def update(self, high: float, low: float, close: float) -> tuple[float | None, float | None, float | None]:
        """(ADX, +DI, −DI)."""
        prev, self._prev = self._prev, (high, low, close)
        if prev is None:
            return None, None, None
        ph, pl, pc = prev
        up, down = high - ph, pl - low
        tr = max(high - low, abs(high - pc), abs(low - pc))
        s_tr = self._tr.update(tr)
        s_p = self._pdm.update(up if up > down and up > 0.0 else 0.0)
        s_m = self._mdm.update(down if down > up and down > 0.0 else 0.0)
        if s_tr is None or s_p is None or s_m is None:
            return None, None, None
        pdi = 100.0 * s_p / s_tr if s_tr else 0.0
        mdi = 100.0 * s_m / s_tr if s_tr else 0.0
        total = pdi + mdi
        dx = 100.0 * abs(pdi - mdi) / total if total else 0.0
        return self._adx.update(dx), pdi, mdi


__all__ = ["Adx", "Ema", "Macd"]
