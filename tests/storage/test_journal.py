"""The event journal: what is published is stored, even when the process dies before SQLite saw it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from engine.events import EventBus, HaltRaised, StopPlaced
from storage.db import Database
from storage.journal import EventJournal, journal_path_for
from storage.repos import EventLog
from tests.conftest import ROOT


def stop_event(i: int) -> StopPlaced:
    return StopPlaced(ts_ms=1_700_000_000_000 + i, symbol="ETHUSDTM", order_id=f"o{i}", price=Decimal("1999.5") + i)


async def test_published_events_reach_sqlite_in_order_and_the_file_empties(tmp_path: Path) -> None:
    db_path = tmp_path / "e.sqlite"
    async with Database(db_path) as db:
        journal = EventJournal(db, journal_path_for(db_path))
        assert await journal.open() == 0
        bus = EventBus(recorder=journal.record)
        for i in range(250):
            bus.publish(stop_event(i))
        assert journal_path_for(db_path).read_text().count("\n") == 250  # on disk before any await
        await journal.flush()
        rows = await db.fetchall("SELECT seq, kind, payload FROM events ORDER BY id")
        assert [r["seq"] for r in rows] == list(range(1, 251))
        assert json.loads(rows[7]["payload"])["price"] == "2006.5"
        restored = await EventLog(db).recent(limit=1)
        assert restored == [stop_event(249)]
        assert journal_path_for(db_path).stat().st_size == 0
        await journal.close()
        # A second run continues the sequence instead of colliding with it.
        journal = EventJournal(db, journal_path_for(db_path))
        await journal.open()
        journal.record(stop_event(999))
        await journal.close()
        row = await db.fetchone("SELECT MAX(seq), COUNT(*) FROM events")
        assert row is not None and (row[0], row[1]) == (251, 251)


CRASHER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from decimal import Decimal
    from pathlib import Path
    from engine.events import EventBus, OrderPlaced
    from storage.db import Database
    from storage.journal import EventJournal, journal_path_for

    async def main() -> None:
        db_path = Path(sys.argv[1])
        async with Database(db_path) as db:
            journal = EventJournal(db, journal_path_for(db_path))
            await journal.open()
            bus = EventBus(recorder=journal.record)
            for i in range(40):
                bus.publish(OrderPlaced(ts_ms=i, symbol="ETHUSDTM", client_oid=f"c{i}", order_id=f"o{i}",
                                        purpose="entry", side="buy", lots=i + 1, price=Decimal("2000.25")))
            await journal.flush()  # the first 40 are stored ...
            for i in range(40, 100):
                bus.publish(OrderPlaced(ts_ms=i, symbol="ETHUSDTM", client_oid=f"c{i}", order_id=f"o{i}",
                                        purpose="entry", side="buy", lots=i + 1, price=Decimal("2000.25")))
            os.kill(os.getpid(), signal.SIGKILL)  # ... the other 60 only journaled

    asyncio.run(main())
    """
)


async def test_events_journaled_before_a_sigkill_are_stored_once_after_restart(tmp_path: Path) -> None:
    db_path = tmp_path / "e.sqlite"
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHER, str(db_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    async with Database(db_path) as db:
        row = await db.fetchone("SELECT COUNT(*) FROM events")
        assert row is not None and row[0] == 40  # SQLite alone lost 60
        journal = EventJournal(db, journal_path_for(db_path))
        assert await journal.open() == 60
        rows = await db.fetchall("SELECT seq, payload FROM events ORDER BY seq")
        assert [r["seq"] for r in rows] == list(range(1, 101))
        lots = [json.loads(r["payload"])["lots"] for r in rows]
        assert lots == list(range(1, 101))  # every event once, none doubled
        await journal.close()
        # Recovering again (the file was emptied) changes nothing.
        journal = EventJournal(db, journal_path_for(db_path))
        assert await journal.open() == 0
        await journal.close()
        row = await db.fetchone("SELECT COUNT(*) FROM events")
        assert row is not None and row[0] == 100


async def test_lines_already_stored_are_not_stored_twice_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    db_path = tmp_path / "e.sqlite"
    path = journal_path_for(db_path)
    async with Database(db_path) as db:
        journal = EventJournal(db, path)
        await journal.open()
        journal.record(stop_event(1))
        journal.record(stop_event(2))
        await journal.flush()
        await journal.close()
        # A crash right after the insert but before the file was emptied, with a third line cut in half.
        lines = [
            json.dumps({"seq": s, "ts_ms": e.ts_ms, "kind": e.kind, "payload": json.dumps(e.to_dict())})
            for s, e in ((1, stop_event(1)), (2, stop_event(2)), (3, stop_event(3)))
        ]
        path.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2] + "\n" + lines[2][:25])
        journal = EventJournal(db, path)
        assert await journal.open() == 3
        assert journal.torn_lines == 1
        await journal.close()
        rows = await db.fetchall("SELECT seq FROM events ORDER BY seq")
        assert [r["seq"] for r in rows] == [1, 2, 3]


async def test_a_failing_database_delays_events_but_never_drops_them(tmp_path: Path) -> None:
    db_path = tmp_path / "e.sqlite"
    async with Database(db_path) as db:
        await db.conn.executescript(
            "CREATE TABLE refuse (on_ INTEGER); INSERT INTO refuse VALUES (1);"
            "CREATE TRIGGER no_events BEFORE INSERT ON events WHEN (SELECT on_ FROM refuse) = 1 "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END;"
        )
        journal = EventJournal(db, journal_path_for(db_path), retry_delay_s=0.05)
        await journal.open()
        bus = EventBus(recorder=journal.record)
        bus.publish(HaltRaised(ts_ms=1, limit="daily_loss", value="-3.1", threshold="-3"))
        await asyncio.sleep(0.3)  # several failed attempts
        row = await db.fetchone("SELECT COUNT(*) FROM events")
        assert row is not None and row[0] == 0
        assert journal_path_for(db_path).read_text().count("\n") == 1  # still safe on disk
        await db.execute("UPDATE refuse SET on_ = 0")
        await asyncio.wait_for(journal.flush(), timeout=5)
        await journal.close()
        stored = await EventLog(db).recent()
        assert [e.kind for e in stored] == ["halt_raised"]
        assert journal_path_for(db_path).stat().st_size == 0


async def test_record_before_open_is_an_error(tmp_path: Path) -> None:
    async with Database(tmp_path / "e.sqlite") as db:
        journal = EventJournal(db, tmp_path / "j")
        with pytest.raises(RuntimeError, match="not open"):
            journal.record(stop_event(1))


async def test_a_journal_that_cannot_be_opened_fails_at_start_not_later(tmp_path: Path) -> None:
    async with Database(tmp_path / "e.sqlite") as db:
        where = tmp_path / "journal-dir"
        where.mkdir()  # a directory where the file should be
        journal = EventJournal(db, where)
        with pytest.raises(OSError):
            await journal.open()
        with pytest.raises(RuntimeError, match="not open"):  # a journal that failed to open refuses events
            journal.record(stop_event(1))


async def test_a_failing_database_or_journal_file_turns_health_not_ready_and_back(tmp_path: Path) -> None:
    """Before, nothing ever set Health.storage_ok: with SQLite refusing every insert (disk full, read-only file) or
    the journal file unwritable, /health/ready stayed green and only the log said so."""
    from engine.runtime.http import Health

    db_path = tmp_path / "e.sqlite"
    async with Database(db_path) as db:
        await db.conn.executescript(
            "CREATE TABLE refuse (on_ INTEGER); INSERT INTO refuse VALUES (1);"
            "CREATE TRIGGER no_events BEFORE INSERT ON events WHEN (SELECT on_ FROM refuse) = 1 "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
        )
        journal = EventJournal(db, journal_path_for(db_path), retry_delay_s=0.05)
        await journal.open()
        health = Health(last_candle_ms=1, stream_connected=True, last_signed_call_ms=1, storage_probe=journal.problem)
        assert health.ready(2)[1]["storage_ok"] is True
        bus = EventBus(recorder=journal.record)
        bus.publish(HaltRaised(ts_ms=1, limit="daily_loss", value="-3.1", threshold="-3"))
        await asyncio.sleep(0.2)
        ok, checks = health.ready(2)
        assert not ok and checks["storage_ok"] is False
        assert "database or disk is full" in checks["storage_detail"]
        await db.execute("UPDATE refuse SET on_ = 0")
        await asyncio.wait_for(journal.flush(), timeout=5)
        ok, checks = health.ready(2)
        assert ok and checks["storage_ok"] is True and "storage_detail" not in checks
        # The journal file cannot be written (disk full): the event still reaches SQLite, health says so.
        assert journal._fd is not None
        os.close(journal._fd)
        journal._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails with EBADF
        bus.publish(stop_event(1))
        assert health.ready(2)[1]["storage_ok"] is False
        assert "journal" in health.ready(2)[1]["storage_detail"]
        # Emptying the file fails too: before, that exception ended the journal's task, and no event published
        # after it ever reached SQLite (flush waited for ever).
        await asyncio.wait_for(journal.flush(), timeout=5)
        bus.publish(stop_event(2))
        await asyncio.wait_for(journal.flush(), timeout=5)
        await journal.close()
        assert await EventLog(db).count() == 3


REFUSE_EVENTS = (
    "CREATE TABLE refuse (on_ INTEGER); INSERT INTO refuse VALUES (1);"
    "CREATE TRIGGER no_events BEFORE INSERT ON events WHEN (SELECT on_ FROM refuse) = 1 "
    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
)


async def test_a_long_database_outage_keeps_memory_bounded_and_stores_every_event_once(tmp_path: Path) -> None:
    """Before, every event published while SQLite refused writes stayed in memory until it took them again: 3,000
    events held 3,000 rows (a day of outage on 542 symbols: ~156,000 decision records and their JSON). Now at most
    ``max_pending`` wait in memory, the rest only in the journal file, read back in batches after recovery."""
    from prometheus_client import generate_latest

    from engine.runtime.http import Health, Metrics

    db_path = tmp_path / "e.sqlite"
    async with Database(db_path) as db:
        await db.conn.executescript(REFUSE_EVENTS)
        journal = EventJournal(db, journal_path_for(db_path), retry_delay_s=0.02, max_pending=50)
        await journal.open()
        health = Health(last_candle_ms=1, stream_connected=True, last_signed_call_ms=1, storage_probe=journal.problem)
        metrics = Metrics()
        metrics.event_backlog.set_function(journal.backlog)
        bus = EventBus(recorder=journal.record)
        most = 0
        for i in range(3_000):
            bus.publish(stop_event(i))
            most = max(most, len(journal._pending))
            if i % 500 == 0:
                await asyncio.sleep(0.03)  # the store task tries (and fails) in between
        assert most == 50  # before: 3,000
        assert journal.backlog() == 3_000
        assert b"enygma_event_backlog 3000.0" in generate_latest(metrics.registry)
        ok, checks = health.ready(2)
        assert not ok and "(3000 events waiting)" in checks["storage_detail"]
        assert journal_path_for(db_path).read_text().count("\n") == 3_000  # every one safe on disk
        assert await EventLog(db).count() == 0

        await db.execute("UPDATE refuse SET on_ = 0")  # the database is back
        sampling = True

        async def sample() -> None:  # memory stays bounded while the file is read back, too
            nonlocal most
            while sampling:
                most = max(most, len(journal._pending))
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        await asyncio.sleep(0)
        for i in range(3_000, 3_040):  # published during the catch-up: neither lost nor doubled
            bus.publish(stop_event(i))
            await asyncio.sleep(0)
        await asyncio.wait_for(journal.flush(), timeout=20)
        sampling = False
        await sampler
        assert most <= 50
        rows = await db.fetchall("SELECT seq, payload FROM events ORDER BY seq")
        assert [r["seq"] for r in rows] == list(range(1, 3_041))  # each exactly once
        assert [json.loads(r["payload"])["order_id"] for r in rows] == [f"o{i}" for i in range(3_040)]
        assert journal.backlog() == 0 and journal.problem() is None
        assert health.ready(2)[1]["storage_ok"] is True
        assert journal_path_for(db_path).stat().st_size == 0
        # Memory-only again once caught up.
        bus.publish(stop_event(5_000))
        await journal.flush()
        assert await EventLog(db).count() == 3_041
        await journal.close()


async def test_events_spilled_to_the_file_survive_a_crash_and_are_recovered_in_bounded_batches(tmp_path: Path) -> None:
    db_path = tmp_path / "e.sqlite"
    async with Database(db_path) as db:
        await db.conn.executescript(REFUSE_EVENTS)
        journal = EventJournal(db, journal_path_for(db_path), retry_delay_s=0.02, max_pending=40)
        await journal.open()
        for i in range(700):
            journal.record(stop_event(i))
        await asyncio.sleep(0.05)
        assert len(journal._pending) == 40 and journal.backlog() == 700
        assert journal._task is not None
        journal._task.cancel()  # the process dies: nothing of memory survives, the file does
        with contextlib.suppress(asyncio.CancelledError):
            await journal._task
        await db.execute("UPDATE refuse SET on_ = 0")
        again = EventJournal(db, journal_path_for(db_path), max_pending=40)
        assert await again.open() == 700
        rows = await db.fetchall("SELECT seq FROM events ORDER BY seq")
        assert [r["seq"] for r in rows] == list(range(1, 701))
        await again.close()


async def test_an_unwritable_journal_and_a_full_memory_count_lost_events_instead_of_growing(tmp_path: Path) -> None:
    """Both the database and the journal file refuse (the one disk is full): memory is the only copy, and it is
    bounded all the same. What does not fit is counted and reported on /health/ready, never silent."""
    db_path = tmp_path / "e.sqlite"
    async with Database(db_path) as db:
        await db.conn.executescript(REFUSE_EVENTS)
        journal = EventJournal(db, journal_path_for(db_path), retry_delay_s=0.02, max_pending=10)
        await journal.open()
        assert journal._fd is not None
        os.close(journal._fd)
        journal._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails with EBADF
        for i in range(25):
            journal.record(stop_event(i))
        assert len(journal._pending) == 10 and journal.lost == 15
        problem = journal.problem()
        assert problem is not None and "15 events lost" in problem and "cannot be written" in problem
        await db.execute("UPDATE refuse SET on_ = 0")
        await asyncio.wait_for(journal.flush(), timeout=5)
        rows = await db.fetchall("SELECT seq FROM events ORDER BY seq")
        assert [r["seq"] for r in rows] == list(range(1, 11))  # the first ten, kept in memory, are stored
        await journal.close()
