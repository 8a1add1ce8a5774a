"""Start-up puts every traded symbol in the margin mode the engine's orders carry (reference §4.3.3): a symbol left
in CROSS from KuCoin's app refused every ISOLATED entry and protective stop with 330005."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from engine.config.settings import Settings
from engine.runtime.app import RunOptions, Runtime
from exchange.simulator import SimulatorServer
from tests.exchange.conftest import KEY, PASSPHRASE, SECRET


async def test_a_symbol_in_cross_is_switched_to_isolated_before_trading(sim: SimulatorServer, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        bot_mode="live",
        symbols=["ETHUSDTM"],
        kucoin_rest_url=sim.rest_url,
        kucoin_spot_rest_url=sim.rest_url,
        kucoin_api_key=KEY,
        kucoin_api_secret=SECRET,
        kucoin_api_passphrase=PASSPHRASE,
        db_path=tmp_path / "e.sqlite",
        kill_switch_file=tmp_path / "KILL",
        http_port=0,  # not used here: the system's choice, no port picked beforehand that another could take
    )
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
