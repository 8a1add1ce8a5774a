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


async def test_a_fresh_start_can_trade_at_once_with_confirmation_history(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    """1,000 primary candles alone give ~166 confirmation candles (< the 200 required): the warm-up must also
    fetch the confirmation timeframe, so the first live candle is decided, not refused as data_not_ready."""
    from engine.marketdata.candle_files import load_candles

    five = load_candles(data_dir, "ETHUSDTM", "5min")
    thirty = load_candles(data_dir, "ETHUSDTM", "30min")
    shift = (int(time.time() * 1000) // 1_800_000 - 1) * 1_800_000 - five[-1].ts - 300_000  # end just before now
    sim.candles[("ETHUSDTM", 5)] = [[c.ts + shift, c.open, c.high, c.low, c.close, c.volume] for c in five]
    sim.candles[("ETHUSDTM", 30)] = [[c.ts + shift, c.open, c.high, c.low, c.close, c.volume] for c in thirty]
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir)
        rt = Runtime(Settings(_env_file=None, symbols=["ETHUSDTM"]), RunOptions())  # type: ignore[call-arg]
        await rt._warm_up(client, rig.engine)
        pipe = rig.engine.pipelines["ETHUSDTM"]
        assert pipe.primary.bars >= 980  # ~1,000 (the shifted series ends up to 35 min before now)
        assert pipe.confirmation.bars > 200  # history + the aggregated buckets, no gap reset
        assert pipe.confirmation.gaps == 0 and pipe.primary.gaps == 0
        assert rig.engine.last_decision["ETHUSDTM"].failing != ["data_not_ready"]

        # Without the confirmation history, the same 1,000 primary candles leave the strategy unable to decide.
        bare = await make_engine(sim, client, db, data_dir)
        history = list(rig.engine.recent_candles["ETHUSDTM"])
        await bare.engine.warm_up("ETHUSDTM", history)
        assert bare.engine.last_decision["ETHUSDTM"].failing == ["data_not_ready"]
        await rig.bus.stop()
        await bare.bus.stop()


async def test_http_and_protection_come_before_the_warm_up(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path
) -> None:
    """systemd checks /health/live 20 s after start and a timer restarts a bot that does not answer; a warm-up
    over many symbols takes minutes, so the HTTP side must be up before it (it used to start after it). And a
    position left without a stop (a crash between entry and stop) is protected before the warm-up, not after."""
    import asyncio
    from decimal import Decimal

    import aiohttp

    from exchange.models import OrderRequest, OrderSide
    from tests.exchange.conftest import KEY, PASSPHRASE, SECRET

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        symbols=["ETHUSDTM"],
        paper_exchange_url=sim.rest_url,
        kucoin_api_key=KEY,
        kucoin_api_secret=SECRET,
        kucoin_api_passphrase=PASSPHRASE,
        db_path=tmp_path / "e.sqlite",
        kill_switch_file=tmp_path / "KILL",
        http_port=0,  # the system's choice, read back from the runtime: a port picked beforehand can be taken meanwhile
    )
    sim.set_price("ETHUSDTM", Decimal("2000"))
    await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 10, leverage=5))  # no stop on it
    assert await client.open_stop_orders("ETHUSDTM") == []
    rt = Runtime(settings, RunOptions())
    sim.faults.latency_ms, sim.faults.latency_prefix = 3000, "/api/v1/kline"  # a warm-up that takes seconds
    task = asyncio.create_task(rt.run())
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while not (port := rt.http_port):
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
            assert rt.engine is not None and rt.stream is None  # still warming up: no stream yet
            async with asyncio.timeout(2.5):  # the first kline request alone takes 3 s
                while not (stops := await client.open_stop_orders("ETHUSDTM")):
                    await asyncio.sleep(0.02)
            assert rt.stream is None  # protected while the warm-up is still running
            assert [(o.reduce_only, o.lots) for o in stops if o.side is OrderSide.SELL][:1] == [(True, 10)]
            async with http.get(f"http://127.0.0.1:{port}/health/ready") as r:
                assert r.status == 503 and (await r.json())["data_fresh"] is False
            async with http.get(f"http://127.0.0.1:{port}/health/live") as r:
                assert (await r.json()) == {"live": True, "phase": "starting"}
    finally:
        sim.faults.latency_ms = 0
        rt.stop_event.set()
        assert await asyncio.wait_for(task, 60) == 0
