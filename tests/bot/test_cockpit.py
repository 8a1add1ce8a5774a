"""The real python-telegram-bot library against a fake Bot API server over loopback: authorization, commands,
approval buttons (approve, reject, double tap, foreign tap, forged data), kill switch, arming, and delivery
through the outbox under 429 storms and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from bot.app import BotConfig
from bot.service import TelegramService
from engine.events import ApprovalRequested, ContractChanged, PositionClosed, StopMoved, TakeProfitMoved
from storage.db import Database
from tests.bot.fake_telegram import FakeTelegram, outcome

OWNER, FRIEND, STRANGER = 111, 222, 666


class Control:
    """A small engine stand-in with real state, implementing bot.ports.TradingControl."""

    def __init__(self) -> None:
        self.paused = False
        self.mode = "auto"
        self.armed = False
        self.arm_refusal = ""
        self.executed: list[str] = []
        self.used: set[str] = set()
        self.states: dict[str, str] = {"ap-1": "PENDING", "ap-2": "PENDING", "ap-9": "PENDING"}
        self.kills = 0
        self.latched: list[str] = []
        self.resets: list[str] = []

    async def status(self) -> dict[str, str]:
        return {
            "mode": "PAPER",
            "armed": str(self.armed),
            "control": self.mode,
            "paused": str(self.paused),
            "equity": "10,000.00 USDT",
        }

    async def positions(self) -> list[dict[str, str]]:
        return [{"symbol": "ETHUSDTM", "side": "long", "stop": "1989.29"}]

    async def orders(self) -> list[str]:
        return ["ETHUSDTM stop sell 179 lots at 1989.29 reduce-only"]

    async def pnl(self) -> dict[str, str]:
        return {"today (realised)": "-24.31 USDT"}

    async def signals(self) -> list[str]:
        return ["ETHUSDTM score +42.0 conf 0.61 — no entry: min_score"]

    async def config_view(self) -> dict[str, str]:
        return {"bot_mode": "paper", "telegram_bot_token": "***"}

    async def health(self) -> dict[str, str]:
        return {"ready": "True"}

    async def chart(self, symbol: str) -> bytes | None:
        return b"\x89PNG\r\n\x1a\nfake" if symbol.upper() == "ETHUSDTM" else None

    async def pause(self, by: str) -> None:
        self.paused = True

    async def resume(self, by: str) -> str:
        self.paused = False
        return "Resumed: new entries allowed."

    async def set_control_mode(self, mode: str, by: str) -> None:
        self.mode = mode

    async def approve(self, approval_id: str, by: str) -> str:
        if approval_id != "ap-1" or approval_id in self.used:
            return "expired"
        self.used.add(approval_id)
        self.executed.append(by)
        self.states[approval_id] = "EXECUTED"
        return "executed"

    async def reject(self, approval_id: str, by: str) -> bool:
        if approval_id in self.used:
            return False
        self.used.add(approval_id)
        self.states[approval_id] = "REJECTED"
        return True

    async def approval_state(self, approval_id: str) -> str | None:
        return self.states.get(approval_id)

    async def arm_info(self) -> str:
        return "account sim, symbols ETHUSDTM, risk 2 % margin per trade"

    async def arm(self, by: str) -> str:
        if self.arm_refusal:
            return self.arm_refusal
        self.armed = True
        return "live trading ARMED"

    async def disarm(self, by: str) -> None:
        self.armed = False

    async def kill_switch(self, by: str) -> str:
        self.kills += 1
        return "kill switch: account is flat"

    async def halts(self) -> list[str]:
        return list(self.latched)

    async def reset_halts(self, by: str) -> str:
        lifted, self.latched = self.latched, []
        self.resets.append(by)
        return f"lifted by {by}: {'; '.join(lifted)}" if lifted else "nothing to reset: no halt is latched"


def make(tg: FakeTelegram, db: Database, control: Control) -> TelegramService:
    cfg = BotConfig(
        token=tg.token,
        allowed_user_ids=frozenset({OWNER, FRIEND}),
        chat_ids=(OWNER,),
        confirm_ttl_s=30,
        base_url=tg.url,
    )
    return TelegramService(
        cfg,
        control,
        db,
        per_chat_interval_s=0.0,
        poll_timeout_s=1,
        levels={"stop_moved": "silent", "order_placed": "off", "contract_changed": "silent"},
    )


@pytest.fixture
async def service(tg: FakeTelegram, db: Database) -> AsyncIterator[tuple[TelegramService, Control]]:
    control = Control()
    svc = make(tg, db, control)
    await svc.start()
    yield svc, control
    await svc.stop()


async def test_menu_is_set_and_commands_answer(tg: FakeTelegram, service: tuple[TelegramService, Control]) -> None:
    commands = await tg.wait_for("setMyCommands")
    assert {c["command"] for c in commands[0]["commands"]} >= {"status", "killswitch", "arm", "mode"}
    tg.push_message(OWNER, "/status")
    sent = await tg.wait_for("sendMessage")
    assert "PAPER" in sent[-1]["text"] and sent[-1]["chat_id"] == OWNER
    tg.push_message(OWNER, "/pause")
    await tg.wait_for("sendMessage", 2)
    assert service[1].paused
    tg.push_message(OWNER, "/frobnicate")
    assert "Unknown command" in (await tg.wait_for("sendMessage", 3))[-1]["text"]
    for i, (cmd, expect) in enumerate(
        [
            ("/orders", "reduce-only"),
            ("/pnl", "-24.31 USDT"),
            ("/signals", "no entry: min_score"),
            ("/config", "telegram_bot_token: ***"),
            ("/health", "ready: True"),
            ("/positions", "1989.29"),
        ]
    ):
        tg.push_message(OWNER, cmd)
        assert expect in (await tg.wait_for("sendMessage", 4 + i))[-1]["text"]
    tg.push_message(OWNER, "/chart ETHUSDTM")
    assert (await tg.wait_for("sendPhoto"))[-1]["caption"] == "ETHUSDTM"
    tg.push_message(OWNER, "/chart NOPE")
    assert "No candles for NOPE" in (await tg.wait_for("sendMessage", 10))[-1]["text"]


async def test_strangers_get_nothing_even_in_a_group(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    svc, control = service
    tg.push_message(STRANGER, "/killswitch")
    tg.push_message(STRANGER, "/status", chat_id=-100123)  # a group the owner is in does not give control
    tg.push_callback(STRANGER, "mode:manual")
    tg.push_message(OWNER, "/help")  # a marker that the updates before it were processed
    await tg.wait_for("sendMessage")
    assert len(tg.sent("sendMessage")) == 1 and "/status" in tg.sent("sendMessage")[0]["text"]
    assert tg.sent("answerCallbackQuery") == [] and control.mode == "auto"
    assert svc.app.bot_data["state"].unauthorized == 3


async def test_approval_card_buttons_execute_exactly_once(
    tg: FakeTelegram, db: Database, service: tuple[TelegramService, Control]
) -> None:
    svc, control = service
    await svc.notify(
        ApprovalRequested(
            ts_ms=0,
            approval_id="ap-1",
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
    )
    card = (await tg.wait_for("sendMessage"))[-1]
    assert "Approve LONG ETHUSDTM" in card["text"] and "179 lots" in card["text"]
    buttons = [b["callback_data"] for b in card["reply_markup"]["inline_keyboard"][0]]
    assert buttons == ["ap:ap-1:y", "ap:ap-1:n"]
    tg.push_callback(OWNER, "ap:ap-1:y")
    tg.push_callback(FRIEND, "ap:ap-1:y")  # a second device taps too
    tg.push_callback(STRANGER, "ap:ap-1:y")  # a foreign tap
    tg.push_callback(OWNER, "ap:forged-id:y")  # forged data
    edits = await tg.wait_for("editMessageText", 3)
    # The second tap must not overwrite the card's outcome with "expired": a position is open.
    assert [outcome(e["text"]) for e in edits] == ["executed", "already executed: nothing done", "expired"]
    assert control.executed == [f"telegram:{OWNER}"]
    answers = await tg.wait_for("answerCallbackQuery", 3)
    assert [a.get("text") for a in answers] == ["executed", "already executed: nothing done", "expired"]
    from engine.events import ApprovalResolved

    await svc.notify(
        ApprovalRequested(
            ts_ms=0,
            approval_id="ap-9",
            symbol="ETHUSDTM",
            side="short",
            entry=Decimal(2000),
            stop=Decimal(2011),
            take_profit=Decimal(1967),
            lots=5,
            leverage=18,
            margin=Decimal(5),
            risk=Decimal("0.5"),
            expires_ms=1,
        )
    )
    await tg.wait_for("sendMessage", 2)  # the card is in the chat (a card still queued goes out already resolved)
    await svc.notify(ApprovalResolved(ts_ms=2, approval_id="ap-9", outcome="expired"))  # a card nobody tapped
    edits = await tg.wait_for("editMessageText", 4)
    assert "expired" in edits[-1]["text"] and "reply_markup" not in edits[-1]  # the card says so, buttons gone


async def test_reject_button_and_unconfigured_group(tg: FakeTelegram, service: tuple[TelegramService, Control]) -> None:
    _, control = service
    tg.push_callback(OWNER, "ap:ap-2:n")
    assert outcome((await tg.wait_for("editMessageText"))[-1]["text"]) == "rejected" and "ap-2" in control.used
    tg.push_message(OWNER, "/status", chat_id=-100777)  # the owner, but in a chat nobody configured
    tg.push_message(OWNER, "/help")
    await tg.wait_for("sendMessage", 2)
    assert [m["chat_id"] for m in tg.sent()] == [OWNER, OWNER]  # a private note on why, then the help
    assert "Not obeyed: /status" in tg.sent()[0]["text"] and "PAPER" not in tg.sent()[0]["text"]


async def test_kill_switch_and_arming_need_a_fresh_confirmation(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    _, control = service
    tg.push_message(OWNER, "/killswitch")
    card = (await tg.wait_for("sendMessage"))[-1]
    data = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    tg.push_callback(OWNER, data)
    tg.push_callback(OWNER, data)  # replaying the button does nothing, and the card keeps showing the outcome
    edits = await tg.wait_for("editMessageText", 2)
    assert [outcome(e["text"]) for e in edits] == [
        "kill switch: account is flat",
        "kill switch: account is flat\n(pressed again: nothing done)",
    ]
    assert control.kills == 1
    tg.push_message(OWNER, "/arm")
    arm_card = (await tg.wait_for("sendMessage", 2))[-1]
    assert "Arm LIVE trading" in arm_card["text"] and "risk 2 % margin" in arm_card["text"]
    tg.push_callback(OWNER, "arm:not-a-token")
    tg.push_callback(OWNER, arm_card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    edits = await tg.wait_for("editMessageText", 4)
    assert [outcome(e["text"]) for e in edits[2:]] == ["expired: send /arm again", "live trading ARMED"]
    assert control.armed
    # The toast under the button says what happened; a refused arming used to say "done".
    control.armed, control.arm_refusal = False, "refused: arming needs BOT_MODE=live and LIVE_TRADING_ARMED=true"
    tg.push_message(OWNER, "/arm")
    again = (await tg.wait_for("sendMessage", 3))[-1]
    tg.push_callback(OWNER, again["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    answers = await tg.wait_for("answerCallbackQuery", 5)
    assert [a.get("text") for a in answers[-3:]] == [
        "expired: send /arm again",
        "live trading ARMED",
        control.arm_refusal,
    ]
    assert not control.armed


async def test_429_storm_loses_nothing_and_bursts_edit_one_message(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    svc, _ = service
    tg.fail_429_next, tg.retry_after = 3, 1
    for i in range(5):
        await svc.notify(
            PositionClosed(
                ts_ms=i,
                symbol="ETHUSDTM",
                side="long",
                exit_reason="stop_loss",
                entry=Decimal(2000),
                exit=Decimal(1990),
                gross=Decimal(-18),
                fees=Decimal("4.3"),
                funding=Decimal(0),
                net=Decimal(f"-{22 + i}"),
            )
        )
    async with asyncio.timeout(30):
        while len([m for m in tg.sent() if "Closed" in m["text"]]) < 5:
            await asyncio.sleep(0.05)
    closed = [m for m in tg.sent() if "Closed" in m["text"]]
    assert sorted(m["text"].count("net -2") for m in closed) == [1] * 5  # each one exactly once
    for i in range(3):
        await svc.notify(
            StopMoved(ts_ms=i, symbol="ETHUSDTM", old=Decimal(1990 + i), new=Decimal(1991 + i), reason="trailing_stop")
        )
        async with asyncio.timeout(30):  # each move sent before the next (one still queued is replaced instead)
            while await svc.outbox.pending_count():
                await asyncio.sleep(0.05)
    await tg.wait_for("editMessageText", 2, timeout=30)
    stop_msgs = [m for m in tg.sent("sendMessage") if m["text"].startswith("🔒")]
    assert len(stop_msgs) == 1 and stop_msgs[0]["disable_notification"] is True
    async with asyncio.timeout(30):
        while await svc.outbox.pending_count():
            await asyncio.sleep(0.05)


async def test_outbox_survives_a_restart(tg: FakeTelegram, db: Database) -> None:
    control = Control()
    first = make(tg, db, control)  # never started: the process dies before sending
    await first.notify(
        PositionClosed(
            ts_ms=1,
            symbol="XBTUSDTM",
            side="short",
            exit_reason="take_profit",
            entry=Decimal(90000),
            exit=Decimal(88500),
            gross=Decimal(30),
            fees=Decimal(2),
            funding=Decimal(0),
            net=Decimal(28),
        )
    )
    assert await first.outbox.pending_count() == 1
    tg.fail_network_next = 1
    second = make(tg, db, control)
    await second.start()
    try:
        sent = await tg.wait_for("sendMessage", 1, timeout=15)
        assert "Closed short XBTUSDTM" in sent[0]["text"] and "28.00 USDT" in sent[0]["text"]
        async with asyncio.timeout(15):  # marked sent once Telegram's answer is in
            while await second.outbox.pending_count():
                await asyncio.sleep(0.02)
    finally:
        await second.stop()


async def test_mode_buttons_and_resume(tg: FakeTelegram, service: tuple[TelegramService, Control]) -> None:
    _, control = service
    tg.push_message(OWNER, "/mode")
    card = (await tg.wait_for("sendMessage"))[-1]
    auto, manual = [b["callback_data"] for b in card["reply_markup"]["inline_keyboard"][0]]
    assert auto.startswith("mode:") and auto.endswith(":auto") and manual.endswith(":manual")
    tg.push_callback(OWNER, "mode:manual")  # hand-made data (no token): nothing changes
    assert outcome((await tg.wait_for("editMessageText"))[-1]["text"]) == "expired: send /mode again"
    assert control.mode == "auto"
    tg.push_callback(OWNER, manual)
    assert (
        outcome((await tg.wait_for("editMessageText", 2))[-1]["text"]) == "control mode: manual"
        and control.mode == "manual"
    )
    tg.push_callback(OWNER, auto)  # the same card's other button, after the choice: the card is used up
    assert "nothing done" in (await tg.wait_for("editMessageText", 3))[-1]["text"] and control.mode == "manual"
    tg.push_callback(OWNER, manual.replace(":manual", ":yolo"))  # not a mode: nothing changes
    assert outcome((await tg.wait_for("editMessageText", 4))[-1]["text"]) == "expired: send /mode again"
    assert control.mode == "manual"
    control.paused = True
    tg.push_message(OWNER, "/resume")
    assert "Resumed" in (await tg.wait_for("sendMessage", 2))[-1]["text"] and not control.paused


async def test_reset_lifts_latched_halts_after_a_confirmation(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    _, control = service
    tg.push_message(OWNER, "/reset")
    nothing = (await tg.wait_for("sendMessage"))[-1]
    assert nothing["text"].startswith("Nothing to reset: no halt is latched.") and "reply_markup" not in nothing
    control_latched = "circuit breaker: drawdown 11.00 % from today's peak 10,000.00 USDT (equity 8,900.00 USDT)"
    control.latched = [control_latched]
    tg.push_message(OWNER, "/reset")
    card = (await tg.wait_for("sendMessage", 2))[-1]
    assert "Lift these halts?" in card["text"] and "drawdown 11.00 %" in card["text"]
    assert control.resets == []  # asking is not doing
    data = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    tg.push_callback(STRANGER, data)  # not an allowed user: nothing at all
    tg.push_callback(OWNER, "rh:forged-token")
    tg.push_callback(OWNER, data)
    tg.push_callback(OWNER, data)
    edits = await tg.wait_for("editMessageText", 3)
    lifted = f"lifted by telegram:111: {control_latched}"
    assert [outcome(e["text"]) for e in edits] == [
        "expired: send /reset again",
        lifted,
        f"{lifted}\n(pressed again: nothing done)",
    ]
    assert "Lift these halts?" in edits[1]["text"]  # the card keeps what it asked
    assert len(control.resets) == 1


async def test_a_contract_change_is_sent_and_rings_only_when_a_position_is_at_stake(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    """contract_changed made silent: a pause with nothing open stays silent; a settlement with a position open
    rings all the same (the trader may have to close it on KuCoin by hand)."""
    svc, _ = service
    await svc.notify(
        ContractChanged(
            ts_ms=1,
            symbol="XBTUSDTM",
            old_status="Open",
            status="Paused",
            detail="no new entries on it until it is Open again",
        )
    )
    await svc.notify(
        ContractChanged(
            ts_ms=2,
            symbol="ETHUSDTM",
            old_status="Open",
            status="BeingSettled",
            position="long 179 lots",
            detail="no new entries on it until it is Open again; KuCoin is settling this contract",
            loud=True,
        )
    )
    sent = await tg.wait_for("sendMessage", 2)
    quiet, loud = sent[-2:]
    assert quiet["text"].startswith("⚠️ <b>XBTUSDTM contract Paused</b> (was Open)")
    assert quiet["disable_notification"] is True
    assert loud["text"].startswith("🚨 <b>ETHUSDTM contract BeingSettled</b> (was Open) with your long 179 lots open")
    assert loud["disable_notification"] is False


async def test_take_profit_moves_follow_the_stop_moves_level_and_a_burst_edits_one_message(
    tg: FakeTelegram, db: Database, service: tuple[TelegramService, Control]
) -> None:
    """A take-profit move comes with the stop move of each extension: a trader who made stop moves silent is not
    rung by the TP's either (before this event there was no TP message at all), and three extensions in a row
    edit one "🎯" message rather than sending three."""
    svc, _ = service
    for i in range(3):
        await svc.notify(
            TakeProfitMoved(
                ts_ms=i,
                symbol="ETHUSDTM",
                old=Decimal("2060.41") + 40 * i,
                new=Decimal("2100.42") + 40 * i,
                reason="extended",
                lots=50,
            )
        )
        async with asyncio.timeout(30):  # each move sent before the next (one still queued is replaced instead)
            while await svc.outbox.pending_count():
                await asyncio.sleep(0.05)
    edits = await tg.wait_for("editMessageText", 2, timeout=30)
    tp_msgs = [m for m in tg.sent("sendMessage") if m["text"].startswith("🎯")]
    assert [m["text"] for m in tp_msgs] == ["🎯 ETHUSDTM take-profit 2060.41 → <b>2100.42</b> (extended)"]
    assert tp_msgs[0]["disable_notification"] is True
    assert edits[-1]["text"] == "🎯 ETHUSDTM take-profit 2140.41 → <b>2180.42</b> (extended)"
    off = TelegramService(svc.config, Control(), db, levels={"stop_moved": "off"})
    own = TelegramService(svc.config, Control(), db, levels={"stop_moved": "off", "take_profit_moved": "on"})
    moved = TakeProfitMoved(
        ts_ms=9, symbol="ETHUSDTM", old=Decimal("2060.41"), new=Decimal("2100.42"), reason="extended", lots=50
    )
    assert not off._tells(moved) and own._tells(moved)  # its own level, when set, wins
