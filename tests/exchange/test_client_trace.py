"""The client's optional aiohttp request tracing (used by bench.latency to time requests leaving the client)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from exchange.models import OrderRequest, OrderSide
from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from exchange.simulator import SimulatorServer
from tests.exchange.conftest import KEY, PASSPHRASE, SECRET


async def test_trace_configs_see_every_request_and_the_order_body(sim: SimulatorServer) -> None:
    seen: list[tuple[str, str]] = []
    bodies: list[dict[str, Any]] = []
    tc = aiohttp.TraceConfig()

    async def start(_s: Any, _c: Any, p: aiohttp.TraceRequestStartParams) -> None:
        seen.append((p.method, p.url.path))

    async def chunk(_s: Any, _c: Any, p: aiohttp.TraceRequestChunkSentParams) -> None:
        bodies.append(json.loads(p.chunk))

    tc.on_request_start.append(start)
    tc.on_request_chunk_sent.append(chunk)
    async with KucoinFuturesClient(sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), trace_configs=[tc]) as c:
        await c.server_time()
        req = OrderRequest(symbol="ETHUSDTM", side=OrderSide.BUY, lots=1, leverage=5)
        await c.place_order(req)
    assert ("GET", "/api/v1/timestamp") in seen
    assert ("POST", "/api/v1/orders") in seen
    assert bodies[0]["clientOid"] == req.client_oid


async def test_no_trace_configs_by_default(sim: SimulatorServer) -> None:
    c = KucoinFuturesClient(sim.rest_url)
    try:
        assert c.trace_configs == []
        assert await c.server_time() > 0  # a lazily created session works too
    finally:
        await c.close()
