"""REST kline rows as candles, refusing the malformed ones one by one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from engine.models import Candle, candle_from_kline

log = structlog.get_logger(__name__)


def closed_candles(rows: Iterable[Sequence[float]], symbol: str) -> list[Candle]:
    """Rows of ``GET /api/v1/kline/query`` as checked candles. A malformed row (a NaN, a price of zero, a low above
    the close, a short row) is logged and left out: the series then has a gap, which the pipeline handles as one,
    instead of one bad number poisoning the indicators or a whole warm-up failing."""
    out = []
    for row in rows:
        try:
            out.append(candle_from_kline(list(row)))
        except (ValueError, TypeError, IndexError) as exc:
            log.error("candles.malformed_row", symbol=symbol, row=str(row)[:200], error=str(exc))
    return out
