"""Telegram unreachable for minutes while the engine keeps trading, through the real python-telegram-bot library
and the fake Bot API server: what piles up in the outbox meanwhile, and what the trader gets first once Telegram
answers again."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import structlog.testing

from bot.outbox import BACKLOG_CAP, GIVE_UP_ATTEMPTS
from bot.service import TelegramService
from engine.events import ApprovalResolved, HaltRaised, HealthChanged, StopMoved, StreamReconnected
from storage.db import Database
from tests.bot.fake_telegram import FakeTelegram, outcome
from tests.bot.test_cockpit import OWNER, Control
from tests.bot.test_cockpit_faults import GROUP, build, card_event, closed, drained


def halt() -> HaltRaised:
    return HaltRaised(ts_ms=99, limit="daily_loss", value="-612.40", threshold="-600")


async def test_a_trailing_stop_during_an_outage_does_not_bury_the_halt_behind_it(
    tg: FakeTelegram, db: Database
) -> None:
    """A trailing stop moved 40 times while Telegram was down (the bot could not even start). Each move waited in
    the outbox as its own message: on recovery the chat got one stop message and 39 edits of it, one a second,
    before the halt raised after them; 40 s of a stale stop price and a halt nobody saw."""
    svc = build(tg, db, Control())
    for i in range(40):
        await svc.notify(
            StopMoved(ts_ms=i, symbol="ETHUSDTM", old=Decimal(1990 + i), new=Decimal(1991 + i), reason="trailing")
        )
    await svc.notify(halt())
    assert await svc.outbox.pending_count() == 2  # the latest stop and the halt; the 39 older stops say nothing new
    await svc.start()
    try:
        await drained(svc, timeout=30)
        calls = [c for c in tg.calls if c.method in ("sendMessage", "editMessageText")]
        assert len(calls) == 2
        stop, halted = calls[0].params["text"], calls[1].params["text"]
        assert "→ <b>2030.00</b>" in stop and "Halt: daily_loss" in halted
    finally:
        await svc.stop()


async def test_stop_moves_of_two_symbols_and_other_news_keep_their_place(tg: FakeTelegram, db: Database) -> None:
    """Only a newer move of the same symbol replaces a queued one; another symbol's stop and a close stay queued."""
    svc = build(tg, db, Control())
    await svc.notify(StopMoved(ts_ms=1, symbol="ETHUSDTM", old=Decimal(1990), new=Decimal(1995), reason="be"))
    await svc.notify(StopMoved(ts_ms=2, symbol="XBTUSDTM", old=Decimal(90000), new=Decimal(90500), reason="be"))
    await svc.notify(closed(-21, symbol="SOLUSDTM"))
    await svc.notify(StopMoved(ts_ms=3, symbol="ETHUSDTM", old=Decimal(1995), new=Decimal(1999), reason="trail"))
    await svc.start()
    try:
        await drained(svc)
        texts = [m["text"] for m in tg.sent()]
        assert len(texts) == 3 and "90500" in texts[0] and "SOLUSDTM" in texts[1] and "1999" in texts[2]
        assert not any("1995</b>" in t for t in texts)
    finally:
        await svc.stop()


async def test_after_minutes_of_outage_the_backlog_arrives_at_once_and_in_order(tg: FakeTelegram, db: Database) -> None:
    """Five minutes of 502s from Telegram, then it answers again. Every failure counted as the message's own, so
    after five of them each queued message stopped holding back the next: they were all tried in turn, each then
    waited its own backoff (up to 60 s), and on recovery they arrived in whatever order their backoffs ended, the
    close of -21.00 last, up to a minute late. An outage is Telegram's, not the message's: the oldest is tried again
    (at least every 10 s) and the others wait behind it, in order."""
    now = [1_800_000_000_000]
    svc = build(tg, db, Control())
    svc.outbox.clock = lambda: now[0]  # virtual time: five minutes of outage in a few real seconds
    tg.fail_5xx["sendMessage"] = 10**6
    await svc.start()
    try:
        for net in (-21, -22, -23):
            await svc.notify(closed(net))
        for _ in range(300):
            now[0] += 1000
            await asyncio.sleep(0.01)
        attempts = [r[0] for r in await db.fetchall("SELECT attempts FROM outbox WHERE state = 'pending' ORDER BY id")]
        assert svc.sender.unreachable_chats == 1  # /metrics: enygma_telegram_unreachable_chats
        tg.fail_5xx["sendMessage"] = 0  # Telegram is back
        back, arrived = now[0], {}
        async with asyncio.timeout(30):
            while len(tg.sent()) < 3:
                now[0] += 250
                await asyncio.sleep(0.01)
                for m in tg.sent():
                    arrived.setdefault(m["text"].split("net ")[1][:6], now[0] - back)
        order = [m["text"].split("net ")[1][:6] for m in tg.sent()]
        assert order == ["-21.00", "-22.00", "-23.00"], (order, arrived, attempts)
        assert svc.sender.unreachable_chats == 0
        # Retried at least every 10 s; the sender looks for due messages every 0.2 s of real time, 5 s of this clock.
        assert max(arrived.values()) <= 30_000, (arrived, attempts)
    finally:
        await svc.stop()


async def test_a_long_outage_keeps_the_backlog_short_and_says_what_it_dropped(tg: FakeTelegram, db: Database) -> None:
    """An hour without Telegram on a busy bot: 150 stream reconnects and 150 health flaps (the network that cut
    Telegram off cut the exchange's stream too), then a position closed at -21.00 and a halt. Everything waited;
    on recovery the chat got 300 messages of old noise, one a second, and the close and the halt five minutes
    later. Now the noise waiting per chat is capped (the oldest give way), one message says how much was dropped,
    and what matters (fills, stops, halts, approvals) is never dropped."""
    svc = build(tg, db, Control())
    for i in range(150):
        await svc.notify(StreamReconnected(ts_ms=i, stream="public", reconnects=i + 1))
        await svc.notify(HealthChanged(ts_ms=i, component="market_data", healthy=i % 2 == 1, detail=f"flap {i}"))
    await svc.notify(closed(-21))
    await svc.notify(halt())
    assert await svc.outbox.pending_count() == BACKLOG_CAP + 3  # the newest noise, the summary, the close, the halt
    assert svc.outbox.dropped == 300 - BACKLOG_CAP
    await svc.start()
    try:
        await drained(svc, timeout=30)
        texts = [m["text"] for m in tg.sent()]
        assert len(texts) == BACKLOG_CAP + 3
        assert "net -21.00" in texts[-2] and "Halt: daily_loss" in texts[-1]
        summary = next(t for t in texts if t.startswith("📭"))
        assert f"{300 - BACKLOG_CAP} less urgent notifications" in summary
        assert "flap 149" in "".join(texts) and "flap 0" not in "".join(texts)  # the newest kept, the oldest gone
    finally:
        await svc.stop()


async def test_what_matters_is_never_dropped_however_long_the_outage(tg: FakeTelegram, db: Database) -> None:
    svc = build(tg, db, Control())
    for i in range(3 * BACKLOG_CAP):
        await svc.notify(closed(-i))
        await svc.notify(StreamReconnected(ts_ms=i, stream="public", reconnects=i + 1))
    assert svc.outbox.dropped == 2 * BACKLOG_CAP
    assert await svc.outbox.pending_count() == 3 * BACKLOG_CAP + BACKLOG_CAP + 1


async def test_a_chat_that_blocked_the_bot_is_not_retried_for_ever(tg: FakeTelegram, db: Database) -> None:
    """A group the bot was removed from (or a private chat that blocked it) answers 403 to every message. Each was
    retried every minute for ever: after five refusals a message stopped holding back the next, so a day's 300
    messages meant 300 requests and 300 error lines a minute, and a table that only grew. A message Telegram refused
    GIVE_UP_ATTEMPTS times is now dropped, logged and counted; the other chats are not affected."""
    tg.forbidden_chats.add(GROUP)
    tg.fail_5xx["sendMessage"] = 1  # the first attempt, to the group, meets a 502 before the 403s
    svc = build(tg, db, Control(), chat_ids=(GROUP, OWNER))
    svc.sender.backoff_cap_s = 0.01  # retry fast: the test is about when to stop, not the backoff
    await svc.start()
    try:
        for net in range(10):
            await svc.notify(closed(-net))
        await drained(svc, timeout=30)
        assert len([m for m in tg.sent() if m["chat_id"] == OWNER]) == 10
        assert len(tg.forbidden_calls) == 10 * GIVE_UP_ATTEMPTS and svc.outbox.dropped == 10
        await asyncio.sleep(0.3)
        assert len(tg.forbidden_calls) == 10 * GIVE_UP_ATTEMPTS  # nothing is tried again
        assert svc.sender.unreachable_chats == 0  # a 403 is an answer: Telegram is reachable (it stayed at 1)
    finally:
        await svc.stop()


async def test_a_revoked_token_drops_nothing_while_the_operator_fixes_it(tg: FakeTelegram, db: Database) -> None:
    """401 Unauthorized answers every message alike (the token was revoked in @BotFather): it is not the message's
    fault, so nothing is given up on; the oldest message is tried again now and then and the rest wait in order."""
    svc = build(tg, db, Control())
    svc.sender.backoff_cap_s = 0.01
    await svc.start()
    token, tg.token = tg.token, "revoked"
    try:
        for net in (-21, -22, -23):
            await svc.notify(closed(net))
        await asyncio.sleep(3)  # long enough for 20 refusals of each at this backoff
        assert await svc.outbox.pending_count() == 3 and svc.outbox.dropped == 0
        tg.token = token
        await drained(svc, timeout=30)
        assert [m["text"].split("net ")[1][:6] for m in tg.sent()] == ["-21.00", "-22.00", "-23.00"]
    finally:
        tg.token = token
        await svc.stop()


async def test_a_second_process_polling_the_same_token_is_reported_in_the_chat(tg: FakeTelegram, db: Database) -> None:
    """Two bots on one token (an old container still running beside the new service) share the updates: a button
    press or a /killswitch reaches either. Telegram says so with 409 Conflict on getUpdates, which went only to a
    stdlib log line per poll. Now the chats are told, once (not once per poll)."""
    svc = await running_with_polling_conflicts(tg, db, conflicts=5)
    try:
        async with asyncio.timeout(20):
            while not any("Another program" in m["text"] for m in tg.sent()):
                await asyncio.sleep(0.05)
        while tg.conflicts:  # every conflicting poll has been answered
            await asyncio.sleep(0.05)
        tg.push_message(OWNER, "/help")  # polling goes on once the other process is gone
        await tg.wait_for("sendMessage", 2, timeout=20)
        warnings = [m for m in tg.sent() if "Another program" in m["text"]]
        assert len(warnings) == 1 and "TOKEN" in warnings[0]["text"].upper()
    finally:
        await svc.stop()


async def running_with_polling_conflicts(tg: FakeTelegram, db: Database, conflicts: int) -> TelegramService:
    tg.conflicts = conflicts
    svc = build(tg, db, Control())
    await svc.start()
    return svc


async def test_an_approval_that_expired_during_the_outage_goes_out_already_expired_without_buttons(
    tg: FakeTelegram, db: Database
) -> None:
    """The card was queued while Telegram answered 502, and the approval expired before it came back: the card went
    out with live Approve/Reject buttons and was edited to "expired" a moment later (1 send with buttons + 1 edit).
    Now one message goes out, with the card's details, the outcome and no buttons; a press of its old button data
    (a client that kept it) approves nothing."""
    control = Control()
    svc = build(tg, db, control)
    tg.fail_5xx["sendMessage"] = 10**6
    await svc.start()
    try:
        await svc.notify(card_event("ap-9"))
        await asyncio.sleep(0.3)  # tried and refused: Telegram is down
        await svc.notify(ApprovalResolved(ts_ms=2, approval_id="ap-9", outcome="expired"))
        assert await svc.outbox.pending_count() == 1
        tg.fail_5xx.clear()
        await drained(svc, timeout=30)
        await asyncio.sleep(0.3)
        sent, edits = tg.sent(), tg.sent("editMessageText")
        assert len(sent) == 1 and edits == []
        assert "reply_markup" not in sent[0]
        assert "179 lots" in sent[0]["text"] and outcome(sent[0]["text"]) == "Approval ap-9: <b>expired</b>"
        tg.push_callback(OWNER, "ap:ap-9:y")
        answer = (await tg.wait_for("answerCallbackQuery"))[-1]
        assert answer.get("text") == "expired" and control.executed == []
    finally:
        await svc.stop()


async def test_a_card_whose_outcome_comes_while_it_is_being_sent_is_edited_to_it(
    tg: FakeTelegram, db: Database
) -> None:
    """The card was on its way (a slow sendMessage) when the approval expired. The outcome replaces the queued card
    in place, so the send in flight must not mark the new text sent: without that check the outcome never went out
    and the card kept live buttons (the test timed out). Now the card that went out is edited to the outcome."""
    svc = build(tg, db, Control())
    tg.send_delay_s = 0.6
    await svc.start()
    try:
        await svc.notify(card_event("ap-9"))
        await asyncio.sleep(0.3)  # the send is in flight
        await svc.notify(ApprovalResolved(ts_ms=2, approval_id="ap-9", outcome="expired"))
        tg.send_delay_s = 0
        await drained(svc, timeout=10)
        sent = tg.sent()
        assert len(sent) == 1 and sent[0]["reply_markup"]["inline_keyboard"]  # it had left with its buttons
        edit = (await tg.wait_for("editMessageText"))[-1]
        assert outcome(edit["text"]) == "Approval ap-9: <b>expired</b>" and "179 lots" in edit["text"]
        assert "reply_markup" not in edit and tg.markups[(OWNER, edit["message_id"])] is None
    finally:
        await svc.stop()


async def test_polling_resumes_by_itself_once_telegram_takes_the_token_again(tg: FakeTelegram, db: Database) -> None:
    """The token was refused (401) for a while, then worked again (the operator undid the revocation): polling had
    ended for good on the first 401, and a /killswitch sent after the token worked again got no answer until the bot
    was restarted. Now polling keeps trying (PTB's backoff, at most 30 s apart), logs the refusal once, resumes on
    its own and tells the chat once; notifications queued meanwhile arrive too."""
    control = Control()
    svc = build(tg, db, control)
    await svc.start()
    token = tg.token
    try:
        with structlog.testing.capture_logs() as logs:
            tg.token = "revoked"
            await asyncio.sleep(4)  # several refused polls
            await svc.notify(closed(-21))  # the engine keeps going meanwhile
            tg.token = token
            tg.push_message(OWNER, "/killswitch")
            async with asyncio.timeout(20):
                while not any("Cancel every order" in m["text"] for m in tg.sent()):
                    await asyncio.sleep(0.05)
            await drained(svc)
        refused = [e for e in logs if e["event"] == "telegram.token_refused"]
        accepted = [e for e in logs if e["event"] == "telegram.token_accepted"]
        assert len(refused) == 1 and len(accepted) == 1 and accepted[0]["refused_s"] >= 3
        told = [m for m in tg.sent() if "refused this bot's token" in m["text"]]
        assert len(told) == 1 and any("net -21" in m["text"] for m in tg.sent())
        tg.push_message(OWNER, "/status")  # and it goes on polling normally
        async with asyncio.timeout(10):
            while not any("PAPER" in m["text"] for m in tg.sent()):
                await asyncio.sleep(0.05)
    finally:
        tg.token = token
        await svc.stop()
