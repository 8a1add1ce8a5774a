"""Runtime._warm_up: every symbol's recent history from REST klines through the engine's pipeline."""

from __future__ import annotations

import time
from pathlib import Path

from engine.config.settings import Settings
from engine.models import Candle
from engine.runtime.app import RunOptions, Runtime
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from storage.db import Database
from tests.runtime.conftest import make_engine


async def test_warm_up_feeds_rest_history_once(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    step = 300_000
    now = int(time.time() * 1000)
    last_closed = now - now % step - step
    for i in range(30, -1, -1):
        ts = last_closed - i * step
        sim.candles.setdefault(("ETHUSDTM", 5), []).append([ts, 2000.0, 2001.0, 1999.0, 2000.5, 10.0])
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir)
        rt = Runtime(Settings(_env_file=None, symbols=["ETHUSDTM"]), RunOptions())  # type: ignore[call-arg]
        await rt._warm_up(client, rig.engine)
        pipe = rig.engine.pipelines["ETHUSDTM"]
        assert pipe.primary.last_ts == last_closed
        assert len(rig.engine.recent_candles["ETHUSDTM"]) == 31
        await rt._warm_up(client, rig.engine)  # again: nothing is applied twice
        assert len(rig.engine.recent_candles["ETHUSDTM"]) == 31
        assert rig.engine.recent_candles["ETHUSDTM"][-1] == Candle(last_closed, 2000.0, 2001.0, 1999.0, 2000.5, 10.0)
        await rig.bus.stop()
