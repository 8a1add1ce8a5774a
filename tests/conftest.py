"""Shared fixtures: where the real KuCoin candles live, and whether tests may skip without them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = ROOT.parent / "shared" / "data" / "kucoin-futures"
SHARED_SPEC_DIR = ROOT.parent / "shared" / "spec"


def shared_data_dir() -> Path:
    """The shared candle directory; skip (or fail under CI=true) when it is missing."""
    if SHARED_DATA_DIR.is_dir():
        return SHARED_DATA_DIR
    reason = f"shared candle data not found at {SHARED_DATA_DIR} (clone the project beside ../shared)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires the shared data: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory of the real KuCoin futures candle files."""
    return shared_data_dir()


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """``app`` served on 127.0.0.1 at a port the system picks (one picked beforehand can be taken); the caller
    ends it with ``runner.cleanup()``."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, next(a[1] for a in runner.addresses if isinstance(a, tuple))


@dataclass
class WebhookSink:
    """A real local HTTP endpoint for the webhook notifier: answers 502 to the first ``fail_first`` posts, then
    keeps each JSON body it is sent."""

    url: str
    received: list[dict[str, object]]
    fail_first: int = 0


@pytest.fixture
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink("", [])

    async def hook(request: web.Request) -> web.Response:
        if sink.fail_first:
            sink.fail_first -= 1
            return web.Response(status=502)
        sink.received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner, port = await serve_on_loopback(app)
    sink.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield sink
    finally:
        await runner.cleanup()
