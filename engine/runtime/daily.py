"""The daily summary: what a UTC day did, from the closed trades the event log holds."""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal

from engine.events import DailySummary, PositionClosed
from engine.risk.limits import DAY_MS, RiskState, utc_day


def summarized_day(now_ms: int) -> int:
    """The UTC day a summary sent at ``now_ms`` covers: before noon (the default is 00:05) the day that just
    ended, whose running figures have already been reset; from noon on, the day so far."""
    return utc_day(now_ms) - (1 if now_ms % DAY_MS < DAY_MS // 2 else 0)


def summarize_day(closed: Iterable[PositionClosed], *, now_ms: int, risk: RiskState) -> DailySummary:
    """Net PnL, fees and trades closed in the summarized day, and its worst marked drawdown (kept by ``risk``,
    which must have rolled to ``now_ms``'s day)."""
    day = summarized_day(now_ms)
    start, end = day * DAY_MS, (day + 1) * DAY_MS
    trades = [e for e in closed if start <= e.ts_ms < end]
    if day == risk.day:
        drawdown = risk.worst_drawdown_today
    elif day == risk.day - 1:
        drawdown = risk.worst_drawdown_yesterday
    else:
        drawdown = Decimal(0)
    return DailySummary(
        ts_ms=now_ms,
        day=time.strftime("%Y-%m-%d", time.gmtime(start // 1000)),
        net_pnl=sum((e.net for e in trades), Decimal(0)),
        fees=sum((e.fees for e in trades), Decimal(0)),
        trades=len(trades),
        drawdown_pct=drawdown,
    )
