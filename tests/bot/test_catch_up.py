"""Events journaled before an unclean stop whose message never reached the outbox: the start queues them, marked
late, once, by the outbox's own rules (cards, stop-move coalescing, the backlog cap), through the real
python-telegram-bot library and the fake Bot API server. The SIGKILL itself is in tests/chaos/test_sigkill.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from bot.formatting import late_note
from bot.outbox import BACKLOG_CAP
from bot.service import CATCH_UP_MAX, CURSOR_EVERY_S, TelegramService, catch_up_skipped_text
from engine.events import (
    ApprovalResolved,
    Event,
    EventBus,
    HaltRaised,
    HealthChanged,
    SignalEvaluated,
    StopMoved,
)
from engine.runtime.app import Gate, _after, _catch_up
from storage.db import Database
from storage.journal import EventJournal, journal_path_for
from storage.repos import TelegramCursors
from tests.bot.fake_telegram import FakeTelegram
from tests.bot.test_cockpit import OWNER, Control
from tests.bot.test_cockpit_faults import GROUP, build, card_event, closed, drained

TS = 1_800_000_000_000  # 2027-01-15 08:00:00 UTC
LATE = "<i>(delivered after a restart; happened at 2027-01-15 08:00:00 UTC)</i>"


@dataclass
class Run:
    """One run of the bot against the database: its journal and bus; ``telegram`` subscribed as the runtime does."""

    db: Database
    journal: EventJournal
    bus: EventBus
    telegram: TelegramService


@pytest.fixture
async def journal(db: Database, tmp_path: Path) -> AsyncIterator[EventJournal]:
    j = EventJournal(db, journal_path_for(tmp_path / "bot.sqlite"))
    await j.open()
    yield j
    await j.close()


async def start(tg: FakeTelegram, db: Database, journal: EventJournal, chats: tuple[int, ...] = (OWNER,)) -> Run:
    """What ``Runtime._run_with`` does: subscribe, catch up on the runs before, then let the bus hand events on."""
    earlier = journal.last_seq
    bus = EventBus(recorder=journal.record)
    svc = build(tg, db, Control(), chat_ids=chats)
    bus.subscribe_sequenced("telegram", svc.notify)
    await svc.catch_up(earlier, journal.last_seq)
    await bus.start()
    return Run(db, journal, bus, svc)


def crashed(run: Run, *events: Event) -> None:
    """Published, journaled, and the process died before the Telegram side saw them: the pump never runs."""
    for event in events:
        seq = run.journal.record(event)
        assert seq == run.journal.last_seq


async def restart(tg: FakeTelegram, run: Run, chats: tuple[int, ...] = (OWNER,)) -> Run:
    await run.journal.flush()  # (the next open() would store them from the file; here they are stored already)
    return await start(tg, run.db, run.journal, chats)


def texts(tg: FakeTelegram) -> list[str]:
    return [str(c.params["text"]) for c in tg.calls if c.method in ("sendMessage", "editMessageText")]


def halt(ts: int = TS) -> HaltRaised:
    return HaltRaised(ts_ms=ts, limit="daily_loss", value="-612.40", threshold="-600")


async def test_the_bus_hands_telegram_each_event_with_its_seq_and_the_row_keeps_it(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    run = await start(tg, db, journal)
    run.bus.publish(HealthChanged(ts_ms=TS, component="engine", healthy=True, detail="started"))
    run.bus.publish(halt())
    await run.bus.drain()
    rows = await db.fetchall("SELECT event_seq FROM outbox ORDER BY id")
    assert [r[0] for r in rows] == [1, 2]
    assert await TelegramCursors(db).get((OWNER,)) == {OWNER: 2}
    await run.bus.stop()


async def test_a_halt_lost_between_the_journal_and_the_outbox_is_sent_once_marked_late(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    first = await start(tg, db, journal)
    first.bus.publish(closed(-21))  # told on time
    await first.bus.drain()
    crashed(first, halt())
    second = await restart(tg, first)
    await second.telegram.start()
    try:
        await drained(second.telegram)
        assert len(texts(tg)) == 2
        assert "net -21.00" in texts(tg)[0] and "delivered after a restart" not in texts(tg)[0]
        assert texts(tg)[1] == f"🛑 <b>Halt: daily_loss</b> value -612.40, limit -600\n{LATE}"
    finally:
        await second.telegram.stop()
    third = await restart(tg, second)  # a clean start after that: nothing queued again
    assert await third.telegram.outbox.pending_count() == 0
    await second.bus.stop()


async def test_the_catch_up_keeps_the_backlog_cap_and_the_stop_move_coalescing(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    """A run that died with Telegram's queue far behind: 30 health flaps, 6 stop moves and a halt journaled, none
    in the outbox. They arrive as the live ones would have: the newest 20 flaps and a count of the 10 dropped, one
    stop message (the newest price), the halt; not 37 messages."""
    first = await start(tg, db, journal)
    flaps = [HealthChanged(ts_ms=TS, component="ws", healthy=i % 2 == 0, detail=f"flap {i}") for i in range(30)]
    moves = [
        StopMoved(ts_ms=TS, symbol="ETHUSDTM", old=Decimal(1990 + i), new=Decimal(1991 + i), reason="trailing")
        for i in range(6)
    ]
    crashed(first, *flaps[:15], *moves, *flaps[15:], halt())
    second = await restart(tg, first)
    assert await second.telegram.outbox.pending_count() == BACKLOG_CAP + 1 + 1 + 1
    await second.telegram.start()
    try:
        await drained(second.telegram, timeout=30)
        sent = texts(tg)
        assert len(sent) == 23
        assert [t.split(": ", 1)[1].split("\n")[0] for t in sent if "ws:" in t] == [f"flap {i}" for i in range(10, 30)]
        assert [t for t in sent if "🔒" in t] == [f"🔒 ETHUSDTM stop 1995.00 → <b>1996.00</b> (trailing)\n{LATE}"]
        assert sum("10 less urgent notifications" in t for t in sent) == 1
        assert all(t.endswith(LATE) for t in sent if "less urgent" not in t)
    finally:
        await second.telegram.stop()
        await second.bus.stop()


async def test_a_card_and_its_outcome_both_lost_make_one_card_with_the_outcome(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    first = await start(tg, db, journal)
    crashed(first, card_event("ap-9"), ApprovalResolved(ts_ms=TS, approval_id="ap-9", outcome="expired", detail=""))
    second = await restart(tg, first)
    await second.telegram.start()
    try:
        await drained(second.telegram)
        [card] = tg.sent()
        assert card["text"].startswith("🟡 <b>Approve LONG ETHUSDTM?</b>")
        assert card["text"].endswith(f"Approval ap-9: <b>expired</b>\n{LATE}")
        assert tg.sent("editMessageText") == [] and "reply_markup" not in card  # decided: no buttons
    finally:
        await second.telegram.stop()
        await second.bus.stop()


async def test_a_chat_that_had_the_message_gets_nothing_more_and_a_new_chat_nothing_old(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    """Two chats: the process died after the halt reached the owner's outbox row, before the group's. A third chat
    added to the configuration at the restart has no cursor: it gets no history."""
    first = await start(tg, db, journal, chats=(OWNER, GROUP))
    seq = first.journal.record(halt())
    await first.telegram.outbox.enqueue(OWNER, "🛑 halt, on time", event_seq=seq)
    second = await restart(tg, first, chats=(OWNER, GROUP, 333))
    rows = await db.fetchall("SELECT chat_id, text FROM outbox ORDER BY id")
    assert [(r[0], r[1].endswith(LATE)) for r in rows] == [(OWNER, False), (GROUP, True)]
    cursors = await TelegramCursors(db).get((OWNER, GROUP, 333))
    assert cursors == {OWNER: seq, GROUP: seq, 333: seq}
    await second.bus.stop()


async def test_what_makes_no_message_is_not_sent_late_and_moves_the_cursor_now_and_then(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    first = await start(tg, db, journal)
    quiet = SignalEvaluated(ts_ms=TS, symbol="ETHUSDTM", decision={"symbol": "ETHUSDTM", "passed": False})
    first.bus.publish(quiet)
    await first.bus.drain()
    assert await TelegramCursors(db).get((OWNER,)) == {OWNER: 0}  # a minute has not passed
    first.telegram._cursor_moved_s = time.monotonic() - CURSOR_EVERY_S
    first.bus.publish(quiet)
    await first.bus.drain()
    assert await TelegramCursors(db).get((OWNER,)) == {OWNER: 2}
    crashed(first, quiet, StopMoved(ts_ms=TS, symbol="ETHUSDTM", old=Decimal(1990), new=Decimal(1990), reason="x"))
    second = await restart(tg, first)
    assert await second.telegram.outbox.pending_count() == 0
    assert await TelegramCursors(db).get((OWNER,)) == {OWNER: 4}
    await first.bus.stop()


async def test_a_run_without_telegram_leaves_nothing_to_send_late(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    """Telegram on, then a run without it (its events are nobody's messages), then on again: none of the run
    without Telegram is sent late. A bot that never had Telegram writes nothing."""
    first = await start(tg, db, journal)
    crashed(first, halt())
    await TelegramCursors(db).forget()  # the run without Telegram, at its start
    crashed(first, halt(TS + 1))
    second = await restart(tg, first)
    assert await second.telegram.outbox.pending_count() == 0
    assert await TelegramCursors(db).get((OWNER,)) == {OWNER: 2}
    await second.bus.stop()
    await TelegramCursors(db).forget()
    changes = db.conn.total_changes
    await TelegramCursors(db).forget()
    assert db.conn.total_changes == changes


async def test_cursors_ahead_of_the_events_a_restored_backup_are_set_back_to_the_start(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    """A database restored from a backup older than its cursors (events up to seq 2, cursor 1000): kept at 1000,
    the next crash's events (seq 3...) would never be caught up."""
    crashed(Run(db, journal, EventBus(), build(tg, db, Control())), halt(), halt(TS + 1))
    await TelegramCursors(db).advance((OWNER,), 1000)
    run = await restart(tg, Run(db, journal, EventBus(), build(tg, db, Control())))
    assert await TelegramCursors(db).get((OWNER,)) == {OWNER: 2}
    crashed(run, halt(TS + 2))
    second = await restart(tg, run)
    rows = await db.fetchall("SELECT event_seq FROM outbox")
    assert [r[0] for r in rows] == [3]
    await run.bus.stop()
    await second.bus.stop()


async def test_a_chat_taken_out_of_the_configuration_and_put_back_gets_no_history(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    """The group is taken out of TELEGRAM_CHAT_IDS for a while, then put back. Its cursor, left where it was, made
    the start after that send it every message of the runs without it, marked late (here 300 halts and closes,
    flooding the chat); a chat put back is a chat just added: no history, only what happens from then on."""
    first = await start(tg, db, journal, chats=(OWNER, GROUP))
    first.bus.publish(halt())
    await first.bus.drain()
    await first.bus.stop()
    without = await restart(tg, first, chats=(OWNER,))
    for n in range(150):
        without.bus.publish(halt(TS + n))
        without.bus.publish(closed(-n))
    await without.bus.drain()
    await without.bus.stop()
    assert await without.telegram.outbox.pending_count() == 302  # the first halt for both, 300 for the owner
    back = await restart(tg, without, chats=(OWNER, GROUP))
    group = await db.fetchall("SELECT COUNT(*) FROM outbox WHERE chat_id = ?", (GROUP,))
    assert group[0][0] == 1  # the halt told on time before it left, nothing of the runs without it
    assert await TelegramCursors(db).get((OWNER, GROUP)) == {OWNER: 301, GROUP: 301}
    await back.bus.stop()


async def test_a_long_untold_backlog_sends_the_newest_late_and_one_line_for_the_older(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    """70 halts journaled and never in the outbox (a long outage, then a crash). Before, every one was queued at
    the start, one INSERT each (200,000 held the start 52 s) and sent a second apart; now the newest CATCH_UP_MAX
    are, marked late, after one line that says how many older ones were not. The group had the first 60 already:
    it owes 10, gets those 10 and no such line. A restart after that queues nothing more."""
    first = await start(tg, db, journal, chats=(OWNER, GROUP))
    crashed(first, *(halt(TS + n) for n in range(70)))
    await TelegramCursors(db).advance((GROUP,), 60)
    second = await restart(tg, first, chats=(OWNER, GROUP))
    assert await second.telegram.catch_up(journal.last_seq, journal.last_seq) == 0  # (the restart did it already)
    owner = [r[0] for r in await db.fetchall("SELECT text FROM outbox WHERE chat_id = ? ORDER BY id", (OWNER,))]
    assert len(owner) == CATCH_UP_MAX + 1 == 41
    assert owner[0] == catch_up_skipped_text(70 - CATCH_UP_MAX)
    assert owner[0].startswith("📭 30 older messages were not re-sent; see /status or the log.")
    assert [t.split("\n")[1] for t in owner[1:]] == [late_note(TS + n) for n in range(30, 70)]
    group = await db.fetchall("SELECT event_seq FROM outbox WHERE chat_id = ? ORDER BY id", (GROUP,))
    assert [r[0] for r in group] == list(range(61, 71))
    assert await TelegramCursors(db).get((OWNER, GROUP)) == {OWNER: 70, GROUP: 70}
    await second.bus.stop()
    third = await restart(tg, second, chats=(OWNER, GROUP))
    assert await third.telegram.outbox.pending_count() == 41 + 10
    await third.bus.stop()


async def test_this_runs_events_wait_for_the_background_catch_up_and_a_stop_before_its_end_owes_them_late(
    tg: FakeTelegram, db: Database, journal: EventJournal
) -> None:
    """The runtime's gate (``app._after`` and ``app._catch_up``): the Telegram subscriber is on the bus from its
    start and the catch-up runs beside the start. A halt published before the catch-up ran waits, then follows the
    untold one of the run before, on time. A run stopped while its catch-up is under way queues none of its own
    (queued, they would move the cursor past what was not caught up): the next start sends both, late, once."""
    first = await start(tg, db, journal)
    crashed(first, halt(TS))
    await journal.flush()

    async def gated(svc: TelegramService) -> tuple[EventBus, Gate, int]:
        earlier, queued = journal.last_seq, await svc.outbox.pending_count()
        ready: Gate = asyncio.get_running_loop().create_future()
        bus = EventBus(recorder=journal.record)
        bus.subscribe_sequenced("telegram", _after(ready))
        await bus.start()
        bus.publish(halt(TS + 9))  # the start's own event, before the service caught up
        await asyncio.sleep(0.05)
        assert await svc.outbox.pending_count() == queued  # it waits for the catch-up
        return bus, ready, earlier

    svc = build(tg, db, Control())
    bus, ready, earlier = await gated(svc)
    await _catch_up(svc.catch_up(earlier, earlier), ready, svc.notify, "telegram")
    await bus.drain()
    rows = await db.fetchall("SELECT event_seq, text FROM outbox ORDER BY id")
    assert [(r[0], r[1].endswith(LATE)) for r in rows] == [(1, True), (2, False)]
    await bus.stop()

    crashed(first, halt(TS + 2))  # seq 3, untold
    await journal.flush()
    svc = build(tg, db, Control())
    bus, ready, earlier = await gated(svc)  # seq 4 waits
    task = asyncio.create_task(_catch_up(svc.catch_up(earlier, earlier), ready, svc.notify, "telegram"))
    await asyncio.sleep(0)  # under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ready.result() is None
    await bus.drain()
    await bus.stop()
    assert await svc.outbox.pending_count() == 2  # nothing of that run queued
    await journal.flush()
    third = await restart(tg, Run(db, journal, bus, svc))
    rows = await db.fetchall("SELECT event_seq, text FROM outbox ORDER BY id")
    assert [(r[0], r[1].endswith(LATE)) for r in rows] == [(1, True), (2, False), (3, True), (4, True)]
    await third.bus.stop()
