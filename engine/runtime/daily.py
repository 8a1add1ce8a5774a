"""The daily summary: what the last complete UTC day did, from the closed trades the event log holds."""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal

from engine.events import DailySummary, PositionClosed
from engine.risk.limits import DAY_MS


def summarize_day(closed: Iterable[PositionClosed], *, now_ms: int, worst_drawdown_pct: Decimal) -> DailySummary:
    """The UTC day before the one ``now_ms`` falls in: net PnL, fees and trades closed in it.

    It is sent a few minutes after midnight, when the running figures (today's realised PnL, the drawdown) have
    already started the new day, so it counts the stored closes of the day that ended instead."""
    end = now_ms - now_ms % DAY_MS
    start = end - DAY_MS
    day = [e for e in closed if start <= e.ts_ms < end]
    return DailySummary(
        ts_ms=now_ms,
        day=time.strftime("%Y-%m-%d", time.gmtime(start // 1000)),
        net_pnl=sum((e.net for e in day), Decimal(0)),
        fees=sum((e.fees for e in day), Decimal(0)),
        trades=len(day),
        drawdown_pct=worst_drawdown_pct,
    )
