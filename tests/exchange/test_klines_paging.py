"""REST klines over a range larger than one answer, whichever end of the range the exchange's cap keeps.

The reference (§4.1.3) says only "page by time": with ``from`` the cap counts from it, with ``to`` towards it,
and with both it does not say. Paging forward only, a server that keeps the rows nearest ``to`` returned the
newest page alone and the rest of the history was silently missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from exchange.rest import KucoinFuturesClient
from tests.conftest import serve_on_loopback

STEP = 300_000
T0 = 1_766_017_800_000
# 1,000 five-minute rows with a gap of 7 bars in the middle; the first 12 bars of the range do not exist
# (a contract listed after the range starts).
TIMES = [T0 + i * STEP for i in range(12, 1_012) if not 500 <= i < 507]


def row(ts: int) -> list[float]:
    return [ts, 1.0, 2.0, 0.5, 1.5, float(ts % 97)]


class KlineServer:
    def __init__(self, keep: str, cap: int) -> None:
        self.keep, self.cap, self.calls = keep, cap, 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        lo, hi = int(request.query["from"]), int(request.query["to"])
        picked = [row(t) for t in TIMES if lo <= t <= hi]
        page = picked[: self.cap] if self.keep == "oldest" else picked[-self.cap :]
        return web.json_response({"code": "200000", "data": page})


@pytest.fixture(params=[("oldest", 500), ("newest", 500), ("oldest", 200), ("newest", 200)])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[KlineServer, KucoinFuturesClient]]:
    server = KlineServer(*request.param)
    app = web.Application()
    app.router.add_get("/api/v1/kline/query", server.handle)
    runner, port = await serve_on_loopback(app)
    client = KucoinFuturesClient(f"http://127.0.0.1:{port}")
    try:
        yield server, client
    finally:
        await client.close()
        await runner.cleanup()


async def test_every_row_of_the_range_whichever_end_the_cap_keeps(served: tuple[KlineServer, Any]) -> None:
    server, client = served
    rows = await client.klines("ETHUSDTM", 5, T0, T0 + 1_100 * STEP)
    assert [int(r[0]) for r in rows] == TIMES  # all 993, ascending, the gaps left as gaps
    assert rows[0] == row(TIMES[0])
    assert server.calls <= 2 * (len(TIMES) // server.cap + 1) + 2


async def test_a_range_with_no_rows(served: tuple[KlineServer, Any]) -> None:
    server, client = served
    assert await client.klines("ETHUSDTM", 5, T0 - 50 * STEP, T0 - STEP) == []
    assert server.calls == 1
