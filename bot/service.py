"""Run the cockpit inside the engine's event loop and feed it events through the persisted outbox."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import structlog
from telegram.error import Conflict, TelegramError
from telegram.ext import Application

from bot.app import BotConfig, PollingBot, TokenRefused, approval_keyboard, build_application
from bot.formatting import format_event, late_note, with_outcome
from bot.outbox import BACKLOG_CAP, Outbox, OutboxSender
from bot.ports import TradingControl
from engine.events import Event
from engine.runtime.chaos import crash_point
from storage.db import Database
from storage.repos import EventLog, TelegramCursors

log = structlog.get_logger(__name__)

# Noise when it piles up (an outage cuts the exchange's stream as well as Telegram): these may give way in a backlog.
DROPPABLE = frozenset({"signal_evaluated", "order_placed", "stream_reconnected", "health_changed", "candle_gap"})
CURSOR_EVERY_S = 60.0  # events that make no message move the chats' cursors at most this often (one write)
# At a start, the most messages re-sent late for events an unclean stop left untold: the newest ones; one line says
# how many older ones were not (the log and /status have them). Twice ``BACKLOG_CAP``: what matters most of a long
# backlog is its end (the last fills, the stops as they are now).
CATCH_UP_MAX = 2 * BACKLOG_CAP
CONFLICT_REPEAT_S = 600.0  # a second process polling the token is told to the chats at most this often
CONFLICT_TEXT = (
    "⚠️ <b>Another program is reading this bot's updates</b> (Telegram: 409 Conflict). Your commands and button "
    "presses may reach it instead of this ENYGMA, the kill switch too. Stop the other one (another server, an old "
    "container or process) or give it its own bot token."
)


def catch_up_skipped_text(n: int) -> str:
    """The line queued before the late messages when the catch-up left older ones out (``CATCH_UP_MAX``)."""
    return (
        f"📭 {n} older messages were not re-sent; see /status or the log. (They were due before the restart; the "
        f"newest {CATCH_UP_MAX} follow, marked late.)"
    )


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
        self.cursors = TelegramCursors(db)
        self._cursor_moved_s = time.monotonic()
        self.sender = OutboxSender(self.outbox, self.app.bot, per_chat_interval_s=per_chat_interval_s)
        self.levels = levels or {}
        self.poll_timeout_s = poll_timeout_s
        self._menu_set = False
        self._conflict_told: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        if isinstance(self.app.bot, PollingBot):
            self.app.bot.watch.on_resumed = self._token_accepted

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
            await self.app.updater.start_polling(
                poll_interval=0.0, timeout=self.poll_timeout_s, error_callback=self._polling_error
            )

    @property
    def unauthorized_updates(self) -> int:
        """Updates from users who are not allowed, since the start (for /metrics; the log has one line per user per
        ten minutes)."""
        return int(self.app.bot_data["state"].unauthorized)

    def _polling_error(self, exc: TelegramError) -> None:
        """PTB retries a failed poll on its own; a 409 Conflict means another process polls this token and gets
        some of the updates, button presses included: the chats are told (it was one stdlib log line per poll).
        Called synchronously by PTB, and must not raise."""
        if isinstance(exc, TokenRefused):
            return  # logged once by the bot, and polling goes on trying
        if not isinstance(exc, Conflict):
            log.warning("telegram.polling_failed", error=str(exc))
            return
        log.error("telegram.conflict", error=str(exc), detail="another process polls this bot token")
        now = time.monotonic()
        if self._conflict_told is not None and now - self._conflict_told < CONFLICT_REPEAT_S:
            return
        self._conflict_told = now
        task = asyncio.get_running_loop().create_task(self._tell(CONFLICT_TEXT))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _token_accepted(self, refused_s: float) -> None:
        """Telegram takes the token again after refusing it: the chats learn that commands went unheard meanwhile."""
        minutes = max(1, round(refused_s / 60))
        task = asyncio.get_running_loop().create_task(
            self._tell(
                f"⚠️ <b>Telegram refused this bot's token for about {minutes} min</b> (401 Unauthorized): commands "
                "and button presses were not received meanwhile; the engine kept trading and managing stops. Polling "
                "has resumed. /status shows where things stand."
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(self, text: str) -> None:
        """Queue ``text`` for every configured chat (from a callback that cannot await)."""
        try:
            for chat_id in self.config.chat_ids:
                await self.outbox.enqueue(chat_id, text)
        except Exception:  # storage trouble: the log line above still says it
            log.exception("telegram.tell_failed")

    async def stop(self) -> None:
        """Each step even when the one before failed: polling that died of a revoked token (401) raises that again
        here, and the application was then never stopped nor shut down."""
        await self.sender.stop()
        if self.app.updater is not None and self.app.updater.running:
            try:
                await self.app.updater.stop()
            except TelegramError as exc:
                log.error("telegram.polling_ended", error=repr(exc))
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    async def notify(self, event: Event, seq: int | None = None) -> None:
        """Queue the event's message for every configured chat; the engine never waits on Telegram. ``seq``: the
        event's journal sequence number (the bus passes it), which the outbox remembers (``catch_up``)."""
        queued = await self._queue(event, seq, self.config.chat_ids)
        crash_point("outboxed:" + event.kind)  # (chaos tests) in the outbox, the process dies before sending it
        if not queued and seq is not None and time.monotonic() - self._cursor_moved_s >= CURSOR_EVERY_S:
            # Nothing to tell (a bar's decision, mostly): the cursors move now and then all the same, so the next
            # start's catch-up reads minutes of events at most, not the hours since the last message.
            self._cursor_moved_s = time.monotonic()
            await self.cursors.advance(self.config.chat_ids, seq)

    async def catch_up(self, through_seq: int, start_seq: int) -> int:
        """The events of earlier runs (seq <= ``through_seq``) that a chat's cursor has not passed were journaled,
        but the process died before their message reached the outbox: the newest ``CATCH_UP_MAX`` of those that make
        a message are queued now, marked late, by the same rules as any (level, a card replaced by its outcome, a
        stop move by a newer one, the backlog cap); the older ones are not, and one line per chat says how many (a
        long outage then a crash left 200,000 of them: queued one by one the start waited 52 s for it, and the
        chat would have got them one a second for two days). A message that did reach the outbox (sent or pending)
        moved its chat's cursor in the same statement and is never queued twice; a chat without a cursor gets
        nothing. Then every chat's cursor moves to ``start_seq``: the runtime hands this run's events on (from
        ``start_seq`` on) only after this returns. Returns how many events were queued."""
        chats = self.config.chat_ids
        await self.claim(through_seq)
        behind = {c: seq for c, seq in (await self.cursors.get(chats)).items() if seq < through_seq}
        kept: deque[tuple[int, Event, tuple[int, ...]]] = deque()
        skipped: dict[int, int] = {}  # per chat, the older messages not re-sent
        after: int | None = min(behind.values(), default=None)
        events = EventLog(self.outbox.db)
        while after is not None:
            batch, after = await events.between(after, through_seq)
            for seq, event in batch:
                owed = tuple(c for c, s in behind.items() if s < seq)
                if owed and self._tells(event):
                    kept.append((seq, event, owed))
                    if len(kept) > CATCH_UP_MAX:
                        for chat_id in kept.popleft()[2]:
                            skipped[chat_id] = skipped.get(chat_id, 0) + 1
        for chat_id, n in skipped.items():  # first: it speaks of what came before the messages below it
            await self.outbox.enqueue(chat_id, catch_up_skipped_text(n))
        queued = 0
        for seq, event, owed in kept:
            if await self._queue(event, seq, owed, late=True):
                queued += 1
        await self.cursors.advance(chats, start_seq, exact=True)  # nothing after it is handled yet: the bus waits
        self._cursor_moved_s = time.monotonic()
        if queued or skipped:
            log.warning(
                "telegram.caught_up",
                events=queued,
                not_resent=max(skipped.values(), default=0),
                detail="journaled before an unclean stop, sent late",
            )
        return queued

    async def claim(self, through_seq: int) -> None:
        """At a start, before anything of this run is handed on: a chat out of the configuration for a while loses
        its cursor (it comes back with no history), a chat without one gets one at ``through_seq``. Apart from
        ``catch_up`` (which calls it too), because that runs beside the start: a run that died before it (a crash
        adopting a position) left a new chat without a cursor, and the next start sent it nothing of that run."""
        await self.cursors.keep_only(self.config.chat_ids)
        await self.cursors.start(self.config.chat_ids, through_seq)

    def _tells(self, event: Event) -> bool:
        """The event makes a message (its level is not off and it is worth one)."""
        return self._level(event) != "off" and format_event(event) is not None

    def _level(self, event: Event) -> str:
        """The event's notification level. A take-profit move, unless set on its own, goes as the stop moves do
        (they come together, at each extension): a trader who silenced or muted stop moves is not rung by them."""
        if event.kind == "take_profit_moved" and event.kind not in self.levels:
            return self.levels.get("stop_moved", "on")
        return self.levels.get(event.kind, "on")

    async def _queue(self, event: Event, seq: int | None, chats: tuple[int, ...], *, late: bool = False) -> bool:
        """Queue the event's message for ``chats``; False when it makes none (not worth one, or its level is off).
        ``late``: it happened before a restart (``catch_up``), and says so."""
        level = self._level(event)
        text = format_event(event)
        if text is None or level == "off" or not chats:
            return False
        text = self.config.redact(text)  # an event's detail can carry an error's text, and so a secret
        if late:
            text += "\n" + late_note(event.ts_ms)
        markup = approval_keyboard(getattr(event, "approval_id", "")) if event.kind == "approval_requested" else None
        key = None
        if event.kind == "stop_moved":
            key = f"stop:{getattr(event, 'symbol', '')}"  # a burst of stop moves edits one message
        elif event.kind == "take_profit_moved":
            key = f"take_profit:{getattr(event, 'symbol', '')}"  # and a burst of TP extensions another
        elif event.kind in ("approval_requested", "approval_resolved"):
            key = f"approval:{getattr(event, 'approval_id', '')}"  # the outcome (or expiry) edits the card itself
        for chat_id in chats:
            message = text
            if event.kind == "approval_resolved" and key is not None:
                # The outcome is written over the card: keep the card's details (score, levels, size) above it.
                card = await self.outbox.card_text(chat_id, key)
                message = text if card is None else with_outcome(card, text)
            await self.outbox.enqueue(
                chat_id,
                message,
                # A loud event (a position on a contract KuCoin settles or pauses) rings even where its kind was
                # made silent: the trader may have to act on KuCoin by hand. "off" stays off.
                silent=level == "silent" and not getattr(event, "loud", False),
                reply_markup=markup,
                coalesce_key=key,
                droppable=event.kind in DROPPABLE,
                event_seq=seq,
            )
        return True
