"""The simulator's /sim/ hooks move the market, so the middleware answers them only to loopback callers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from unittest.mock import MagicMock

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from exchange.simulator import SimulatorConfig, SimulatorServer


def request_from(peer: str, path: str) -> web.Request:
    transport = MagicMock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    return make_mocked_request("POST", path, transport=transport)


async def test_sim_hooks_refuse_other_machines_and_serve_loopback(data_dir: Path) -> None:
    sim = SimulatorServer(SimulatorConfig(contracts_file=data_dir / "contracts.json"))
    called: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        called.append(request.path)
        return web.json_response({"ok": True})

    refused = await sim._middleware(request_from("192.168.1.20", "/sim/price"), handler)
    assert refused.status == 403 and json.loads(refused.body)["error"] == "loopback only"  # type: ignore[attr-defined]
    assert called == []  # the hook never ran
    for peer in ("127.0.0.1", "::1"):
        ok = await sim._middleware(request_from(peer, "/sim/price"), handler)
        assert ok.status == 200
    assert called == ["/sim/price", "/sim/price"]


async def test_sim_contract_hook_changes_status_and_specs_and_orders_follow(data_dir: Path) -> None:
    """/sim/contract (loopback only, like /sim/price): a contract that is not Open refuses every new order with
    200003 (reference §6.10 step 2); a malformed value is published while the book keeps its last good numbers."""
    import aiohttp

    from exchange.simulator.errors import SimError

    sim = SimulatorServer(SimulatorConfig(contracts_file=data_dir / "contracts.json"))
    refused = await sim._middleware(request_from("10.0.0.7", "/sim/contract"), sim._admin_contract)
    assert refused.status == 403
    await sim.start()
    try:
        url = f"{sim.rest_url}/sim/contract"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"symbol": "ETHUSDTM", "fields": {"status": "CancelOnly"}}) as r:
                assert r.status == 200
            async with http.post(url, json={"fields": {}}) as r:
                assert r.status == 400  # no symbol: a clear error, the simulator runs on
            async with http.post(url, json={"symbol": "XBTUSDTM", "fields": {"tickSize": "abc"}, "listed": False}):
                pass
            async with http.get(f"{sim.rest_url}/api/v1/contracts/active") as r:
                listed = {c["symbol"]: c for c in (await r.json())["data"]}
        assert listed["ETHUSDTM"]["status"] == "CancelOnly" and "XBTUSDTM" not in listed
        assert str(sim.state.contracts["XBTUSDTM"].tick_size) == "0.1"  # the book's last good tick
        sim.set_price("ETHUSDTM", Decimal("2000"))
        body = {"symbol": "ETHUSDTM", "side": "buy", "type": "market", "size": 1, "leverage": 5, "clientOid": "x1"}
        try:
            sim.state.place(body)
        except SimError as exc:
            assert exc.code == "200003" and "CancelOnly" in exc.message
        else:
            raise AssertionError("an order on a CancelOnly contract was accepted")
    finally:
        await sim.stop()
