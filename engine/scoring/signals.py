"""Signal values: what one indicator said on one bar (spec §4)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Direction(IntEnum):
    BEARISH = -1
    NEUTRAL = 0
    BULLISH = 1

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Signal:
    """``indicator`` emitted ``kind`` in ``direction`` with a strength and category name from the config."""

    indicator: str
    kind: str
    direction: Direction
    strength: str
    category: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "indicator": self.indicator,
            "kind": self.kind,
            "direction": self.direction.label,
            "strength": self.strength,
            "category": self.category,
        }


def swing_lows(values: list[float]) -> list[int]:
    """Indices i (2 ≤ i ≤ n−3) strictly below their two neighbours on each side (§4.1)."""
    return [
        i
        for i in range(2, len(values) - 2)
        if values[i] < values[i - 1]
        and values[i] < values[i - 2]
        and values[i] < values[i + 1]
        and values[i] < values[i + 2]
    ]


def swing_highs(values: list[float]) -> list[int]:
    """Indices i (2 ≤ i ≤ n−3) strictly above their two neighbours on each side (§4.1)."""
    return [
        i
        for i in range(2, len(values) - 2)
        if values[i] > values[i - 1]
        and values[i] > values[i - 2]
        and values[i] > values[i + 1]
        and values[i] > values[i + 2]
    ]


def regular_divergence(osc: list[float], price: list[float]) -> Direction:
    """§4.1 over the given window (the caller passes the last ``windowBars`` values): bullish first, then bearish.

    The readable definition: the engine runs ``detect_kernel.div_update`` (O(1) per bar), which a property
    test holds to this, bar for bar."""
    pl, ol = swing_lows(price), swing_lows(osc)
    if len(pl) >= 2 and len(ol) >= 2:
        if price[pl[-1]] < price[pl[-2]] and osc[ol[-1]] > osc[ol[-2]]:
            return Direction.BULLISH
    ph, oh = swing_highs(price), swing_highs(osc)
    if len(ph) >= 2 and len(oh) >= 2:
        if price[ph[-1]] > price[ph[-2]] and osc[oh[-1]] < osc[oh[-2]]:
            return Direction.BEARISH
    return Direction.NEUTRAL


def twin_peaks(values: list[float]) -> Direction:
    """§4.2 AO twin peaks over the window: two troughs below zero rising with a peak between (bullish), or mirror.

    The readable definition: the engine runs ``detect_kernel.twin_update`` (O(1) per bar), which a property test
    holds to this, bar for bar."""
    n = len(values)
    if n < 3:
        return Direction.NEUTRAL
    peaks = [i for i in range(1, n - 1) if values[i] > values[i - 1] and values[i] > values[i + 1]]
    troughs = [i for i in range(1, n - 1) if values[i] < values[i - 1] and values[i] < values[i + 1]]
    cur = values[-1]
    if len(troughs) >= 2:
        t1, t2 = troughs[-2], troughs[-1]
        if values[t1] < 0 and values[t2] < 0 and values[t2] > values[t1] and any(t1 < p < t2 for p in peaks):
            if cur > values[t2]:
                return Direction.BULLISH
    if len(peaks) >= 2:
        p1, p2 = peaks[-2], peaks[-1]
        if values[p1] > 0 and values[p2] > 0 and values[p2] < values[p1] and any(p1 < t < p2 for t in troughs):
            if cur < values[p2]:
                return Direction.BEARISH
    return Direction.NEUTRAL


def cross_up(prev_a: float, prev_b: float, a: float, b: float) -> bool:
    return prev_a <= prev_b and a > b


def cross_down(prev_a: float, prev_b: float, a: float, b: float) -> bool:
    return prev_a >= prev_b and a < b
