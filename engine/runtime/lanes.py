"""One ordered lane per symbol between the WebSocket reader and the engine.

Handled inline, every message waits for the one before it, including that one's REST round trips: an entry or a
stop replace for one symbol (three requests) held up the candles and mark ticks of every other symbol behind it
(bench.latency: a burst of mark ticks moving eight stops took 117 ms at p99 to send the last replace). The reader
now hands each message to its symbol's lane and reads on. Within a lane, messages are handled strictly in order,
so one symbol's candles, ticks and stop moves never overtake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Job = Callable[[], Awaitable[object]]  # what it returns is not used


class Lanes:
    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[str, set[Job]] = {}
        self.failures = 0

    def submit(self, key: str, job: Job) -> None:
        """Queue ``job`` behind everything already queued for ``key``; never blocks."""
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = asyncio.Queue()
            self._tasks[key] = asyncio.create_task(self._run(key, q), name=f"lane-{key}")
        q.put_nowait(job)

    def depth(self) -> int:
        """Messages received but not yet handled, over every lane."""
        return sum(q.qsize() for q in self._queues.values())

    async def drain(self) -> None:
        """Wait until every queued message has been handled."""
        for q in list(self._queues.values()):
            await q.join()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()

    async def _run(self, key: str, q: asyncio.Queue[Job]) -> None:
        while True:
            job = await q.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad message must not stop the symbol's lane: log it and go on
                self.failures += 1
                log.exception("lane.job_failed", lane=key)
            finally:
                q.task_done()

    def submit_once(self, key: str, job: Job) -> bool:
        """Queue ``job`` unless the same job is already queued and not yet started: a burst of triggers runs it once
        more, not once per trigger. True when it was queued."""
        pending = self._pending.setdefault(key, set())
        if job in pending:
            return False
        pending.add(job)

        async def run() -> object:
            pending.discard(job)  # a trigger arriving while it runs queues the next pass
            return await job()

        self.submit(key, run)
        return True


def position_push_changes_position(data: dict[str, object]) -> bool:
    """KuCoin also pushes ``position.change`` for mark-price moves, with only a subset of fields (markPrice,
    unrealisedPnl, ...; reference §5.6.3), every few seconds per open position. Those change nothing a
    reconciliation looks at; a push that carries the size or a reason does."""
    return "currentQty" in data or bool(data.get("changeReason"))
