"""/dashboard tells the truth about live arming: after a Telegram /arm the bot trades real money, and the page a
trader checks must say so (and say unarmed again after /disarm)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp

from engine.runtime.app import RunOptions, Runtime
from engine.runtime.control import EngineControl
from exchange.simulator import SimulatorServer
from tests.runtime.conftest import live_settings


async def _armed_row(http: aiohttp.ClientSession, port: int) -> str:
    async with http.get(f"http://127.0.0.1:{port}/dashboard") as r:
        page = await r.text()
    return page.split("<th>armed</th><td>", 1)[1].split("</td>", 1)[0]


async def test_dashboard_shows_arming_done_from_telegram(sim: SimulatorServer, tmp_path: Path) -> None:
    settings = live_settings(sim, tmp_path, live_trading_armed=True)
    sim.set_price("ETHUSDTM", Decimal("2000"))
    rt = Runtime(settings, RunOptions())  # started without a terminal: unarmed
    sim.faults.latency_ms, sim.faults.latency_prefix = 3000, "/api/v1/kline"  # keep it in its warm-up
    task = asyncio.create_task(rt.run())
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while rt.engine is None or not (port := rt.http_port):
                    assert not task.done(), task
                    await asyncio.sleep(0.05)
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/health/live") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.05)
            assert await _armed_row(http, port) == "False"
            control = EngineControl(rt.engine, settings, None, rt.health)
            assert await control.arm("owner") == "live trading ARMED"
            assert await _armed_row(http, port) == "True"
            await control.disarm("owner")
            assert await _armed_row(http, port) == "False"
    finally:
        sim.faults.latency_ms = 0
        rt.stop_event.set()
        await asyncio.wait_for(task, 60)
