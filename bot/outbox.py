"""Delivery that outlives outages: messages wait in SQLite until Telegram has them. The sender honours
``retry_after``, backs off on network errors, paces each chat, keeps each chat's messages in order, and edits one
message for a burst of the same kind. No error from Telegram or storage ends the sender: a chat that refuses
messages waits with backoff, the others go on. A text longer than Telegram allows is queued as several messages;
one whose markup Telegram refuses is sent as plain text. Three things are never sent, each logged and counted: a
stop move replaced by a newer one before it went out, the less urgent messages beyond ``BACKLOG_CAP`` per chat
(one message says how many), and a message Telegram refused ``GIVE_UP_ATTEMPTS`` times."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from telegram import Bot, InlineKeyboardMarkup
from telegram.error import BadRequest, ChatMigrated, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut

from bot.formatting import plain, split_html
from storage.db import Database
from storage.repos import TelegramCursors

log = structlog.get_logger(__name__)

BURST_WINDOW_MS = 10 * 60_000  # a stop move edits the previous one only if it is recent and still the latest news
CARD_PREFIXES = ("approval:",)  # keys of cards that are edited in place wherever they are (their outcome, expiry)
HOLD_ATTEMPTS = 5  # a message that failed this often no longer holds back the newer ones to its chat
# Less urgent messages (reconnects, health flaps, signals) waiting per chat: beyond this the oldest give way, so after
# an hour without Telegram a fill or a halt is not sent after hundreds of them, one a second. One message says how
# many were dropped; what matters (fills, stops, halts, approvals) is never dropped.
BACKLOG_CAP = 20
# A message Telegram refused this often (bot blocked or removed from the group, a text it will never take; ~15 min at
# the 60 s backoff) is dropped, logged and counted: retried for ever, a blocked chat's backlog grew without end and
# cost one request and one error line per message per minute.
GIVE_UP_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Queued:
    id: int
    chat_id: int
    text: str
    silent: bool
    reply_markup: dict[str, Any] | None
    coalesce_key: str | None
    attempts: int
    message_id: int | None = None  # a card already sent whose text changed while it was on its way: edit this one


class Outbox:
    def __init__(self, db: Database, clock: Callable[[], int] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.superseded = 0  # queued burst messages replaced by a newer one of the same key before being sent
        self.migrated: dict[int, int] = {}  # group -> the supergroup it became (until TELEGRAM_CHAT_IDS is edited)
        self.dropped = 0  # never sent: less urgent ones beyond BACKLOG_CAP, refused ones after GIVE_UP_ATTEMPTS

    async def enqueue(
        self,
        chat_id: int,
        text: str,
        *,
        silent: bool = False,
        reply_markup: InlineKeyboardMarkup | None = None,
        coalesce_key: str | None = None,
        droppable: bool = False,
        event_seq: int | None = None,
    ) -> int:
        """Queue ``text`` (HTML) for ``chat_id``; a text over Telegram's limit becomes several messages in order,
        the buttons on the last. A ``droppable`` one may give way to newer ones of its kind while the chat's backlog
        is over ``BACKLOG_CAP``. ``event_seq``: the event it tells of (the chat's ``telegram_cursor`` moves past it
        in the same statement, so a restart never queues it again). Returns the id of the last one."""
        chat_id = self.migrated.get(chat_id, chat_id)
        markup = None if reply_markup is None else json.dumps(reply_markup.to_dict())
        parts = split_html(text)
        key = coalesce_key if len(parts) == 1 else None  # editing would replace one part of several
        now = self.clock()
        if key is not None and key.startswith(CARD_PREFIXES):
            # A card's outcome (an approval that expired while Telegram was unreachable) replaces the card still
            # waiting to go out, in its place: it went out with live buttons and was edited a second later.
            async with self.db.conn.execute(
                "UPDATE outbox SET text = ?, reply_markup = ?, silent = ?, event_seq = COALESCE(?, event_seq)"
                " WHERE id = (SELECT id FROM outbox WHERE state = 'pending' AND chat_id = ? AND coalesce_key = ?"
                " ORDER BY id DESC LIMIT 1) RETURNING id",
                (parts[0], markup, int(silent), event_seq, chat_id, key),
            ) as rows:
                replaced = await rows.fetchone()
            if replaced is not None:
                self.superseded += 1
                log.info("telegram.card_replaced_before_sending", chat_id=chat_id, key=key)
                await self.db.conn.commit()
                return int(replaced["id"])
        if key is not None and not key.startswith(CARD_PREFIXES):
            # A newer stop move makes a queued one old news: while Telegram is down, a trailing stop would pile up
            # one message per move, each sent (or edited) a second apart on recovery, ahead of a halt queued later.
            cur = await self.db.conn.execute(
                "DELETE FROM outbox WHERE state = 'pending' AND chat_id = ? AND coalesce_key = ?", (chat_id, key)
            )
            if cur.rowcount:
                self.superseded += cur.rowcount
                log.info("telegram.superseded", chat_id=chat_id, key=key, messages=cur.rowcount)
        last = 0
        for n, part in enumerate(parts):
            cur = await self.db.conn.execute(
                "INSERT INTO outbox (chat_id, text, silent, reply_markup, coalesce_key, due_ms, created_ms, droppable,"
                " event_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chat_id,
                    part,
                    int(silent),
                    markup if n == len(parts) - 1 else None,
                    key,
                    now,
                    now,
                    int(droppable),
                    event_seq,
                ),
            )
            last = int(cur.lastrowid or 0)
        if droppable:
            await self._trim(chat_id, now)
        await self.db.conn.commit()
        return last

    async def _trim(self, chat_id: int, now: int) -> None:
        """Drop the chat's oldest droppable messages beyond ``BACKLOG_CAP`` and count them in the chat's pending
        summary message (queued with the first drop, updated with the next ones). In the caller's transaction."""
        cur = await self.db.conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND chat_id = ?"
            " AND droppable = 1 ORDER BY id DESC LIMIT -1 OFFSET ?)",
            (chat_id, BACKLOG_CAP),
        )
        gone = cur.rowcount
        if gone <= 0:
            return
        self.dropped += gone
        async with self.db.conn.execute(
            "SELECT id, dropped FROM outbox WHERE state = 'pending' AND chat_id = ? AND dropped > 0", (chat_id,)
        ) as rows:
            summary = await rows.fetchone()
        total = gone + (0 if summary is None else int(summary["dropped"]))
        text = (
            f"📭 Telegram could not be reached: {total} less urgent notifications (reconnects, health changes, "
            "signals, orders placed) were dropped so the rest arrives sooner. The log has every one; /health shows "
            "where things stand."
        )
        if summary is None:
            await self.db.conn.execute(
                "INSERT INTO outbox (chat_id, text, due_ms, created_ms, dropped) VALUES (?, ?, ?, ?, ?)",
                (chat_id, text, now, now, total),
            )
        else:
            await self.db.conn.execute(
                "UPDATE outbox SET text = ?, dropped = ? WHERE id = ?", (text, total, summary["id"])
            )
        log.warning("telegram.backlog_dropped", chat_id=chat_id, dropped=gone, dropped_in_backlog=total)

    async def due(self, limit: int = 20) -> list[Queued]:
        """Messages due now, oldest first; a message waits while an older one to the same chat is still pending,
        so a flood wait or a network error never reorders a chat's messages. An older one that has failed
        ``HOLD_ATTEMPTS`` times stops holding the others back (it keeps being retried on its own)."""
        rows = await self.db.fetchall(
            "SELECT * FROM outbox AS o WHERE state = 'pending' AND due_ms <= ? AND NOT EXISTS"
            " (SELECT 1 FROM outbox AS p WHERE p.state = 'pending' AND p.chat_id = o.chat_id AND p.id < o.id"
            " AND p.attempts < ?)"
            " ORDER BY id LIMIT ?",
            (self.clock(), HOLD_ATTEMPTS, limit),
        )
        return [
            Queued(
                r["id"],
                r["chat_id"],
                r["text"],
                bool(r["silent"]),
                None if r["reply_markup"] is None else json.loads(r["reply_markup"]),
                r["coalesce_key"],
                r["attempts"],
                r["message_id"],
            )
            for r in rows
        ]

    async def sent(self, item_id: int, message_id: int, text: str | None = None) -> bool:
        """Mark it sent; False when its text changed while it was on its way (a card replaced by its outcome in
        ``enqueue``): it stays pending with ``message_id``, and the sender edits that message to the new text."""
        if text is None:
            sql = "UPDATE outbox SET state = 'sent', message_id = ? WHERE id = ?"
            await self.db.execute(sql, (message_id, item_id))
            return True
        if await self.db.execute(
            "UPDATE outbox SET state = 'sent', message_id = ? WHERE id = ? AND text = ?", (message_id, item_id, text)
        ):
            return True
        await self.db.execute("UPDATE outbox SET message_id = ? WHERE id = ?", (message_id, item_id))
        return False

    async def give_up(self, item_id: int) -> None:
        """Drop a message Telegram keeps refusing (counted with the dropped ones)."""
        if await self.db.execute("DELETE FROM outbox WHERE id = ? AND state = 'pending'", (item_id,)):
            self.dropped += 1

    async def retry_at(self, item_id: int, due_ms: int, *, counted: bool = True) -> None:
        """Try again at ``due_ms``; ``counted`` False for a failure that is Telegram's (an outage, a flood wait), not
        the message's: only a message's own failures end its hold on the newer ones."""
        await self.db.execute(
            "UPDATE outbox SET due_ms = ?, attempts = attempts + ? WHERE id = ?", (due_ms, int(counted), item_id)
        )

    async def last_message(self, chat_id: int, coalesce_key: str) -> int | None:
        """The message to edit instead of sending a new one: a card's own message wherever it is; for a burst key
        (a stop moving) only the chat's latest message, if it has that key and is recent, since an edit further up
        is a change nobody sees."""
        if coalesce_key.startswith(CARD_PREFIXES):
            row = await self.db.fetchone(
                "SELECT message_id FROM outbox WHERE state = 'sent' AND chat_id = ? AND coalesce_key = ?"
                " ORDER BY id DESC LIMIT 1",
                (chat_id, coalesce_key),
            )
        else:
            row = await self.db.fetchone(
                "SELECT message_id, coalesce_key, created_ms FROM outbox WHERE state = 'sent' AND chat_id = ?"
                " ORDER BY id DESC LIMIT 1",
                (chat_id,),
            )
            if row is not None and (
                row["coalesce_key"] != coalesce_key or row["created_ms"] < self.clock() - BURST_WINDOW_MS
            ):
                return None
        return None if row is None or row["message_id"] is None else int(row["message_id"])

    async def card_text(self, chat_id: int, coalesce_key: str) -> str | None:
        """A card's text as it was first queued (its details, before any outcome was written over it); None once
        pruned or never queued."""
        row = await self.db.fetchone(
            "SELECT text FROM outbox WHERE chat_id = ? AND coalesce_key = ? ORDER BY id LIMIT 1",
            (self.migrated.get(chat_id, chat_id), coalesce_key),
        )
        return None if row is None else str(row["text"])

    async def move_chat(self, old: int, new: int) -> None:
        """A group became a supergroup: its pending messages go to the new chat id, and so do later ones (each
        went to the old id first, for a 400 and an error line, while .env still names it)."""
        self.migrated[old] = new
        await self.db.execute("UPDATE outbox SET chat_id = ? WHERE state = 'pending' AND chat_id = ?", (new, old))
        await TelegramCursors(self.db).move(old, new)

    async def prune_sent(self, before_ms: int, batch: int = 5_000) -> int:
        """Delete messages sent before ``before_ms`` (a message not yet sent is kept whatever its age); returns how
        many. Only the chat's latest message and a card's own are ever read back, within minutes of sending."""
        return await self.db.delete_batched("outbox", "state = 'sent' AND created_ms < ?", (before_ms,), batch)

    async def pending_count(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
        return int(row[0]) if row else 0


class OutboxSender:
    """One named task draining the outbox; the engine only ever enqueues."""

    def __init__(
        self,
        outbox: Outbox,
        bot: Bot,
        *,
        per_chat_interval_s: float = 1.0,
        idle_s: float = 0.2,
        backoff_cap_s: float = 60.0,
        global_interval_s: float = 1 / 30,
        outage_cap_s: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.bot = bot
        self.per_chat_interval_s = per_chat_interval_s
        self.idle_s = idle_s
        self.backoff_cap_s = backoff_cap_s
        # While Telegram is unreachable each chat's oldest message is tried at least this often (one request), so the
        # backlog follows within seconds of its return, not after a minute's backoff.
        self.outage_cap_s = outage_cap_s
        self._outage: dict[int, int] = {}  # chat -> network failures in a row (reset by a delivery)
        self._last_sent: dict[int, float] = {}
        self.global_interval_s = global_interval_s  # Telegram's ~30 messages/s across all chats
        self._last_any = 0.0
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="telegram-outbox")

    @property
    def unreachable_chats(self) -> int:
        """Chats whose last attempt met an outage (network, 5xx, a revoked token) and nothing since got through."""
        return len(self._outage)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        while True:
            try:
                items = await self.outbox.due()
                if not items:
                    await asyncio.sleep(self.idle_s)
                    continue
                for item in items:  # one per chat, the oldest pending, unless an older one keeps failing
                    await self.deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # storage trouble, a bug: log it, and keep the sender alive
                log.exception("telegram.outbox_error")
                await asyncio.sleep(max(self.idle_s, 1.0))

    async def deliver(self, item: Queued) -> bool:
        """One attempt at one message; True once Telegram has it, False when it was rescheduled."""
        wait = (
            max(
                self._last_sent.get(item.chat_id, 0) + self.per_chat_interval_s, self._last_any + self.global_interval_s
            )
            - time.monotonic()
        )
        if wait > 0:
            await asyncio.sleep(wait)
        markup = None if item.reply_markup is None else InlineKeyboardMarkup.de_json(item.reply_markup, self.bot)
        try:
            previous = item.message_id or (
                None if item.coalesce_key is None else await self.outbox.last_message(item.chat_id, item.coalesce_key)
            )
            if previous is not None:
                try:
                    await self.bot.edit_message_text(
                        item.text, chat_id=item.chat_id, message_id=previous, parse_mode="HTML", reply_markup=markup
                    )
                    await self._delivered(item, previous)
                    return True
                except BadRequest as exc:
                    if "not modified" in str(exc).lower():  # the message already says exactly this
                        await self._delivered(item, previous)
                        return True
                    # the old message is gone or cannot be edited: send a new one
            try:
                msg = await self.bot.send_message(
                    item.chat_id, item.text, parse_mode="HTML", disable_notification=item.silent, reply_markup=markup
                )
            except BadRequest as exc:
                if "parse entities" not in str(exc).lower():
                    raise
                log.error("telegram.markup_refused", error=str(exc), detail="sent as plain text")
                msg = await self.bot.send_message(
                    item.chat_id, plain(item.text), disable_notification=item.silent, reply_markup=markup
                )
            await self._delivered(item, msg.message_id)
            return True
        except RetryAfter as exc:
            delay = exc.retry_after if isinstance(exc.retry_after, int | float) else exc.retry_after.total_seconds()
            log.warning("telegram.flood_wait", retry_after_s=delay)
            await self.outbox.retry_at(item.id, self.outbox.clock() + int(float(delay) * 1000), counted=False)
        except ChatMigrated as exc:
            log.error(
                "telegram.chat_migrated", old=item.chat_id, new=exc.new_chat_id, detail="update TELEGRAM_CHAT_IDS"
            )
            await self.outbox.move_chat(item.chat_id, exc.new_chat_id)
        except (TimedOut, NetworkError, TelegramError) as exc:
            # Network trouble, or a chat that refuses us (bot blocked, removed from the group): the message waits
            # and is tried again with backoff, the other chats go on. An outage (timeouts, 5xx) is not the
            # message's fault: it keeps its place at the head of its chat, so the backlog arrives in order. Counted
            # against the message, five failures released the next ones and each waited its own backoff: after a
            # five-minute outage the oldest arrived last, a minute late.
            transient = isinstance(exc, TimedOut | NetworkError) and not isinstance(exc, BadRequest)
            # A revoked token (401) refuses every message alike: not the message's fault either, nothing is dropped
            # while the operator puts a new token in .env.
            counted = not transient and not isinstance(exc, InvalidToken)
            if not counted:
                streak = self._outage[item.chat_id] = self._outage.get(item.chat_id, 0) + 1
                delay = min(self.backoff_cap_s, self.outage_cap_s, 0.5 * 2 ** (streak - 1))
            else:
                self._outage.pop(item.chat_id, None)  # a refusal is an answer: Telegram is reachable
                if item.attempts + 1 >= GIVE_UP_ATTEMPTS:
                    attempts = item.attempts + 1
                    log.error("telegram.message_dropped", chat_id=item.chat_id, error=str(exc), attempts=attempts)
                    await self.outbox.give_up(item.id)
                    return False
                delay = min(self.backoff_cap_s, 0.5 * 2**item.attempts)
            (log.warning if transient else log.error)(
                "telegram.send_failed", chat_id=item.chat_id, error=str(exc), retry_in_s=delay
            )
            await self.outbox.retry_at(item.id, self.outbox.clock() + int(delay * 1000), counted=counted)
        finally:
            self._last_sent[item.chat_id] = self._last_any = time.monotonic()
        return False

    async def _delivered(self, item: Queued, message_id: int) -> None:
        """Telegram has it: mark it sent, and the chat's outage (if any) is over."""
        await self.outbox.sent(item.id, message_id, item.text)
        self.delivered += 1
        self._outage.pop(item.chat_id, None)
