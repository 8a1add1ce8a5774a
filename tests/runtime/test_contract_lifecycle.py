"""KuCoin changes a contract under a running bot (reference §4.1.2 ``status``, §6.10 step 2): the specs are read
again, a contract that is not Open takes no entry, each status change is announced once (loudly with a position
open on it), a new tick size is used for the next stop move without ever untrailing, a delisted contract is
taken for Closed, and a failed refresh or a malformed row keeps the last specs. All through the simulator's
loopback /sim/contract hook and the real client."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from bot.formatting import format_event
from engine.events import ContractChanged, HealthChanged, OrderRejected, StopMissing
from engine.models import Candle
from engine.risk.contract import load_contract_specs
from engine.runtime.app import RunOptions, Runtime
from engine.runtime.contracts import LOOKUPS_PER_REFRESH, ContractWatch
from engine.runtime.control import EngineControl
from engine.runtime.protection import Protected
from engine.runtime.trading_state import TradingState
from exchange.models import OrderRequest, OrderSide, StopDirection
from exchange.simulator import SimulatorServer
from exchange.simulator.server import contract_from
from tests.runtime.conftest import Rig, live_settings
from tests.runtime.test_engine import live_stops, long_decision
from tests.runtime.test_paper_faults import running

__all__ = ["running"]


async def sim_contract(sim: SimulatorServer, symbol: str, listed: bool | None = None, **fields: Any) -> None:
    """KuCoin changes ``symbol``: through the simulator's loopback hook, over a real socket."""
    body: dict[str, Any] = {"symbol": symbol, "fields": fields}
    if listed is not None:
        body["listed"] = listed
    async with aiohttp.ClientSession() as http, http.post(f"{sim.rest_url}/sim/contract", json=body) as r:
        assert r.status == 200, await r.text()


async def alerts(rig: Rig) -> list[ContractChanged]:
    await rig.bus.drain()
    return [e for e in rig.events if isinstance(e, ContractChanged)]


async def test_a_paused_contract_refuses_entries_and_each_change_is_told_once(rig: Rig) -> None:
    watch = ContractWatch(rig.engine, ["ETHUSDTM"])
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    assert await watch.refresh()
    assert rig.engine.specs["ETHUSDTM"].status == "Paused"
    assert rig.engine.contract_blocked("ETHUSDTM") == "contract ETHUSDTM is Paused"
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert rig.engine.entry_refusals["ETHUSDTM"] == "contract ETHUSDTM is Paused"  # what the approval card shows
    assert (await rig.client.position("ETHUSDTM")).lots == 0
    # A passing bar on it says why it placed nothing, without asking anyone to approve it (the pipeline's
    # verdict is given: the bar's scoring is not what is tested here).
    rig.engine.options.control = "manual"
    rig.engine._apply = lambda symbol, candle: long_decision()  # type: ignore[method-assign]
    await rig.engine.on_closed_candle("ETHUSDTM", Candle(0, 2000.0, 2001.0, 1999.0, 2000.0, 1.0))
    assert rig.engine.pending_entries == {}
    assert rig.engine.approvals is not None and await rig.engine.approvals.expired(2**62) == []

    # Flapping: Paused seen again and again is one alert; each real change is one more, never a storm.
    for status in ("Paused", "Paused", "Open", "Open", "Paused", "Open", "Open"):
        await sim_contract(rig.sim, "ETHUSDTM", status=status)
        assert await watch.refresh()
    told = [(e.old_status, e.status, e.loud) for e in await alerts(rig)]
    assert told == [
        ("Open", "Paused", False),
        ("Paused", "Open", False),
        ("Open", "Paused", False),
        ("Paused", "Open", False),
    ]
    assert rig.engine.contract_blocked("ETHUSDTM") is None
    first = (await alerts(rig))[0]
    assert format_event(first) == (
        "⚠️ <b>ETHUSDTM contract Paused</b> (was Open)\nno new entries on it until it is Open again"
    )
    refused = [e.reason for e in rig.events if isinstance(e, OrderRejected)]
    assert refused == ["contract ETHUSDTM is Paused", "contract ETHUSDTM is Paused"]
    p = await rig.engine.enter("ETHUSDTM", long_decision())  # Open again: it trades
    assert p is not None and p.lots == 179


async def test_settlement_with_a_position_open_is_loud_and_the_stop_is_never_untrailed(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    before = await live_stops(rig)
    watch = ContractWatch(rig.engine, ["ETHUSDTM"])
    await sim_contract(rig.sim, "ETHUSDTM", status="BeingSettled")
    assert await watch.refresh()
    (alert,) = await alerts(rig)
    assert (alert.status, alert.position, alert.loud) == ("BeingSettled", "long 179 lots", True)
    text = format_event(alert)
    assert text is not None
    assert text.startswith("🚨 <b>ETHUSDTM contract BeingSettled</b> (was Open) with your long 179 lots open")
    assert "may be closed by the exchange at its settlement price" in text
    assert "its stop can no longer be moved" in text
    assert await live_stops(rig) == before  # the stop and TP on the exchange stay

    # A mark that would move the stop: KuCoin refuses the order on a settling contract (200003). The old stop
    # stays, the move waits in the retry queue, the engine runs on.
    rig.engine.clock = lambda: 1_800_000_000_000
    rig.sim.set_price("ETHUSDTM", D("2014.50"))
    assert not await rig.engine.on_mark("ETHUSDTM", D("2014.50"))
    assert [s for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [(StopDirection.DOWN, D("1989.29"))]
    assert await rig.engine.retry.depth() == 1


async def test_a_new_tick_size_rounds_the_next_stop_moves_without_untrailing(rig: Rig) -> None:
    rig.sim.state.reject_off_tick_stops = True  # the strict reading of §6.1's tick rule
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None and p.stop == D("1989.29")
    watch = ContractWatch(rig.engine, ["ETHUSDTM"])
    await sim_contract(rig.sim, "ETHUSDTM", tickSize=0.5)
    assert await watch.refresh()
    (alert,) = await alerts(rig)
    assert alert.changes == ["tick size 0.01 → 0.5"]
    assert rig.engine.specs["ETHUSDTM"].tick_size == D("0.5")
    assert rig.engine.managed["ETHUSDTM"].rule.tick == D("0.5")  # its next candidates come on the new grid

    # Break-even at 2010: on the old grid 2003.92, which KuCoin now refuses; on the new one 2004.0 (rounded up,
    # the protective way).
    rig.engine.clock = lambda: 1_800_000_000_000
    rig.sim.set_price("ETHUSDTM", D("2010.00"))
    assert await rig.engine.on_mark("ETHUSDTM", D("2010.00"))
    assert (p.stop, p.stop_reason) == (D("2004.0"), "break_even")
    assert [s for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [(StopDirection.DOWN, D("2004.0"))]

    # The stop is cancelled by hand: re-placed at its level on the new grid, rounded tighter (never 2003.5).
    p.stop = D("2003.92")  # as if it had been set on the old grid
    await rig.client.cancel_order(p.stop_order_id or "")
    assert await rig.engine.sync_positions() == ["ETHUSDTM: stop missing"]
    assert p.stop == D("2004.0")
    assert [s for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [(StopDirection.DOWN, D("2004.0"))]


async def test_a_stop_placed_on_the_new_grid_but_saved_at_the_old_price_is_taken_over_not_doubled(rig: Rig) -> None:
    """What a crash between a re-placed stop landing and its save left before the fix (the rounded price was saved
    only with the id): the old-grid level stored, no id, the stop live at the rounded level. The next look took
    only the stored price for ours and placed a second stop beside it (2 live); now the live one at the level
    rounded onto the current grid is taken over, with its price (the chaos rig proves the crash itself)."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None and p.stop == D("1989.29")
    await sim_contract(rig.sim, "ETHUSDTM", tickSize=0.5)
    assert await ContractWatch(rig.engine, ["ETHUSDTM"]).refresh()
    await rig.client.cancel_order(p.stop_order_id or "")
    assert await rig.engine.sync_positions() == ["ETHUSDTM: stop missing"]  # re-placed on the new grid
    landed = p.stop_order_id
    assert landed is not None and p.stop == D("1989.5")
    p.stop_order_id, p.stop = None, D("1989.29")  # as the crash left it
    await rig.engine.positions_repo.save(p.row())
    await rig.engine.coordinator.protect(p)
    assert (p.stop_order_id, p.stop) == (landed, D("1989.5"))
    assert [s for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [(StopDirection.DOWN, D("1989.5"))]
    assert (await rig.engine.positions_repo.all())[0]["stop_order_id"] == landed


async def test_a_new_multiplier_sizes_the_next_entry(rig: Rig) -> None:
    watch = ContractWatch(rig.engine, ["ETHUSDTM"])
    await sim_contract(rig.sim, "ETHUSDTM", multiplier=0.1, lotSize=1, maxLeverage=50)
    assert await watch.refresh()
    (alert,) = await alerts(rig)
    assert alert.changes == ["multiplier 0.01 → 0.1", "max leverage 100 → 50"]
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    # 200 USDT margin × 18 / (2000.01 × 0.1) = 17.99 → 17 lots; on the old multiplier 179 lots, ten times the size.
    assert p is not None and p.lots == 17
    assert (await rig.client.position("ETHUSDTM")).lots == 17


async def test_a_delisted_contract_is_taken_for_closed_and_never_crashes(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    watch = ContractWatch(rig.engine, ["ETHUSDTM"])
    await sim_contract(rig.sim, "ETHUSDTM", listed=False)
    assert await watch.refresh()
    assert await watch.refresh()  # still gone: no second alert
    (alert,) = await alerts(rig)
    assert (alert.old_status, alert.status, alert.loud) == ("Open", "Closed (no longer listed by KuCoin)", True)
    text = format_event(alert) or ""
    assert "closed or delisted" in text and "check the position on KuCoin" in text
    assert rig.engine.contract_blocked("ETHUSDTM") == "contract ETHUSDTM is Closed"
    rig.engine.managed.pop("ETHUSDTM")  # a second position cannot be entered: refused, not a KeyError
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert rig.engine.entry_refusals["ETHUSDTM"] == "contract ETHUSDTM is Closed"


async def test_a_failed_refresh_keeps_the_specs_and_is_retried_soon(rig: Rig) -> None:
    rig.client.max_attempts = 1
    now = [1000.0]
    watch = ContractWatch(rig.engine, ["ETHUSDTM"], refresh_s=720, retry_s=60, monotonic=lambda: now[0])
    spec = rig.engine.specs["ETHUSDTM"]
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    rig.sim.faults.server_error_next(1, "/api/v1/contracts")
    now[0] = 1720.0
    await watch.tick()  # due: the read fails; nothing raised
    assert rig.engine.specs["ETHUSDTM"] is spec and watch.failures == 1
    assert watch.next_due == 1780.0  # a minute later, not twelve
    now[0] = 1779.0
    await watch.tick()
    assert rig.engine.specs["ETHUSDTM"] is spec  # not due yet
    now[0] = 1780.0
    await watch.tick()
    assert rig.engine.specs["ETHUSDTM"].status == "Paused" and watch.failures == 0
    assert watch.next_due == 1780.0 + 720
    watch.stale()  # a stream reconnect: looked at again at once
    await sim_contract(rig.sim, "ETHUSDTM", status="Open")
    await watch.tick()
    assert rig.engine.specs["ETHUSDTM"].is_open


async def test_one_malformed_row_keeps_its_last_spec_and_spares_the_others(rig: Rig, data_dir: Path) -> None:
    rig.engine.specs["XBTUSDTM"] = load_contract_specs(data_dir / "contracts.json")["XBTUSDTM"]
    xbt = rig.engine.specs["XBTUSDTM"]
    watch = ContractWatch(rig.engine, ["ETHUSDTM", "XBTUSDTM"])
    await sim_contract(rig.sim, "XBTUSDTM", tickSize="abc")
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    assert await watch.refresh()
    assert await watch.refresh()
    assert rig.engine.specs["XBTUSDTM"] is xbt  # its last good spec
    assert rig.engine.specs["ETHUSDTM"].status == "Paused"  # the good row applied all the same
    await rig.bus.drain()
    health = [e.detail for e in rig.events if isinstance(e, HealthChanged)]
    assert len(health) == 1 and health[0].startswith("KuCoin sent a malformed contract row (malformed contract")
    assert [e.symbol for e in await alerts(rig)] == ["ETHUSDTM"]


async def test_a_contract_not_open_at_start_is_watched_but_takes_no_entry(sim: SimulatorServer, tmp_path: Path) -> None:
    settings = live_settings(sim, tmp_path, symbols=["ETHUSDTM", "XBTUSDTM"])
    await sim_contract(sim, "XBTUSDTM", status="Paused")
    rt = Runtime(settings, RunOptions())
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(rt.run())
        try:
            async with asyncio.timeout(30):
                while rt.health.phase != "running":
                    assert not task.done(), task
                    await asyncio.sleep(0.05)
            assert rt.engine is not None and rt.contracts is not None
            assert rt.engine.contract_blocked("XBTUSDTM") == "contract XBTUSDTM is Paused"
            assert rt.engine.contract_blocked("ETHUSDTM") is None
            assert rt.jobs.scheduler.get_job("contracts") is not None
            status = await EngineControl(rt.engine, settings).status()
            assert status["new entries"] == "allowed"  # ETHUSDTM still trades
            assert status["contracts not Open"] == "XBTUSDTM Paused (no entries)"
            # KuCoin opens it while the stream is down: the reconnect makes the next look refresh at once (not
            # 12 minutes later), and entries on it are allowed again.
            await sim_contract(sim, "XBTUSDTM", status="Open")
            assert rt.stream is not None and rt.contracts.next_due > 0
            sim.drop_ws_connections()
            async with asyncio.timeout(20):  # (or the job's own look got there first)
                while rt.contracts.next_due != 0.0 and rt.engine.contract_blocked("XBTUSDTM") is not None:
                    await asyncio.sleep(0.05)
            await rt.contracts.tick()  # the scheduled job's look
            assert rt.engine.contract_blocked("XBTUSDTM") is None
        finally:
            rt.stop_event.set()
            await asyncio.wait_for(task, 60)
    said = [x for x in logs if x["event"] == "contract.not_open"]
    assert [(x["symbol"], x["status"]) for x in said] == [("XBTUSDTM", "Paused")]


async def test_a_contract_left_out_of_the_active_list_is_asked_for_by_name(rig: Rig) -> None:
    """Whether KuCoin's active list keeps a paused contract is not documented: one missing from it is asked for by
    name before it is called delisted; when that question fails too, nothing changes until the next refresh."""
    rig.client.max_attempts = 1
    rig.sim.active_lists_open_only = True
    watch = ContractWatch(rig.engine, ["ETHUSDTM"])
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    rig.sim.faults.server_error_next(1, "/api/v1/contracts/ETHUSDTM")
    assert await watch.refresh()
    assert rig.engine.specs["ETHUSDTM"].is_open and await alerts(rig) == []  # cannot tell: the last spec holds
    assert await watch.refresh()
    (alert,) = await alerts(rig)
    assert (alert.old_status, alert.status) == ("Open", "Paused")  # paused, not "no longer listed"
    assert rig.engine.contract_blocked("ETHUSDTM") == "contract ETHUSDTM is Paused"


async def test_a_listing_that_leaves_out_many_contracts_costs_a_few_lookups_a_refresh_not_one_each(rig: Rig) -> None:
    """A 500-symbol universe whose active list comes back without them (all paused, for a listing that keeps
    only Open ones) asked each one by name in the same refresh: 500 x weight 3 = 1500 of the public pool's 1800 a
    30 s window, so the entries' tickers waited. Now at most LOOKUPS_PER_REFRESH (10) a refresh, the symbol with
    a position first, and the next refresh comes after CONTRACT_RETRY_S to ask the rest."""
    extra = [f"X{i:02d}USDTM" for i in range(40)]
    eth = rig.sim.state.contracts["ETHUSDTM"]
    for sym in extra:
        rig.sim.state.contracts[sym] = contract_from(sym, {**eth.payload, "symbol": sym})
        rig.engine.specs[sym] = dataclasses.replace(rig.engine.specs["ETHUSDTM"], symbol=sym)
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    now = [1000.0]
    watch = ContractWatch(rig.engine, [*extra, "ETHUSDTM"], retry_s=60, monotonic=lambda: now[0])
    rig.sim.active_lists_open_only = True
    for sym in [*extra, "ETHUSDTM"]:
        await sim_contract(rig.sim, sym, status="Paused")
    rig.sim.requests.clear()
    assert await watch.refresh()
    asked = [path for _, path in rig.sim.requests if path.startswith("/api/v1/contracts/") and "active" not in path]
    assert len(asked) == LOOKUPS_PER_REFRESH == 10  # was 41
    assert "/api/v1/contracts/ETHUSDTM" in asked  # the position's contract is among them
    assert rig.engine.specs["ETHUSDTM"].status == "Paused"
    assert watch.next_due == 1060.0  # the rest within a minute, not 12
    for _ in range(4):
        assert await watch.refresh()
    assert all(rig.engine.specs[s].status == "Paused" for s in extra)  # every one asked by the fifth refresh


async def stop_lost_while_paused(rig: Rig) -> Protected:
    """A long on ETHUSDTM whose contract the bot has seen go Paused, and whose stop is then cancelled on the
    exchange: every re-placement will be refused (200003) until the contract is Open again."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    watch = ContractWatch(rig.engine, ["ETHUSDTM"])
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    assert await watch.refresh()
    await rig.client.cancel_order(p.stop_order_id or "")
    return p


async def test_a_stop_that_cannot_be_replaced_on_a_paused_contract_is_told_once_not_every_round(rig: Rig) -> None:
    """The stop is gone (cancelled by hand, or by KuCoin) while the contract is Paused: every re-placement is
    refused (200003) until it is Open again. The trader hears it is missing and why, once each; before, 30
    'has no live stop' messages in 10 rounds of reconciliation and retry (5 minutes), 'stop None not on the
    exchange' among them. The retries go on, quietly, and the stop is placed as soon as KuCoin takes it."""
    p = await stop_lost_while_paused(rig)
    t = 1_800_000_000_000
    for _ in range(10):
        rig.engine.clock = lambda t=t: t  # type: ignore[misc]
        assert await rig.engine.sync_positions() == ["ETHUSDTM: stop missing"]  # new entries keep waiting
        await rig.engine.run_retries()
        t += 31_000
    await rig.bus.drain()
    told = [e.detail for e in rig.events if isinstance(e, StopMissing)]
    assert len(told) == 2  # was 30
    assert told[0].endswith("not on the exchange") and "None" not in told[0]
    assert told[1] == "placing protection: 200003: Contract ETHUSDTM is Paused: orders are not accepted"
    assert p.stop_order_id is None and await rig.engine.retry.depth() == 1  # still being retried
    await sim_contract(rig.sim, "ETHUSDTM", status="Open")
    rig.engine.clock = lambda: t + 60_000
    await rig.engine.run_retries()
    assert p.stop_order_id is not None
    assert [s for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [(StopDirection.DOWN, D("1989.29"))]
    # Missing again later, for the same reason: told again (a new episode, not a repeat).
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    await rig.client.cancel_order(p.stop_order_id or "")
    assert await rig.engine.sync_positions() == ["ETHUSDTM: stop missing"]
    await rig.bus.drain()
    assert len([e for e in rig.events if isinstance(e, StopMissing)]) == 4


async def test_a_stop_still_refused_is_told_again_every_15_minutes_not_every_round(rig: Rig) -> None:
    """Told once a reason (above), a stop that stays missing was never mentioned again however long the contract
    stayed Paused: hours of an unprotected position after one message. Now a reminder every 15 minutes of
    refusals, saying for how long; the 30 s retries between stay quiet."""
    await stop_lost_while_paused(rig)
    t = 1_800_000_000_000
    for _ in range(70):  # 35 minutes of retries every 30 s
        rig.engine.clock = rig.engine.coordinator.clock = lambda t=t: t  # type: ignore[misc]
        await rig.engine.sync_positions()
        await rig.engine.run_retries()
        t += 30_000
    await rig.bus.drain()
    told = [e.detail for e in rig.events if isinstance(e, StopMissing)]
    refused = "placing protection: 200003: Contract ETHUSDTM is Paused: orders are not accepted"
    assert told[1:] == [
        refused,
        f"{refused} (still no stop, 15 min after it was first refused)",
        f"{refused} (still no stop, 30 min after it was first refused)",
    ]


@pytest.mark.parametrize("running", ["1"], indirect=True)
async def test_the_same_drift_found_round_after_round_is_announced_once(running: Runtime) -> None:
    """A stop that cannot be re-placed on a Paused contract keeps each scheduled reconciliation finding 'stop
    missing': new entries stay paused (REDUCING), but the trader was sent '⚠️ Drift: ETHUSDTM: stop missing — new
    entries paused' every 30 s (4 in 4 rounds before); now once, again only when the differences change, and
    the clearing is announced as before."""
    rt = running
    assert rt.engine is not None and rt.reconcile is not None and rt.contracts is not None
    body = {"clientOid": "web-hand-1", "symbol": "ETHUSDTM", "side": "buy", "type": "market", "size": 10}
    rt.sim.state.place(body | {"leverage": 5, "marginMode": "ISOLATED"})  # a person's position: adopted
    async with asyncio.timeout(10):
        while "ETHUSDTM" not in rt.engine.managed or rt.engine.managed["ETHUSDTM"].protection.stop_order_id is None:
            await asyncio.sleep(0.05)
    await rt.reconcile()  # the adoption's drift cleared
    assert rt.health.reconciliation_clean
    p = rt.engine.managed["ETHUSDTM"].protection
    await sim_contract(rt.sim, "ETHUSDTM", status="Paused")
    assert await rt.contracts.refresh()
    await rt.engine.client.cancel_order(p.stop_order_id or "")
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):
            await rt.reconcile()
        assert rt.engine.state is TradingState.REDUCING
        await sim_contract(rt.sim, "ETHUSDTM", status="Open")
        await rt.reconcile()  # the stop is re-placed: no difference left after this round ...
        await rt.reconcile()  # ... and this one says so
        await rt.bus.drain()
    kinds = [x["event"] for x in logs if x["event"] in ("drift_detected", "drift_cleared")]
    assert kinds == ["drift_detected", "drift_cleared"]  # was 5 x drift_detected, then drift_cleared
    assert rt.engine.state is TradingState.ACTIVE and p.stop_order_id is not None


async def test_a_new_position_whose_stop_is_refused_is_told_even_if_the_last_one_was(rig: Rig) -> None:
    """What was told of a closed position's missing stop is not this position's: a position opened by hand after
    it, whose stop KuCoin refuses for the same reason (200003), is told 'has no live stop' too (before: silent)."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    await rig.client.cancel_order(p.stop_order_id or "")
    await rig.engine.sync_positions()  # told: gone, and why it cannot be re-placed
    await sim_contract(rig.sim, "ETHUSDTM", status="Open")
    await rig.client.place_order(OrderRequest("ETHUSDTM", OrderSide.SELL, 179, reduce_only=True))  # closed by hand
    await rig.engine.sync_positions()
    assert "ETHUSDTM" not in rig.engine.managed
    await rig.client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 20, leverage=10))  # a new one, by hand
    await sim_contract(rig.sim, "ETHUSDTM", status="Paused")
    await rig.engine.sync_positions()  # adopted; its stop refused
    assert rig.engine.managed["ETHUSDTM"].protection.stop_order_id is None
    await rig.bus.drain()
    told = [e.detail for e in rig.events if isinstance(e, StopMissing)]
    assert told[-1] == "placing protection: 200003: Contract ETHUSDTM is Paused: orders are not accepted"
    assert len(told) == 3  # was 2
