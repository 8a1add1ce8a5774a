"""Build confirmation-timeframe candles (30min) from primary ones (5min), incrementally.

A bucket is emitted only when its last primary candle has arrived and none was missing: a gap inside a
bucket drops that bucket instead of inventing a candle.
"""

from __future__ import annotations

from engine.models import Candle, timeframe_ms


class CandleAggregator:
    """Feed closed primary candles in order; get a closed higher-timeframe candle when one completes."""

    __slots__ = ("_count", "_cur", "_per", "_src", "_step")

    def __init__(self, source: str, target: str) -> None:
        self._src = timeframe_ms(source)
        self._step = timeframe_ms(target)
        if self._step % self._src:
            raise ValueError(f"{target} is not a multiple of {source}")
        self._per = self._step // self._src
        self._cur: Candle | None = None
        self._count = 0

    def update(self, candle: Candle) -> Candle | None:
        bucket = candle.ts - candle.ts % self._step
        cur = self._cur
        if cur is None or cur.ts != bucket:
            cur = Candle(bucket, candle.open, candle.high, candle.low, candle.close, candle.volume)
            self._count = 1 if candle.ts == bucket else 0  # a bucket joined mid-way can never complete
        else:
            cur = Candle(
                bucket,
                cur.open,
                max(cur.high, candle.high),
                min(cur.low, candle.low),
                candle.close,
                cur.volume + candle.volume,
            )
            self._count += 1 if self._count else 0
        self._cur = cur
        if candle.ts + self._src == bucket + self._step:
            complete = self._count == self._per
            self._cur, self._count = None, 0
            return cur if complete else None
        return None
