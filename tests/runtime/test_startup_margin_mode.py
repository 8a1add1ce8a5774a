"""Start-up puts every traded symbol in the margin mode the engine's orders carry (reference §4.3.3): a symbol left
in CROSS from KuCoin's app refused every ISOLATED entry and protective stop with 330005."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from engine.runtime.app import RunOptions, Runtime
from exchange.simulator import SimulatorServer
from tests.runtime.conftest import live_settings


async def test_a_symbol_in_cross_is_switched_to_isolated_before_trading(sim: SimulatorServer, tmp_path: Path) -> None:
    settings = live_settings(sim, tmp_path)
    sim.set_price("ETHUSDTM", Decimal("2000"))
    sim.state.margin_modes["ETHUSDTM"] = "CROSS"
    rt = Runtime(settings, RunOptions())
    task = asyncio.create_task(rt.run())
    try:
        async with asyncio.timeout(20):
            while rt.engine is None:
                assert not task.done(), task
                await asyncio.sleep(0.05)
        assert sim.state.margin_modes["ETHUSDTM"] == "ISOLATED"
        assert ("POST", "/api/v2/position/changeMarginMode") in sim.requests
    finally:
        rt.stop_event.set()
        await asyncio.wait_for(task, 60)
