"""The position changes size behind the engine's back, as a trader with real money meets it on KuCoin: an entry
IOC the matching engine fills after the placement answered, auto-deleveraging and partial liquidations that take
lots without an order of ours, a person adding to or trimming the position from the app. Each runs through the
simulator and the real client: the stop and the take-profit must cover exactly the lots that are there, and the
books must say what the exchange did."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

import engine.runtime.engine as engine_module
from exchange.models import StopDirection
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_decision

SYM = "ETHUSDTM"


async def stops(rig: Rig) -> dict[StopDirection | None, list[tuple[int, D | None]]]:
    out: dict[StopDirection | None, list[tuple[int, D | None]]] = {}
    for o in await rig.client.open_stop_orders(SYM):
        assert o.reduce_only
        out.setdefault(o.stop, []).append((o.lots, o.stop_price))
    return out


async def test_an_entry_the_matching_engine_fills_after_the_answer_is_managed_for_its_filled_lots(rig: Rig) -> None:
    """KuCoin answers the placement before its matching engine ran the IOC: the first read shows it open with
    nothing filled. The entry waits for the order to be done, then protects the 100 lots that filled (of 179)
    at their average price."""
    rig.sim.faults.match_lag_next(1, 300)
    rig.sim.state.max_taker_lots = 100
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None, rig.engine.entry_refusals  # before: None, "nothing filled ... cancelled"
    fills = [f for f in rig.sim.state.fills if f.opening]
    assert sum(f.size for f in fills) == p.lots == 100 == (await rig.client.position(SYM)).lots
    assert p.entry == sum((f.value for f in fills), D(0)) / (100 * D("0.01"))
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(100, p.stop)] and got[StopDirection.UP] == [(100, p.take_profit)]
    assert rig.engine.risk.last_entry_ms.get(SYM) is not None  # the entry cooldown counts it
    assert await rig.engine.sync_positions() == []


async def test_an_entry_ioc_still_open_after_the_waits_is_cancelled_and_nothing_fills_later(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The matching engine has not run the IOC after the waits: it is cancelled, so its lots can never fill later
    beside an entry the engine reported as placing nothing."""
    monkeypatch.setattr(engine_module, "ENTRY_DONE_WAITS_S", (0.05, 0.05))
    rig.sim.faults.match_lag_next(1, 400)
    assert await rig.engine.enter(SYM, long_decision()) is None
    assert "nothing filled" in rig.engine.entry_refusals[SYM]
    await asyncio.sleep(0.5)  # past the late matching
    assert (await rig.client.position(SYM)).lots == 0 and rig.sim.state.fills == []
