"""Months of running: the per-bar decision records are the one table that grows with the universe (measured: 542
symbols x 288 bars = 156,096 rows and ~88 MB a day from the summaries alone, ~2.6 GB a month, with no way to
prune). Older ones are deleted in small batches; trade history is kept."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.events import PositionClosed, SignalEvaluated
from storage.db import Database
from storage.journal import EventJournal, journal_path_for
from storage.repos import EventLog

DAY = 86_400_000
NOW = 1_800_000_000_000


async def test_decisions_older_than_the_retention_are_pruned_trades_are_kept(tmp_path: Path) -> None:
    db_path = tmp_path / "e.sqlite"
    async with Database(db_path) as db:
        journal = EventJournal(db, journal_path_for(db_path))
        await journal.open()
        for day in range(10):
            for i in range(120):
                journal.record(
                    SignalEvaluated(ts_ms=NOW - day * DAY - i, symbol=f"S{i}USDTM", decision={"passed": False})
                )
        old_close = PositionClosed(
            ts_ms=NOW - 9 * DAY,
            symbol="ETHUSDTM",
            side="long",
            exit_reason="stop",
            entry=Decimal("2000.5"),
            exit=Decimal("1990.25"),
            gross=Decimal("-10.25"),
            fees=Decimal("0.1"),
            funding=Decimal("0"),
            net=Decimal("-10.35"),
        )
        journal.record(old_close)
        await journal.flush()
        log = EventLog(db)
        assert await log.count("signal_evaluated") == 1200
        removed = await log.prune_decisions(before_ms=NOW - 7 * DAY + 1, batch=50)  # days 7, 8, 9 go
        assert removed == 360
        assert await log.count("signal_evaluated") == 840
        assert await log.recent(kind="position_closed") == [old_close]  # trade history is never pruned
        assert await log.prune_decisions(before_ms=NOW - 7 * DAY + 1) == 0  # twice is a no-op
        await journal.close()


async def test_sent_telegram_messages_older_than_the_retention_are_pruned_pending_ones_kept(tmp_path: Path) -> None:
    """Every notification ever sent stayed in the outbox table for good (one row per message, stop moves included)."""
    from bot.outbox import Outbox

    clock = [NOW - 10 * DAY]
    async with Database(tmp_path / "e.sqlite") as db:
        outbox = Outbox(db, clock=lambda: clock[0])
        for day in range(10):
            clock[0] = NOW - (9 - day) * DAY
            for i in range(30):
                await outbox.enqueue(42, f"day {day} message {i}")
        rows = await db.fetchall("SELECT id, text FROM outbox ORDER BY id")
        for row in rows:
            if not row["text"].endswith("message 0"):  # one a day never got through: it stays, whatever its age
                await outbox.sent(row["id"], 1_000 + row["id"])
        clock[0] = NOW
        removed = await outbox.prune_sent(before_ms=NOW - 7 * DAY + 1, batch=7)
        assert removed == 3 * 29
        rows = await db.fetchall("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state ORDER BY state")
        assert [(r["state"], r["n"]) for r in rows] == [("pending", 10), ("sent", 7 * 29)]


async def test_recent_events_of_a_kind_since_an_instant(tmp_path: Path) -> None:
    """The engine's restart, the daily summary and /pnl ask for the closes since an instant: the database filters."""
    async with Database(tmp_path / "e.sqlite") as db:
        log = EventLog(db)
        for day in range(5):
            await log.append(
                PositionClosed(
                    ts_ms=NOW - day * DAY,
                    symbol="ETHUSDTM",
                    side="long",
                    exit_reason="stop_loss",
                    entry=Decimal("2000"),
                    exit=Decimal("1990"),
                    gross=Decimal(-10),
                    fees=Decimal(1),
                    funding=Decimal(0),
                    net=Decimal(-11),
                )
            )
        since = await log.recent(100, kind="position_closed", since_ms=NOW - 2 * DAY)
        assert sorted(e.ts_ms for e in since) == [NOW - 2 * DAY, NOW - DAY, NOW]  # the instant itself included
        assert len(await log.recent(100, kind="position_closed")) == 5
