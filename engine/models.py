"""Value types shared by every engine layer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

TIMEFRAME_MS: dict[str, int] = {
    "1min": 60_000,
    "5min": 300_000,
    "15min": 900_000,
    "30min": 1_800_000,
    "1hour": 3_600_000,
    "4hour": 14_400_000,
    "1day": 86_400_000,
}


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle of ``timeframe`` in milliseconds; unknown names are a ValueError."""
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAME_MS)}") from None


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed OHLCV candle; ``ts`` is its open time in epoch milliseconds (UTC), volume in lots."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class MalformedCandleError(ValueError):
    """Prices that cannot be a candle. One NaN reaching the indicators poisons them for good (every later ATR,
    EMA and decision is NaN or raises), so a bad candle is refused where it enters, with what is wrong."""


def checked_candle(ts: int, open_: float, high: float, low: float, close: float, volume: float) -> Candle:
    """A Candle, after checking the numbers: finite, positive prices, low ≤ open/close ≤ high, volume ≥ 0."""
    c = Candle(ts, open_, high, low, close, volume)
    if not all(math.isfinite(x) for x in (open_, high, low, close, volume)):
        raise MalformedCandleError(f"candle {ts}: a value is not a finite number: {c}")
    if low <= 0 or volume < 0:
        raise MalformedCandleError(f"candle {ts}: prices must be positive and volume not negative: {c}")
    if low > min(open_, close) or high < max(open_, close):
        raise MalformedCandleError(f"candle {ts}: open and close must lie between low and high: {c}")
    return c


def candle_from_kline(row: list[float]) -> Candle:
    """A REST ``kline/query`` row ``[openTime ms, open, high, low, close, volume]`` as a checked Candle."""
    return checked_candle(int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1

    def further(self, a: Decimal, b: Decimal) -> bool:
        """Price ``a`` lies further in this side's profit direction than ``b`` (higher for a long, lower for a
        short): a stop there protects more, a take-profit there is further out."""
        return a > b if self is Side.LONG else a < b
