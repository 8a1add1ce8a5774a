"""A resolved card keeps what it asked: the approval's score, gates, levels and size, the kill switch's and the
arming's question stay on the message, with the outcome written below them (and within Telegram's 4096 units).
The real python-telegram-bot library against the fake Bot API server, which hands each button press the card
as Telegram does (plain text plus formatting entities)."""

from __future__ import annotations

from decimal import Decimal

from bot.formatting import OUTCOME_MARK, TELEGRAM_LIMIT
from bot.service import TelegramService
from engine.events import ApprovalRequested, ApprovalResolved
from tests.bot.fake_telegram import FakeTelegram, outcome
from tests.bot.test_cockpit import OWNER, Control, service

__all__ = ["service"]

DETAILS = [
    "Approve LONG ETHUSDTM?",
    "score +92.9 · confidence 0.98",
    "gates passed: min_score, trend_alignment, spread",
    "entry ≈ 2000.40",
    "stop 1989.29 · TP 2033.74",
    "size 179 lots · 18x · margin 198.90 USDT",
    "at risk ≈ 19.90 USDT",
]


def card(approval_id: str) -> ApprovalRequested:
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
        score=92.9,
        confidence=0.98,
        gates=["min_score", "trend_alignment", "spread"],
    )


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def test_an_approved_card_keeps_its_details_under_both_outcome_edits(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    svc, control = service
    await svc.notify(card("ap-1"))
    sent = (await tg.wait_for("sendMessage"))[-1]
    assert all(d in sent["text"] for d in DETAILS)
    card_id = next(mid for (_, mid), text in tg.texts.items() if text == sent["text"])
    tg.push_callback(OWNER, "ap:ap-1:y")
    edit = (await tg.wait_for("editMessageText"))[-1]
    assert edit["message_id"] == card_id and control.executed == [f"telegram:{OWNER}"]
    assert all(d in edit["text"] for d in DETAILS)  # what was approved is still there ...
    assert edit["text"].startswith("🟡 <b>Approve LONG ETHUSDTM?</b>\n")  # ... with its markup
    assert edit["text"].endswith(f"{OUTCOME_MARK}executed")  # ... and the outcome below it
    # The engine's own announcement of the outcome edits the same card: the details stay there too.
    await svc.notify(ApprovalResolved(ts_ms=2, approval_id="ap-1", outcome="executed", detail=f"by telegram:{OWNER}"))
    edit = (await tg.wait_for("editMessageText", 2))[-1]
    assert edit["message_id"] == card_id and all(d in edit["text"] for d in DETAILS)
    assert edit["text"].count(OUTCOME_MARK) == 1 and "<b>executed</b> by telegram:111" in outcome(edit["text"])
    tg.push_callback(OWNER, "ap:ap-1:y")  # a second tap: the outcome is replaced, never stacked under the first
    edit = (await tg.wait_for("editMessageText", 3))[-1]
    assert all(d in edit["text"] for d in DETAILS) and edit["text"].count(OUTCOME_MARK) == 1
    assert outcome(edit["text"]) == "already executed: nothing done"


async def test_expired_and_rejected_cards_keep_their_details(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    svc, _ = service
    await svc.notify(card("ap-9"))
    await tg.wait_for("sendMessage")  # in the chat: the outcome edits it (one still queued goes out resolved)
    await svc.notify(ApprovalResolved(ts_ms=2, approval_id="ap-9", outcome="expired"))
    edit = (await tg.wait_for("editMessageText"))[-1]
    assert all(d in edit["text"] for d in DETAILS) and "reply_markup" not in edit  # buttons gone
    assert "<b>expired</b>" in outcome(edit["text"])
    await svc.notify(card("ap-2"))
    await tg.wait_for("sendMessage", 2)
    tg.push_callback(OWNER, "ap:ap-2:n")
    edit = (await tg.wait_for("editMessageText", 2))[-1]
    assert all(d in edit["text"] for d in DETAILS) and outcome(edit["text"]) == "rejected"


async def test_kill_switch_and_arming_cards_keep_their_question(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    _, control = service
    tg.push_message(OWNER, "/killswitch")
    ks = (await tg.wait_for("sendMessage"))[-1]
    data = ks["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    tg.push_callback(OWNER, data)
    tg.push_callback(OWNER, data)
    first, again = await tg.wait_for("editMessageText", 2)
    question = "🧯 <b>Cancel every order and close every position now?</b>"
    assert first["text"] == f"{question}{OUTCOME_MARK}kill switch: account is flat"
    assert again["text"] == f"{question}{OUTCOME_MARK}kill switch: account is flat\n(pressed again: nothing done)"
    assert control.kills == 1
    tg.push_message(OWNER, "/arm")
    arm = (await tg.wait_for("sendMessage", 2))[-1]
    tg.push_callback(OWNER, arm["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    edit = (await tg.wait_for("editMessageText", 3))[-1]
    assert edit["text"].startswith("⚠️ <b>Arm LIVE trading?</b>\naccount sim, symbols ETHUSDTM, risk 2 % margin")
    assert edit["text"].endswith(f"{OUTCOME_MARK}live trading ARMED") and control.armed


async def test_a_card_near_telegram_limit_keeps_the_outcome_on_the_card(
    tg: FakeTelegram, service: tuple[TelegramService, Control]
) -> None:
    _, control = service
    long_info = "\n".join(f"symbol {n:04d}USDTM <risk> 2 % & up" for n in range(93))  # 4,055 units escaped

    async def arm_info() -> str:
        return long_info

    control.arm_info = arm_info  # type: ignore[method-assign]
    control.arm_refusal = "refused: arming needs BOT_MODE=live and LIVE_TRADING_ARMED=true; " * 3  # 198 units
    tg.push_message(OWNER, "/arm")
    arm = (await tg.wait_for("sendMessage"))[-1]
    assert TELEGRAM_LIMIT - 200 < units(arm["text"]) <= TELEGRAM_LIMIT  # one message, nearly full
    tg.push_callback(OWNER, arm["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    edit = (await tg.wait_for("editMessageText"))[-1]
    assert units(edit["text"]) <= TELEGRAM_LIMIT  # the fake refuses markup Telegram would refuse, too
    assert edit["text"].startswith("⚠️ <b>Arm LIVE trading?</b>\nsymbol 0000USDTM &lt;risk&gt; 2 % &amp; up\n")
    assert edit["text"].endswith(f"…{OUTCOME_MARK}{control.arm_refusal}")  # details cut, the outcome on the card
    assert len(tg.sent()) == 1  # nothing spilled into another message
