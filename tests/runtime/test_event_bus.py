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


async def test_a_subscriber_that_falls_behind_logs_its_drops_once_per_burst_not_once_per_event() -> None:
    """A webhook that never answers fills its queue in hours; then every event (542 decisions a bar) wrote one
    error line to a log file that start.sh never rotates: ~156,000 lines a day saying the same thing."""
    from structlog.testing import capture_logs

    async def hangs(_: Event) -> None:
        await asyncio.Event().wait()

    bus = EventBus(queue_size=2)
    bus.subscribe("hangs", hangs)
    await bus.start()
    with capture_logs() as logs:
        for i in range(2_003):
            bus.publish(ev(i))
            if i == 0:
                await asyncio.sleep(0)  # the pump takes the first one and hangs on it
    assert bus.dropped == 2_000
    drops = [e for e in logs if e["event"] == "bus.dropped"]
    assert 1 <= len(drops) <= 3, len(drops)
    assert drops[-1]["subscriber"] == "hangs" and drops[-1]["dropped_total"] >= 1_000
    await bus.stop(timeout_s=0.1)
