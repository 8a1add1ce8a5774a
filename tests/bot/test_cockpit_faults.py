"""The cockpit when things go wrong, through the real python-telegram-bot library and the fake Bot API server:
chats that refuse messages, texts longer than Telegram allows, commands whose engine call fails or hangs, owner
commands in chats nobody configured, flood waits, and buttons pressed after the card was decided."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from decimal import Decimal
from typing import Any

import structlog.testing

from bot.app import BotConfig
from bot.service import TelegramService
from engine.events import ApprovalRequested, DriftDetected, HealthChanged, PositionClosed, StopMoved
from storage.db import Database
from tests.bot.fake_telegram import FakeTelegram, outcome
from tests.bot.test_cockpit import FRIEND, OWNER, STRANGER, Control

GROUP = -100500


def build(tg: FakeTelegram, db: Database, control: Control, chat_ids: tuple[int, ...] = (OWNER,)) -> TelegramService:
    cfg = BotConfig(
        token=tg.token,
        allowed_user_ids=frozenset({OWNER, FRIEND}),
        chat_ids=chat_ids,
        confirm_ttl_s=30,
        base_url=tg.url,
    )
    return TelegramService(cfg, control, db, per_chat_interval_s=0.0, poll_timeout_s=1)


async def running(svc: TelegramService) -> TelegramService:
    await svc.start()
    return svc


def closed(net: int, symbol: str = "ETHUSDTM") -> PositionClosed:
    return PositionClosed(
        ts_ms=1,
        symbol=symbol,
        side="long",
        exit_reason="stop_loss",
        entry=Decimal(2000),
        exit=Decimal(1990),
        gross=Decimal(-18),
        fees=Decimal("4.3"),
        funding=Decimal(0),
        net=Decimal(net),
    )


async def drained(svc: TelegramService, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while await svc.outbox.pending_count():
            await asyncio.sleep(0.02)


async def test_a_chat_that_refuses_messages_does_not_stop_delivery_to_the_others(
    tg: FakeTelegram, db: Database
) -> None:
    tg.forbidden_chats.add(GROUP)  # the bot was removed from the group, or the user blocked it
    svc = await running(build(tg, db, Control(), chat_ids=(GROUP, OWNER)))
    try:
        await svc.notify(closed(-21))
        await svc.notify(closed(-22))
        async with asyncio.timeout(10):
            while len([m for m in tg.sent() if m["chat_id"] == OWNER]) < 2:
                await asyncio.sleep(0.02)
        assert [m["text"].count("net -2") for m in tg.sent() if m["chat_id"] == OWNER] == [1, 1]
        assert svc.sender._task is not None and not svc.sender._task.done()  # the sender is still alive
    finally:
        await svc.stop()


async def test_a_notification_longer_than_telegram_allows_arrives_whole_in_parts(
    tg: FakeTelegram, db: Database
) -> None:
    svc = await running(build(tg, db, Control()))
    try:
        diffs = [f"XYZ{i:03d}USDTM: engine 12 lots <long>, exchange 0 lots & no stop" for i in range(150)]
        await svc.notify(DriftDetected(ts_ms=1, differences=diffs))
        await drained(svc, timeout=15)
        texts = [m["text"] for m in tg.sent()]
        assert len(texts) >= 2
        whole = "".join(texts)
        assert "&lt;long&gt;, exchange 0 lots &amp; no stop" in whole
        for i in range(150):
            assert f"XYZ{i:03d}USDTM" in whole
        assert "new entries paused" in texts[-1]
    finally:
        await svc.stop()


async def test_text_that_telegram_cannot_parse_is_still_delivered(tg: FakeTelegram, db: Database) -> None:
    svc = await running(build(tg, db, Control()))
    try:
        # A message with broken markup (a hand-written enqueue, a formatter slip) must not be retried forever.
        await svc.outbox.enqueue(OWNER, "🚨 ETHUSDTM <stop> at 1989.29 & rising")
        await drained(svc, timeout=15)
        assert "ETHUSDTM <stop> at 1989.29 & rising" in tg.sent()[-1]["text"]
    finally:
        await svc.stop()


class Chatty(Control):
    async def signals(self) -> list[str]:
        return [f"SYM{i:03d}USDTM score +12.0 conf 0.40 — no entry: dead_zone, min_score" for i in range(300)]


async def test_a_long_command_reply_arrives_in_parts(tg: FakeTelegram, db: Database) -> None:
    svc = await running(build(tg, db, Chatty()))
    try:
        tg.push_message(OWNER, "/signals")
        async with asyncio.timeout(15):
            while "SYM299USDTM" not in "".join(m["text"] for m in tg.sent()):
                await asyncio.sleep(0.02)
        whole = "\n".join(m["text"] for m in tg.sent())
        assert all(f"SYM{i:03d}USDTM" in whole for i in range(300))
    finally:
        await svc.stop()


class Leftovers(Control):
    async def kill_switch(self, by: str) -> str:
        self.kills += 1
        return "kill switch: NOT flat: " + "; ".join(f"SYM{i:03d}USDTM: 12 lots" for i in range(400))


async def test_a_long_kill_switch_outcome_is_shown_whole(tg: FakeTelegram, db: Database) -> None:
    control = Leftovers()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage"))[-1]
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        async with asyncio.timeout(15):
            while "SYM399USDTM" not in "".join(m["text"] for m in tg.sent() + tg.sent("editMessageText")):
                await asyncio.sleep(0.02)
        assert "NOT flat" in tg.sent("editMessageText")[-1]["text"] and control.kills == 1
        assert not any("failed" in m["text"] for m in tg.sent())
    finally:
        await svc.stop()


class Broken(Control):
    async def orders(self) -> list[str]:
        raise RuntimeError("KuCoin 503: service unavailable")

    async def kill_switch(self, by: str) -> str:
        raise RuntimeError("KuCoin 503: service unavailable")

    async def approve(self, approval_id: str, by: str) -> str:
        raise RuntimeError("KuCoin 503: service unavailable")


async def test_a_command_whose_engine_call_fails_says_so(tg: FakeTelegram, db: Database) -> None:
    control = Broken()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/orders")
        reply = (await tg.wait_for("sendMessage"))[-1]["text"]
        assert "/orders failed" in reply and "503" in reply
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage", 2))[-1]
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        edits = await tg.wait_for("editMessageText")
        assert "failed" in edits[-1]["text"] and "503" in edits[-1]["text"]
        assert "Cancel every order and close every position now?" in edits[-1]["text"]  # the question stays
        alarm = (await tg.wait_for("sendMessage", 3))[-1]["text"]  # an edit does not notify: a new message does
        assert "Kill switch failed" in alarm and "503" in alarm and control.kills == 0
        tg.push_callback(OWNER, "ap:ap-1:y")  # a button not answered yet when it failed: an alert says so
        async with asyncio.timeout(15):
            while not [a for a in tg.sent("answerCallbackQuery") if a.get("text") == "approval failed"]:
                await asyncio.sleep(0.02)
        assert next(a for a in tg.sent("answerCallbackQuery") if a.get("text") == "approval failed")["show_alert"]
        await tg.wait_for("sendMessage", 4)
        tg.push_message(OWNER, "/status")  # the bot keeps working
        assert "PAPER" in (await tg.wait_for("sendMessage", 5))[-1]["text"]
    finally:
        await svc.stop()


async def test_a_button_answered_too_late_still_acts_and_reports(tg: FakeTelegram, db: Database) -> None:
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.slow_answers = True  # Telegram refuses the answer: the press waited in the queue past its window
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage"))[-1]
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        edits = await tg.wait_for("editMessageText")
        assert control.kills == 1 and outcome(edits[-1]["text"]) == "kill switch: account is flat"
        tg.push_message(OWNER, "/status")  # the bot keeps working
        assert "PAPER" in (await tg.wait_for("sendMessage", 2))[-1]["text"]
    finally:
        await svc.stop()


class Slow(Control):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def orders(self) -> list[str]:
        await self.release.wait()  # the exchange is slow to answer
        return []


async def test_a_slow_command_does_not_hold_up_the_kill_switch(tg: FakeTelegram, db: Database) -> None:
    control = Slow()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/orders")
        await asyncio.sleep(0.1)
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage", timeout=10))[-1]
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        await tg.wait_for("editMessageText", timeout=10)
        assert control.kills == 1
    finally:
        control.release.set()
        await svc.stop()


async def test_an_owner_command_in_a_chat_nobody_configured_changes_nothing(tg: FakeTelegram, db: Database) -> None:
    """Nothing is obeyed or said in a chat nobody configured. The owner used to get no word at all, as if the bot
    were down; now one private note (once per chat) says why and what to do."""
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/pause", chat_id=GROUP)  # the owner, in a group the bot was added to
        tg.push_callback(OWNER, "mode:manual", chat_id=GROUP)
        tg.push_message(OWNER, "/mode", chat_id=GROUP)
        tg.push_message(OWNER, "/status@some_other_bot", chat_id=GROUP)  # not ours: no note for it
        tg.push_message(OWNER, "/help")
        await tg.wait_for("sendMessage", 2)
        await asyncio.sleep(0.2)
        assert not control.paused and control.mode == "auto"
        assert [m["chat_id"] for m in tg.sent()] == [OWNER, OWNER]
        note = tg.sent()[0]["text"]
        assert "/pause" in note and str(GROUP) in note and "TELEGRAM_CHAT_IDS" in note and "Not obeyed" in note
    finally:
        await svc.stop()


async def test_a_stop_move_after_other_news_is_a_new_message(tg: FakeTelegram, db: Database) -> None:
    svc = await running(build(tg, db, Control()))
    try:
        await svc.notify(StopMoved(ts_ms=1, symbol="ETHUSDTM", old=Decimal(1990), new=Decimal(1995), reason="be"))
        await drained(svc)  # sent; a move still queued would be replaced rather than edited
        await svc.notify(StopMoved(ts_ms=2, symbol="ETHUSDTM", old=Decimal(1995), new=Decimal(1996), reason="trail"))
        await drained(svc)
        assert len(tg.sent()) == 1 and len(tg.sent("editMessageText")) == 1  # a burst edits one message
        await svc.notify(HealthChanged(ts_ms=3, component="market_data", healthy=False, detail="stale"))
        await svc.notify(StopMoved(ts_ms=4, symbol="ETHUSDTM", old=Decimal(1996), new=Decimal(2001), reason="trail"))
        await drained(svc)
        # Editing the first stop message, now above other news, would change a message nobody scrolls back to.
        assert "2001" in tg.sent()[-1]["text"] and len(tg.sent("editMessageText")) == 1
        await svc.notify(StopMoved(ts_ms=5, symbol="ETHUSDTM", old=Decimal(2001), new=Decimal(2002), reason="trail"))
        await drained(svc)
        assert len(tg.sent("editMessageText")) == 2  # still the latest news, and recent: edited
        later = svc.outbox.clock() + 11 * 60_000
        svc.outbox.clock = lambda: later  # the next move comes eleven minutes later: a new message, it notifies
        await svc.notify(StopMoved(ts_ms=6, symbol="ETHUSDTM", old=Decimal(2002), new=Decimal(2003), reason="trail"))
        await drained(svc)
        assert "2003" in tg.sent()[-1]["text"] and len(tg.sent("editMessageText")) == 2
    finally:
        await svc.stop()


async def test_a_flood_wait_keeps_the_order_of_messages(tg: FakeTelegram, db: Database) -> None:
    svc = await running(build(tg, db, Control()))
    try:
        tg.fail_429_next, tg.retry_after = 1, 1
        await svc.notify(closed(-21))
        await svc.notify(closed(-22))
        await svc.notify(closed(-23))
        await drained(svc)
        assert [m["text"].split("net ")[1][:6] for m in tg.sent()] == ["-21.00", "-22.00", "-23.00"]
    finally:
        await svc.stop()


def card_event(approval_id: str) -> ApprovalRequested:
    return ApprovalRequested(
        ts_ms=0,
        approval_id=approval_id,
        symbol="ETHUSDTM",
        side="long",
        entry=Decimal("2000.40"),
        stop=Decimal("1989.29"),
        take_profit=Decimal("2033.74"),
        lots=179,
        leverage=18,
        margin=Decimal("198.9"),
        risk=Decimal("19.9"),
        expires_ms=1,
    )


async def test_a_tap_on_a_decided_card_says_what_was_decided(tg: FakeTelegram, db: Database) -> None:
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_callback(OWNER, "ap:ap-2:n")  # rejected on the phone ...
        tg.push_callback(FRIEND, "ap:ap-2:y")  # ... approved on a second device showing the old card
        edits = await tg.wait_for("editMessageText", 2)
        assert [outcome(e["text"]) for e in edits] == [
            "rejected",
            "already rejected: nothing done",
        ] and control.executed == []
    finally:
        await svc.stop()


async def test_the_engine_reports_an_approval_state(db: Database) -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from engine.runtime.control import EngineControl
    from storage.repos import Approvals

    approvals = Approvals(db)
    await approvals.create("ap-7", "ETHUSDTM", {"side": "long", "price": "2000"}, 0, 10)
    await approvals.transition("ap-7", "PENDING", "EXECUTED", 1)
    control = EngineControl(cast(Any, SimpleNamespace(approvals=approvals)), cast(Any, None))
    assert await control.approval_state("ap-7") == "EXECUTED"
    assert await control.approval_state("forged") is None


async def test_an_edited_or_forwarded_command_is_not_obeyed(tg: FakeTelegram, db: Database) -> None:
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_edited_message(OWNER, "/pause")  # an old message edited: not a new order
        origin = {"type": "user", "date": 1, "sender_user": {"id": FRIEND, "is_bot": False, "first_name": "f"}}
        tg.push_message(OWNER, "/pause", forward_origin=origin)  # someone else's words passed on
        replies = await tg.wait_for("sendMessage", 2)
        await asyncio.sleep(0.2)
        assert not control.paused
        assert all("not obeyed" in m["text"].lower() for m in replies) and len(tg.sent()) == 2
        tg.push_message(OWNER, "/pause")
        await tg.wait_for("sendMessage", 3)
        assert control.paused
    finally:
        await svc.stop()


async def test_config_in_chat_hides_the_webhook_secret(tg: FakeTelegram, db: Database) -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        webhook_url="https://discord.com/api/webhooks/1234/HOOKsecret-5678",
        telegram_api_base_url="https://relay:PROXYpass@tg.example.net",
    )
    control = EngineControl(cast(Any, SimpleNamespace(cfg=settings.strategy())), settings)
    svc = await running(build(tg, db, cast(Any, control)))
    try:
        tg.push_message(OWNER, "/config")
        text = (await tg.wait_for("sendMessage"))[-1]["text"]
        assert "webhook_url: ***" in text  # a secret: not even its host
        assert "HOOKsecret" not in text and "PROXYpass" not in text and "1234" not in text
        assert "HOOKsecret-5678" in "".join(settings.secret_values())  # and the logs blank it too
    finally:
        await svc.stop()


async def test_telegram_failing_during_start_up_is_retried_until_the_bot_runs(tg: FakeTelegram, db: Database) -> None:
    from engine.runtime.app import _start_telegram

    control = Control()
    svc = build(tg, db, control)
    await svc.notify(closed(-21))  # queued while the engine starts
    tg.fail_5xx["deleteWebhook"] = 1  # Telegram has a hiccup half-way through start-up
    starting = asyncio.create_task(_start_telegram(svc))
    try:
        await asyncio.wait_for(asyncio.shield(starting), timeout=10)
        await drained(svc)
        tg.push_message(OWNER, "/pause")
        await tg.wait_for("sendMessage", 2)
        assert control.paused and "net -21" in tg.sent()[0]["text"]
    finally:
        starting.cancel()
        await svc.stop()


async def test_a_flood_wait_on_the_answer_neither_loses_it_nor_calls_the_kill_switch_failed(
    tg: FakeTelegram, db: Database
) -> None:
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage"))[-1]
        tg.fail_429_next, tg.retry_after = 1, 1  # Telegram says "wait a second" to the card's edit
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        edits = await tg.wait_for("editMessageText", timeout=15)
        assert control.kills == 1 and outcome(edits[-1]["text"]) == "kill switch: account is flat"
        tg.fail_429_next = 1
        tg.push_message(OWNER, "/status")  # a command reply waits out a flood wait too
        assert "PAPER" in (await tg.wait_for("sendMessage", 2, timeout=15))[-1]["text"]
        await asyncio.sleep(0.2)
        assert not any("failed" in m["text"] for m in tg.sent() + tg.sent("editMessageText"))
    finally:
        await svc.stop()


class SlowKill(Control):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def kill_switch(self, by: str) -> str:
        await self.release.wait()  # closing positions one by one under the exchange's rate limit
        return await super().kill_switch(by)


async def test_the_kill_switch_button_is_acknowledged_before_the_flattening_ends(
    tg: FakeTelegram, db: Database
) -> None:
    control = SlowKill()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage"))[-1]
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        answer = (await tg.wait_for("answerCallbackQuery", timeout=10))[-1]
        assert "flattening" in answer["text"].lower() and control.kills == 0
        control.release.set()
        assert outcome((await tg.wait_for("editMessageText"))[-1]["text"]) == "kill switch: account is flat"
    finally:
        control.release.set()
        await svc.stop()


async def test_chatter_and_other_bots_commands(tg: FakeTelegram, db: Database) -> None:
    svc = await running(build(tg, db, Control(), chat_ids=(OWNER, GROUP)))
    try:
        tg.push_message(OWNER, "status")  # forgot the slash, in the private chat
        assert "/help" in (await tg.wait_for("sendMessage"))[-1]["text"]
        tg.push_message(OWNER, "/status@some_other_bot", chat_id=GROUP)  # meant for another bot in the group
        tg.push_message(OWNER, "good morning", chat_id=GROUP)  # group chatter
        tg.push_message(OWNER, "/help@enygma_test_bot", chat_id=GROUP)
        replies = await tg.wait_for("sendMessage", 2)
        await asyncio.sleep(0.2)
        assert len(tg.sent()) == 2 and "/status" in replies[-1]["text"]
    finally:
        await svc.stop()


async def test_strangers_edits_and_forwards_change_nothing(tg: FakeTelegram, db: Database) -> None:
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_edited_message(STRANGER, "/pause")
        tg.push_message(STRANGER, "/pause", chat_id=OWNER)  # a stranger's message in the owner's chat id
        tg.push_message(OWNER, "/help")
        await tg.wait_for("sendMessage")
        await asyncio.sleep(0.2)
        assert not control.paused and len(tg.sent()) == 1
    finally:
        await svc.stop()


async def test_a_confirmation_pressed_after_its_expiry_changes_nothing(tg: FakeTelegram, db: Database) -> None:
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        svc.app.bot_data["state"].tokens.ttl_s = -1  # every confirmation button is already past its expiry
        tg.push_message(OWNER, "/killswitch")
        tg.push_message(OWNER, "/arm")
        cards = await tg.wait_for("sendMessage", 2)
        for card in cards:
            tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        edits = await tg.wait_for("editMessageText", 2)
        assert (
            [outcome(e["text"]) for e in edits]
            == ["expired: send /killswitch again", "expired: send /arm again"]  # it said only "expired"
            and control.kills == 0
            and not control.armed
        )
    finally:
        await svc.stop()


async def test_an_approval_card_says_until_when_it_can_be_approved(tg: FakeTelegram, db: Database) -> None:
    svc = await running(build(tg, db, Control()))
    try:
        event = card_event("ap-1")
        await svc.notify(dataclasses.replace(event, expires_ms=1_764_470_096_000))  # 2025-11-30 02:34:56 UTC
        card = (await tg.wait_for("sendMessage"))[-1]["text"]
        assert "expires 02:34:56 UTC" in card
    finally:
        await svc.stop()


async def test_messages_for_a_group_that_became_a_supergroup_follow_it(tg: FakeTelegram, db: Database) -> None:
    """The configured id is the old group's until the operator edits .env: every later message went to it first,
    drew a 400 and an error line, and only then moved (2 refusals for 3 messages here); now only the first."""
    tg.migrated_chats[GROUP] = -1001234567890
    svc = await running(build(tg, db, Control(), chat_ids=(GROUP,)))
    try:
        await svc.notify(closed(-21))
        await drained(svc)
        assert [(m["chat_id"], "net -21" in m["text"]) for m in tg.sent()] == [(-1001234567890, True)]
        await svc.notify(closed(-22))
        await svc.notify(closed(-23))
        await drained(svc)
        assert [m["chat_id"] for m in tg.sent()] == [-1001234567890] * 3 and len(tg.migrated_calls) == 1
        from engine.events import ApprovalResolved

        await svc.notify(card_event("ap-5"))
        await drained(svc)  # in the chat: the outcome edits it (one still queued goes out already resolved)
        await svc.notify(ApprovalResolved(ts_ms=2, approval_id="ap-5", outcome="expired"))
        await drained(svc)
        edit = tg.sent("editMessageText")[-1]  # the card, found under its new chat id, keeps its details
        assert edit["chat_id"] == -1001234567890 and "179 lots" in edit["text"] and "expired" in edit["text"]
    finally:
        await svc.stop()


async def test_an_edit_that_changes_nothing_is_not_sent_again_as_a_new_message(tg: FakeTelegram, db: Database) -> None:
    svc = await running(build(tg, db, Control()))
    try:
        move = StopMoved(ts_ms=1, symbol="ETHUSDTM", old=Decimal(1990), new=Decimal(1995), reason="break_even")
        await svc.notify(move)
        await drained(svc)
        await svc.notify(move)  # the same move reported twice (a retried step): Telegram says "not modified"
        await drained(svc)
        assert len(tg.sent()) == 1
    finally:
        await svc.stop()


async def test_the_sender_outlives_a_storage_error(tg: FakeTelegram, db: Database) -> None:
    svc = build(tg, db, Control())
    real_due = svc.outbox.due
    failures = [RuntimeError("database is locked")]

    async def flaky_due(limit: int = 20) -> list[Any]:
        if failures:
            raise failures.pop()
        return await real_due(limit)

    svc.outbox.due = flaky_due  # type: ignore[method-assign]
    await svc.start()
    try:
        await svc.notify(closed(-21))
        await drained(svc)
        assert "net -21" in tg.sent()[-1]["text"] and svc.sender.running
    finally:
        await svc.stop()


async def test_a_message_telegram_keeps_refusing_stops_holding_back_the_next_ones(
    tg: FakeTelegram, db: Database
) -> None:
    svc = build(tg, db, Control())
    svc.sender.backoff_cap_s = 0.05  # retry fast: the test is about the order rule, not the backoff
    await svc.start()
    try:
        await svc.outbox.enqueue(OWNER, " ")  # Telegram refuses an empty text, every time
        await svc.notify(closed(-21))
        await tg.wait_for("sendMessage", timeout=20)  # five failed attempts first, each ~0.25 s (more under load)
        assert "net -21" in tg.sent()[-1]["text"]
        async with asyncio.timeout(
            10
        ):  # marked sent once Telegram's answer is in; the refused one waits (or is dropped)
            while await svc.outbox.pending_count() > 1:
                await asyncio.sleep(0.02)
    finally:
        await svc.stop()


async def test_an_answer_telegram_will_not_take_is_never_reported_as_the_action_failing(
    tg: FakeTelegram, db: Database
) -> None:
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage"))[-1]
        tg.fail_429_next, tg.retry_after = 1, 120  # too long a flood wait to sit out on the card's edit
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        note = (await tg.wait_for("sendMessage", 2, timeout=15))[-1]["text"]
        assert control.kills == 1 and "Telegram refused the answer" in note and "failed" not in note
        tg.fail_network_next = 1  # a dropped connection on the next reply: retried, not lost
        tg.push_message(OWNER, "/status")
        assert "PAPER" in (await tg.wait_for("sendMessage", 3, timeout=15))[-1]["text"]
    finally:
        await svc.stop()


async def test_the_daily_summary_counts_the_days_trades_and_fees(db: Database) -> None:
    from engine.risk.limits import RiskState
    from engine.runtime.daily import summarize_day
    from storage.repos import EventLog

    log = EventLog(db)
    day_ms = 1_764_460_800_000  # 2025-11-30 00:00 UTC
    for ts, net, fees in (
        (day_ms - 3_600_000, -5, "1"),
        (day_ms + 3_600_000, -22, "4.3"),
        (day_ms + 7_200_000, 30, "2"),
    ):
        await log.append(dataclasses.replace(closed(net), ts_ms=ts, fees=Decimal(fees)))
    stored = [e for e in await log.recent(100, kind="position_closed") if isinstance(e, PositionClosed)]
    # Sent at 00:05 the next day: it is about the day that just ended, not the five minutes of the new one.
    now = day_ms + 86_400_000 + 300_000
    summary = summarize_day(stored, now_ms=now, risk=RiskState.start(Decimal(10000), now))
    assert (summary.day, summary.trades, summary.net_pnl, summary.fees) == ("2025-11-30", 2, Decimal(8), Decimal("6.3"))
    later_ms = day_ms + 20 * 3_600_000  # sent at 20:00
    later = summarize_day(stored, now_ms=later_ms, risk=RiskState.start(Decimal(10000), later_ms))
    assert (later.day, later.trades) == ("2025-11-30", 2)  # the day so far


async def test_a_button_on_a_message_telegram_no_longer_shows_still_reports_the_outcome(
    tg: FakeTelegram, db: Database
) -> None:
    """Telegram hands a press on a message it no longer shows the bot (too old) as an inaccessible message: no
    text, date 0. The press still acts once, and the outcome is written on that message (its details cannot be
    kept: Telegram did not send them), never reported as a failure."""
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_callback(OWNER, "ap:ap-1:y", message_id=7, inaccessible=True)
        tg.push_message(OWNER, "/killswitch")
        async with asyncio.timeout(10):
            while not (cards := [m for m in tg.sent() if "reply_markup" in m]):
                await asyncio.sleep(0.02)
        tg.push_callback(OWNER, cards[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"], inaccessible=True)
        edits = await tg.wait_for("editMessageText", 2)
        assert [(e["message_id"], e["text"]) for e in edits] == [(7, "executed"), (3, "kill switch: account is flat")]
        assert control.executed == [f"telegram:{OWNER}"] and control.kills == 1
        tg.push_message(OWNER, "/help")  # a marker: nothing else was said in between
        await tg.wait_for("sendMessage", 2)
        assert not any("failed" in m["text"] for m in tg.sent()) and len(tg.sent()) == 2
        assert not any(a.get("show_alert") for a in tg.sent("answerCallbackQuery"))
    finally:
        await svc.stop()


async def test_signals_over_a_large_universe_fit_one_message_with_the_entries_first(
    tg: FakeTelegram, db: Database
) -> None:
    """/signals with 542 symbols listed every one alphabetically: 8 messages on the phone, and the one symbol
    that passed (ZECUSDTM) in the last of them. Now: what passed first, then the strongest scores, one message."""
    from types import SimpleNamespace
    from typing import cast

    from engine.runtime.control import EngineControl

    decisions = {
        f"S{i:03d}USDTM": SimpleNamespace(passed=False, failing=["min_score"], final_score=i / 10, confidence=0.4)
        for i in range(541)
    }
    decisions["ZECUSDTM"] = SimpleNamespace(passed=True, failing=[], final_score=71.5, confidence=0.8)
    control = EngineControl(cast(Any, SimpleNamespace(last_decision=decisions)), cast(Any, None))
    svc = await running(build(tg, db, cast(Any, control)))
    try:
        tg.push_message(OWNER, "/signals")
        await tg.wait_for("sendMessage")
        await asyncio.sleep(0.5)  # any further parts would have come by now
        assert len(tg.sent()) == 1
        lines = tg.sent()[0]["text"].splitlines()
        assert lines[0] == "ZECUSDTM score +71.5 conf 0.80 — PASSED"
        assert lines[1].startswith("S540USDTM score +54.0")  # then the strongest of the rest
        assert lines[-1] == "… and 502 more without an entry (lower scores)"
    finally:
        await svc.stop()


async def test_the_arming_card_hides_a_password_in_the_exchange_url_and_fits_a_large_universe(
    tg: FakeTelegram, db: Database
) -> None:
    """/arm showed KUCOIN_REST_URL as written, user and password of a relay included (/config hides them), and
    every symbol: 542 of them made the card two messages. Now the URL as /config shows it and the first symbols."""
    from types import SimpleNamespace
    from typing import cast

    from engine.config import default_strategy_config
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl

    symbols = [f"S{i:03d}USDTM" for i in range(542)]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        kucoin_rest_url="https://relay:PROXYpass@futures.example.net",
        symbols=symbols,
    )
    control = EngineControl(cast(Any, SimpleNamespace(cfg=default_strategy_config())), settings)
    svc = await running(build(tg, db, cast(Any, control)))
    try:
        tg.push_message(OWNER, "/arm")
        card = (await tg.wait_for("sendMessage"))[-1]
        await asyncio.sleep(0.3)
        assert len(tg.sent()) == 1 and "reply_markup" in card
        assert "PROXYpass" not in card["text"] and "relay" not in card["text"]
        assert "https://futures.example.net" in card["text"]
        assert "542 symbols (S000USDTM, S001USDTM" in card["text"] and "S541USDTM" not in card["text"]
    finally:
        await svc.stop()


class HtmlError(Control):
    async def orders(self) -> list[str]:
        # A proxy's error page in the exception text: every '<' becomes '&lt;' in the reply.
        raise RuntimeError("KuCoin 502: " + "<html><body>_bad_ *gateway* & more</body></html>" * 40)


async def test_an_error_text_full_of_markup_is_reported_whole_and_clean(tg: FakeTelegram, db: Database) -> None:
    """The error detail was cut at 600 characters after escaping, inside an entity: the reply ended in '&l' or
    '&am', which a strict parser refuses (the fake's does: the report was lost). Now cut before escaping."""
    svc = await running(build(tg, db, HtmlError()))
    try:
        tg.push_message(OWNER, "/orders")
        reply = (await tg.wait_for("sendMessage", timeout=10))[-1]["text"]
        assert reply.startswith("⚠️ /orders failed: RuntimeError: KuCoin 502: &lt;html&gt;&lt;body&gt;_bad_ *gateway*")
        assert "The engine keeps running." in reply
        body = reply.split("\n")[0]
        assert body.endswith("…") and not body.rstrip("…").endswith(
            ("&", "&l", "&lt", "&g", "&gt", "&a", "&am", "&amp")
        )
    finally:
        await svc.stop()


async def test_a_flood_wait_on_a_reply_does_not_hold_up_the_kill_switch(tg: FakeTelegram, db: Database) -> None:
    """Commands and buttons that change state run one at a time; the reply to /pause waited out Telegram's flood
    wait (5 s here, up to 60 s each, 4 tries) inside its handler, and a kill-switch press behind it waited too.
    Now the press is acted on at once; the /pause reply still arrives after the wait."""
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        tg.push_message(OWNER, "/killswitch")
        card = (await tg.wait_for("sendMessage"))[-1]
        tg.fail_429_next, tg.retry_after = 1, 5
        tg.push_message(OWNER, "/pause")
        while tg.fail_429_next:  # the reply met the flood wait
            await asyncio.sleep(0.01)
        started = asyncio.get_running_loop().time()
        tg.push_callback(OWNER, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        async with asyncio.timeout(15):
            while not control.kills:
                await asyncio.sleep(0.01)
        assert asyncio.get_running_loop().time() - started < 2.5 and control.paused
        async with asyncio.timeout(15):  # the /pause reply is not lost
            while not any(m["text"].startswith("Paused") for m in tg.sent()):
                await asyncio.sleep(0.05)
    finally:
        await svc.stop()


async def test_a_bot_added_to_a_group_by_a_stranger_says_and_does_nothing_there(tg: FakeTelegram, db: Database) -> None:
    """A stranger adds the bot to their group and pokes at it: no answer, no note, nothing changes, and the
    owner's chat still works."""
    control = Control()
    svc = await running(build(tg, db, control))
    try:
        now = int(time.time())
        member = {"user": {"id": 999, "is_bot": True, "first_name": "ENYGMA"}}
        tg._push(
            {
                "my_chat_member": {
                    "chat": {"id": -100999, "type": "supergroup", "title": "pump room"},
                    "from": {"id": STRANGER, "is_bot": False, "first_name": "s"},
                    "date": now,
                    "old_chat_member": {**member, "status": "left"},
                    "new_chat_member": {**member, "status": "member"},
                }
            }
        )
        tg.push_message(STRANGER, "/killswitch", chat_id=-100999)
        tg.push_message(STRANGER, "/mode", chat_id=-100999)
        tg.push_message(OWNER, "/help")
        await tg.wait_for("sendMessage")
        await asyncio.sleep(0.2)
        assert [m["chat_id"] for m in tg.sent()] == [OWNER] and control.kills == 0 and control.mode == "auto"
        assert svc.app.bot_data["state"].unauthorized == 3
    finally:
        await svc.stop()


class Leaky(Control):
    """An engine call failing with a text that holds configured secrets, as an exchange or proxy error could."""

    async def orders(self) -> list[str]:
        raise RuntimeError("502 from https://relay:PROXYpass@tg.example.net; passphrase pass-PHRASE-42 refused")


async def test_no_configured_secret_reaches_the_chat_in_an_error_or_a_notification(
    tg: FakeTelegram, db: Database
) -> None:
    """Every text the bot sends passes the log redactor with every secret in force. The error report blanked only
    the bot token: '/orders failed: RuntimeError: 502 from https://relay:<password>@tg.example.net; passphrase
    <passphrase> refused'; and a notification (a task that stopped, with its error) was sent as it came."""
    from engine.config.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        kucoin_api_passphrase="pass-PHRASE-42",
        telegram_api_base_url="https://relay:PROXYpass@tg.example.net",
    )
    cfg = BotConfig(
        token=tg.token,
        allowed_user_ids=frozenset({OWNER}),
        chat_ids=(OWNER,),
        base_url=tg.url,
        secret_values=tuple(settings.secret_values()),  # as the runtime builds it
    )
    svc = await running(TelegramService(cfg, Leaky(), db, per_chat_interval_s=0.0, poll_timeout_s=1))
    try:
        tg.push_message(OWNER, "/orders")
        reply = (await tg.wait_for("sendMessage"))[-1]["text"]
        assert "/orders failed" in reply and "tg.example.net" in reply, reply
        await svc.notify(HealthChanged(ts_ms=1, component="stream", healthy=False, detail="stopped: pass-PHRASE-42"))
        note = (await tg.wait_for("sendMessage", 2))[-1]["text"]
        assert "stream" in note, note
        for text in (reply, note):
            assert "PROXYpass" not in text and "pass-PHRASE-42" not in text, text
    finally:
        await svc.stop()


async def test_a_stranger_flooding_the_chat_gets_one_log_line_per_ten_minutes_and_a_count(
    tg: FakeTelegram, db: Database
) -> None:
    """200 updates from a stranger (a spam bot in the group) logged 200 warnings: anyone could flood the log. Now
    the first is logged, the rest are counted, and the next line after ten minutes says how many were not logged.
    Each stranger has their own window; nobody gets an answer; every update is in the count /metrics reads."""
    clock = [1000.0]
    control = Control()
    svc = build(tg, db, control)
    svc.app.bot_data["state"].clock = lambda: clock[0]
    await svc.start()
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(200):
                tg.push_message(STRANGER, "/killswitch", chat_id=GROUP)
            tg.push_message(STRANGER + 1, "buy now!!", chat_id=GROUP)
            tg.push_message(OWNER, "/help")  # the marker: every update before it was handled
            await tg.wait_for("sendMessage")
            lines = [e for e in logs if e["event"] == "telegram.unauthorized"]
            assert [(e["user_id"], e["not_logged_since_last"]) for e in lines] == [(STRANGER, 0), (STRANGER + 1, 0)]
            clock[0] += 601  # ten minutes on: the next one is logged with the count of those in between
            tg.push_message(STRANGER, "/status", chat_id=GROUP)
            tg.push_message(OWNER, "/help")
            await tg.wait_for("sendMessage", 2)
            lines = [e for e in logs if e["event"] == "telegram.unauthorized"]
            assert [(e["user_id"], e["not_logged_since_last"]) for e in lines][2:] == [(STRANGER, 199)]
        assert svc.unauthorized_updates == 202 and control.kills == 0
        assert [m["chat_id"] for m in tg.sent()] == [OWNER, OWNER] and tg.sent("answerCallbackQuery") == []
    finally:
        await svc.stop()
