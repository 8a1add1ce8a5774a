"""The simulator's /sim/ hooks move the market, so the middleware answers them only to loopback callers."""

from __future__ import annotations

import json
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
