"""A restart keeps today's loss limit, loss streak and cooldowns (they lived only in memory and a restart cleared
them: a bot halted by the 5 % daily loss limit traded again after ./start.sh stop && ./start.sh)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from engine.config.errors import ConfigError
from engine.config.settings import Settings
from engine.events import OrderRejected, PositionClosed, PositionOpened
from engine.gates.result import GateResult
from engine.marketdata.candle_files import load_candles
from engine.runtime.app import RunOptions, Runtime
from engine.scoring.pipeline import Decision
from engine.scoring.signals import Direction
from tests.runtime.conftest import Rig

NOW = 1_800_000_000_000  # 2027-01-15 08:00 UTC
HOUR = 3_600_000


def closed(symbol: str, net: str, ts: int) -> PositionClosed:
    return PositionClosed(
        ts_ms=ts,
        symbol=symbol,
        side="long",
        exit_reason="stop_loss",
        entry=D("2000"),
        exit=D("1989"),
        gross=D(net),
        fees=D(0),
        funding=D(0),
        net=D(net),
    )


async def test_a_restart_keeps_the_daily_loss_limit(rig: Rig) -> None:
    for e in (
        PositionOpened(
            ts_ms=NOW - 3 * HOUR,
            symbol="ETHUSDTM",
            side="long",
            lots=1,
            entry=D(1),
            leverage=1,
            stop=D(1),
            take_profit=D(2),
        ),
        closed("XBTUSDTM", "-250", NOW - 2 * HOUR),
        closed("ETHUSDTM", "-300", NOW - 600_000),  # 10 minutes ago: inside the 30-minute loss cooldown
    ):
        await rig.log.append(e)
    rig.engine.clock = lambda: NOW
    await rig.engine.restore_risk(rig.log)
    risk = rig.engine.risk
    assert risk.realized_today == D(-550) and risk.consecutive_losses == 2
    assert risk.daily_pnl_pct == D(-550) / D(10550) * 100  # of the start-of-day equity: 10,000 + 550
    decision = Decision(
        "ETHUSDTM", 0, 2000.0, 92.9, "STRONG_BUY", Direction.BULLISH, 0.98, 0.35, [GateResult("all", True)]
    )
    assert await rig.engine.enter("ETHUSDTM", decision) is None
    await rig.bus.drain()
    refused = [e for e in rig.events if isinstance(e, OrderRejected)]
    assert refused and refused[-1].reason == "daily_loss_limit,loss_cooldown"


async def test_a_paper_replay_starts_its_day_on_the_first_replayed_candle(tmp_path: Path, data_dir: Path) -> None:
    settings = Settings(_env_file=None, symbols=["ETHUSDTM", "XBTUSDTM"], db_path=tmp_path / "e.sqlite")  # type: ignore[call-arg]
    rt = Runtime(settings, RunOptions(replay_dir=data_dir))
    client = await rt._exchange()
    try:
        first = min(load_candles(data_dir, s, "5min")[0].ts for s in ("ETHUSDTM", "XBTUSDTM"))
        assert rt.market_clock() == first
    finally:
        await client.close()
        await rt.sim.stop()


async def test_a_paper_replay_without_candle_files_says_so(tmp_path: Path, data_dir: Path) -> None:
    import pytest

    settings = Settings(_env_file=None, symbols=["ETHUSDTM"], db_path=tmp_path / "e.sqlite")  # type: ignore[call-arg]
    rt = Runtime(settings, RunOptions(replay_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"^paper replay: no contracts.json in .*fetch-candles --symbols ETHUSDTM"):
        await rt._exchange()
    (tmp_path / "contracts.json").write_text((data_dir / "contracts.json").read_text())
    with pytest.raises(ConfigError, match=r"^paper replay: no candle file for ETHUSDTM 5min in .*fetch-candles"):
        await rt._exchange()
    assert rt.sim is None  # nothing was started


async def test_a_background_task_that_dies_raises_an_alarm(tmp_path: Path, data_dir: Path) -> None:
    """A task beside the engine that died (here the replay) used to leave the bot running idle without a word.
    (A corrupt candle file is refused at start-up now; the replay is made to fail midway instead.)"""
    import asyncio
    from typing import Any

    from engine.events import Event, HealthChanged

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, symbols=["ETHUSDTM"], db_path=tmp_path / "e.sqlite", http_port=0
    )
    rt = Runtime(settings, RunOptions(replay_dir=data_dir, speed="max"))
    alarms: list[HealthChanged] = []

    async def record(e: Event) -> None:
        if isinstance(e, HealthChanged) and not e.healthy:
            alarms.append(e)

    async def replay_that_breaks(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.1)
        raise OSError("disk read error")

    rt.bus.subscribe("test", record)
    task = asyncio.create_task(rt.run())
    try:
        async with asyncio.timeout(30):
            while rt.lanes is None:  # set up, and the replay not started yet (it waits for the stream)
                await asyncio.sleep(0.005)
        rt._replay = replay_that_breaks
        async with asyncio.timeout(30):
            while not alarms:
                await asyncio.sleep(0.05)
        assert (alarms[0].component, alarms[0].detail) == ("replay", "stopped: disk read error")
    finally:
        rt.stop_event.set()
        assert await asyncio.wait_for(task, 60) == 0
