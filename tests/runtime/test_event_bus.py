"""The event bus: a subscriber that hangs (a webhook that never answers, Telegram unreachable) never blocks the
others, and never keeps the bot from stopping."""

from __future__ import annotations

import asyncio
import time

from engine.events import Event, EventBus, HealthChanged


def ev(i: int) -> HealthChanged:
    return HealthChanged(ts_ms=i, component="test", healthy=True)


async def test_a_hanging_subscriber_neither_blocks_the_others_nor_the_shutdown() -> None:
    """Before, stop() put its end marker with put_nowait into a full queue (QueueFull) and let the TimeoutError of a
    subscriber still busy escape: the shutdown died there, before the journal was closed and the webhook's session
    released, and drain() waited for ever on the hung subscriber's backlog."""
    seen: list[int] = []
    hung = asyncio.Event()

    async def fast(event: Event) -> None:
        seen.append(event.ts_ms)

    async def hangs(_: Event) -> None:
        hung.set()
        await asyncio.Event().wait()  # never returns

    bus = EventBus(queue_size=3)
    bus.subscribe("hangs", hangs)
    bus.subscribe("fast", fast)
    await bus.start()
    bus.publish(ev(0))
    await hung.wait()
    for i in range(1, 6):
        bus.publish(ev(i))
        await asyncio.sleep(0)
    assert bus.dropped >= 1  # the hung one's queue is full; its events are counted as dropped
    assert not await bus.drain(timeout_s=0.2)  # bounded: says it did not finish instead of waiting for ever
    assert seen == [0, 1, 2, 3, 4, 5]  # the fast one got everything
    started = time.monotonic()
    await bus.stop(timeout_s=0.5)  # returns, without raising
    assert time.monotonic() - started < 3
