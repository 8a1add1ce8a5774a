"""Run the cockpit inside the engine's event loop and feed it events through the persisted outbox."""

from __future__ import annotations

from typing import Any

from telegram.ext import Application

from bot.app import BotConfig, approval_keyboard, build_application
from bot.formatting import format_event, with_outcome
from bot.outbox import Outbox, OutboxSender
from bot.ports import TradingControl
from engine.events import Event
from storage.db import Database


class TelegramService:
    """``await start()`` / ``await stop()`` around the engine; ``notify`` is the event-bus subscriber."""

    def __init__(
        self,
        config: BotConfig,
        control: TradingControl,
        db: Database,
        *,
        levels: dict[str, str] | None = None,
        per_chat_interval_s: float = 1.0,
        poll_timeout_s: int = 10,
    ) -> None:
        self.config = config
        self.app: Application[Any, Any, Any, Any, Any, Any] = build_application(config, control)
        self.outbox = Outbox(db)
        self.sender = OutboxSender(self.outbox, self.app.bot, per_chat_interval_s=per_chat_interval_s)
        self.levels = levels or {}
        self.poll_timeout_s = poll_timeout_s
        self._menu_set = False

    async def start(self) -> None:
        """Safe to call again after it raised (the runtime retries it while Telegram is unreachable): each step is
        done once. Notifications flow as soon as the bot is initialised, even while polling cannot start yet."""
        await self.app.initialize()
        if not self.sender.running:
            self.sender.start()
        # initialize() and start() do not run post_init (only run_polling does): call it ourselves.
        if self.app.post_init is not None and not self._menu_set:
            await self.app.post_init(self.app)
            self._menu_set = True
        if not self.app.running:
            await self.app.start()
        if self.app.updater is not None and not self.app.updater.running:
            await self.app.updater.start_polling(poll_interval=0.0, timeout=self.poll_timeout_s)

    async def stop(self) -> None:
        await self.sender.stop()
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    async def notify(self, event: Event) -> None:
        """Queue the event's message for every configured chat; the engine never waits on Telegram."""
        level = self.levels.get(event.kind, "on")
        text = format_event(event)
        if text is None or level == "off":
            return
        text = self.config.redact(text)  # an event's detail can carry an error's text, and so a secret
        markup = approval_keyboard(getattr(event, "approval_id", "")) if event.kind == "approval_requested" else None
        key = None
        if event.kind == "stop_moved":
            key = f"stop:{getattr(event, 'symbol', '')}"  # a burst of stop moves edits one message
        elif event.kind in ("approval_requested", "approval_resolved"):
            key = f"approval:{getattr(event, 'approval_id', '')}"  # the outcome (or expiry) edits the card itself
        for chat_id in self.config.chat_ids:
            message = text
            if event.kind == "approval_resolved" and key is not None:
                # The outcome is written over the card: keep the card's details (score, levels, size) above it.
                card = await self.outbox.card_text(chat_id, key)
                message = text if card is None else with_outcome(card, text)
            await self.outbox.enqueue(chat_id, message, silent=level == "silent", reply_markup=markup, coalesce_key=key)
