"""Per-symbol lanes: in order within a symbol, independent across symbols, and a failure never stops a lane."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

from engine.runtime.lanes import Lanes
from exchange.simulator import SimulatorServer
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_decision


async def test_a_lane_keeps_order_and_a_slow_lane_does_not_hold_up_another() -> None:
    lanes = Lanes()
    seen: list[str] = []
    release = asyncio.Event()

    def job(name: str, wait: asyncio.Event | None = None) -> object:
        async def run() -> None:
            if wait is not None:
                await wait.wait()  # e.g. a stop replace waiting on REST
            seen.append(name)

        return run

    lanes.submit("ETH", job("eth-1", release))  # type: ignore[arg-type]
    lanes.submit("ETH", job("eth-2"))  # type: ignore[arg-type]
    lanes.submit("XBT", job("xbt-1"))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert seen == ["xbt-1"]  # XBT went on while ETH waited; ETH's second message waits behind its first
    assert lanes.depth() == 1
    release.set()
    await lanes.drain()
    assert seen == ["xbt-1", "eth-1", "eth-2"]
    await lanes.stop()


async def test_a_failing_job_is_counted_and_the_lane_goes_on() -> None:
    lanes = Lanes()
    done: list[int] = []

    async def bad() -> None:
        raise ValueError("markPrice is not a number")

    async def good() -> None:
        done.append(1)

    lanes.submit("ETH", bad)
    lanes.submit("ETH", good)
    await lanes.drain()
    assert (lanes.failures, done) == (1, [1])
    await lanes.stop()


async def test_concurrent_entries_never_exceed_max_positions(rig: Rig, data_dir: Path, sim: SimulatorServer) -> None:
    """Two symbols passing their gates at the same candle close, handled in two lanes at once: the entry lock
    makes the second see the first, so max_open_positions holds."""
    from engine.models import Side
    from engine.risk.contract import load_contract_specs

    specs = load_contract_specs(data_dir / "contracts.json")
    for sym, price in (("XBTUSDTM", "90000"), ("SOLUSDTM", "150")):
        rig.engine.specs[sym] = specs[sym]
        sim.set_price(sym, D(price))
    cfg = rig.engine.cfg
    rig.engine.cfg = cfg.model_copy(
        update={"risk_management": cfg.risk_management.model_copy(update={"max_open_positions": 2})}
    )
    await rig.engine.adopt("SOLUSDTM", Side.LONG, 1, D("150"), 5)
    assert len(rig.engine.managed) == 1  # one slot left
    eth = long_decision()
    xbt = long_decision()
    object.__setattr__(xbt, "symbol", "XBTUSDTM")
    results = await asyncio.gather(rig.engine.enter("ETHUSDTM", eth), rig.engine.enter("XBTUSDTM", xbt))
    assert sum(r is not None for r in results) == 1
    assert len(rig.engine.managed) == 2
    await rig.bus.drain()
    rejected = [e for e in rig.events if e.kind == "order_rejected"]
    assert len(rejected) == 1 and "max_positions" in rejected[0].reason  # type: ignore[attr-defined]


async def test_the_backlog_gauge_reads_the_lanes_live() -> None:
    from prometheus_client import generate_latest

    from engine.runtime.http import Metrics

    metrics, lanes, release = Metrics(), Lanes(), asyncio.Event()

    async def stuck() -> None:
        await release.wait()

    async def quick() -> None:
        return None

    metrics.lane_backlog.set_function(lanes.depth)
    lanes.submit("ETH", stuck)
    lanes.submit("ETH", quick)
    lanes.submit("ETH", quick)
    await asyncio.sleep(0.01)
    assert b"enygma_lane_backlog 2.0" in generate_latest(metrics.registry)  # two wait behind the stuck one
    release.set()
    await lanes.drain()
    assert b"enygma_lane_backlog 0.0" in generate_latest(metrics.registry)
    await lanes.stop()


async def test_a_reconciliation_during_an_entry_does_not_adopt_the_position_twice(rig: Rig) -> None:
    """The entry runs in its symbol's lane while the exchange's position push triggers a reconciliation in the
    account lane: the reconciliation must not adopt the fresh position as unmanaged (two stops, two TPs)."""
    rig.sim.faults.latency_ms = 40  # every request takes a while: the position exists before the entry returns
    entry = asyncio.create_task(rig.engine.enter("ETHUSDTM", long_decision()))
    while (await rig.client.position("ETHUSDTM")).lots == 0:  # the entry order has filled on the exchange
        await asyncio.sleep(0.005)
    assert "ETHUSDTM" not in rig.engine.managed  # ... and the engine has not taken it over yet
    diffs = await rig.engine.sync_positions()
    assert await entry is not None
    rig.sim.faults.latency_ms = 0
    stops = await rig.client.open_stop_orders("ETHUSDTM")
    assert len(stops) == 2, stops  # one stop, one take-profit
    assert not any("adopted" in d for d in diffs)
    await rig.bus.drain()
    assert [e.kind for e in rig.events].count("position_opened") == 1


async def test_a_burst_of_triggers_runs_a_queued_job_once_more_not_once_each() -> None:
    """KuCoin pushes position.change every few seconds per open position (mark-price subsets too): each one queued
    a full reconciliation (a position listing and a stop listing per symbol) behind the last."""
    lanes = Lanes()
    runs = 0
    started, release = asyncio.Event(), asyncio.Event()

    async def reconcile() -> None:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()

    assert lanes.submit_once("account", reconcile)
    await started.wait()  # the first pass is running
    queued = [lanes.submit_once("account", reconcile) for _ in range(20)]  # twenty pushes meanwhile
    assert queued == [True] + [False] * 19  # one more pass, for all of them
    release.set()
    await lanes.drain()
    assert runs == 2
    await lanes.stop()


def test_mark_price_position_pushes_do_not_trigger_a_reconciliation() -> None:
    from engine.runtime.lanes import position_push_changes_position

    mark_only = {"markPrice": 2010.5, "markValue": 3.6, "unrealisedPnl": 0.2, "currentTimestamp": 1}
    assert not position_push_changes_position(mark_only)
    assert position_push_changes_position({"currentQty": 0, "changeReason": "positionChange"})
    assert position_push_changes_position({"changeReason": "liquidation"})
