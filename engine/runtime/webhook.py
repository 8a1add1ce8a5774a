"""A generic webhook notifier: every event POSTed as JSON. Never blocks the engine (it is a bus subscriber) and
retries a failed POST a few times with backoff before giving up on that one event (counted). Each body carries the
event's journal ``seq``; the newest one posted is kept in SQLite, and a start posts (``"late": true``) what a crash
left journaled but not posted, as the Telegram side does."""

from __future__ import annotations

import asyncio
from collections import deque

import aiohttp
import structlog

from engine.events import Event
from storage.db import Database
from storage.repos import EventLog, WebhookCursor

log = structlog.get_logger(__name__)

CATCH_UP_MAX = 40  # at a start, the most events posted late: the newest; the log counts the older ones


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        db: Database | None = None,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.delivered = 0
        self.failed = 0
        self.db = db  # where the cursor is kept (None: no catch-up)
        self.cursor = None if db is None else WebhookCursor(db)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, event: Event, seq: int | None = None, *, late: bool = False) -> None:
        """POST the event; then, with ``seq``, the cursor moves past it (posted or given up on: either way handled).
        Killed between the POST and that write, the next start posts it again: ``seq`` lets the receiver tell."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = event.to_dict()
        if seq is not None:
            body["seq"] = seq
        if late:
            body["late"] = True
        try:
            for attempt in range(self.attempts):
                try:
                    async with self._session.post(self.url, json=body) as resp:
                        if resp.status < 300:
                            self.delivered += 1
                            return
                        error = f"HTTP {resp.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(self.backoff_s * 2**attempt)
            self.failed += 1
            log.warning("webhook.failed", kind=event.kind, error=error)
        finally:
            if seq is not None and self.cursor is not None and not _quiet(event):
                await self.cursor.advance(seq)

    async def claim(self, through_seq: int) -> None:
        """At a start, before anything of this run is handed on: no cursor yet (the first start with a webhook, or
        after a run without one) means no history, and this run's events owed from ``through_seq`` on."""
        if self.cursor is not None:
            await self.cursor.start(through_seq)

    async def catch_up(self, through_seq: int) -> int:
        """Post, marked late, the events up to ``through_seq`` after the cursor (journaled, never posted: the process
        died first), the newest ``CATCH_UP_MAX`` of them; then the cursor is ``through_seq``. Returns how many."""
        if self.db is None or self.cursor is None:
            return 0
        await self.claim(through_seq)
        after: int | None = await self.cursor.get()
        if after is None:
            after = through_seq
        kept: deque[tuple[int, Event]] = deque(maxlen=CATCH_UP_MAX)
        seen = 0
        events = EventLog(self.db)
        while after is not None and after < through_seq:
            batch, after = await events.between(after, through_seq)
            kept.extend(batch)
            seen += len(batch)
        for seq, event in kept:
            await self(event, seq, late=True)
        await self.cursor.set(through_seq)
        if seen:
            log.warning("webhook.caught_up", events=len(kept), not_posted=seen - len(kept), detail="sent late")
        return len(kept)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _quiet(event: Event) -> bool:
    """A bar's decision that did not pass: thousands at each bar close over a large universe, one commit each on
    the connection the entries use. The cursor does not move for them; the catch-up never posts them anyway."""
    decision = getattr(event, "decision", None)
    return event.kind == "signal_evaluated" and not (isinstance(decision, dict) and decision.get("passed"))


async def forget_cursor(db: Database) -> None:
    """A run without a webhook: its events are posted to nobody, now or late at a later start with one."""
    await WebhookCursor(db).forget()
