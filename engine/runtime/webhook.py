"""A generic webhook notifier: every event POSTed as JSON. Never blocks the engine (it is a bus subscriber) and
retries a failed POST a few times with backoff before giving up on that one event (counted)."""

from __future__ import annotations

import asyncio

import aiohttp
import structlog

from engine.events import Event

log = structlog.get_logger(__name__)


class WebhookNotifier:
    def __init__(self, url: str, *, attempts: int = 4, backoff_s: float = 0.5, timeout_s: float = 5.0) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.delivered = 0
        self.failed = 0
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, event: Event) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = event.to_dict()
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

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
