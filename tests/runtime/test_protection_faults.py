"""Protection under exchange faults: an ambiguous stop placement must never leave two stops behind."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.models import Side
from exchange.models import OrderRequest, OrderSide
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_decision


async def test_stop_placement_whose_reply_and_lookups_are_lost_leaves_one_stop(rig: Rig) -> None:
    """The stop POST executes but its reply is lost, and so are the lookups by clientOid: the placement fails
    with the stop live on the exchange. The retry must find that stop, not place a second one."""
    await rig.client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 20, leverage=10))
    rig.sim.faults.lose_reply_next(40, "/api/v1/orders")  # the POST and every lookup under /api/v1/orders
    p = await rig.engine.adopt("ETHUSDTM", Side.LONG, 20, D("2000.40"), 10)
    assert p.stop_order_id is None  # the engine could not confirm it
    assert len([o for o in rig.sim.state.orders.values() if o.is_stop_pending]) == 1  # but it is live
    rig.sim.faults.reset()
    rig.engine.clock = lambda: 1_900_000_000_000
    await rig.engine.run_retries()
    stops = await rig.client.open_stop_orders("ETHUSDTM")
    downs = [o for o in stops if o.stop is not None and o.stop.value == "down"]
    assert len(downs) == 1, f"{len(downs)} stop-loss orders on the exchange"
    assert p.stop_order_id == downs[0].id
    assert len(stops) == 2  # one stop, one take-profit


async def test_a_position_that_grew_behind_the_engine_gets_a_stop_for_all_of_it(rig: Rig) -> None:
    """The exchange holds more lots than the engine placed stops for (an entry that landed late, a fill the engine
    missed). The reconciliation notices the difference; the stop and take-profit must then cover the whole
    position, or a stop-out leaves the rest open without any protection."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    await rig.client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 20, leverage=18))
    diffs = await rig.engine.sync_positions()
    assert diffs == ["ETHUSDTM: engine 179 lots, exchange 199"]
    stops = await rig.client.open_stop_orders("ETHUSDTM")
    assert sorted(o.lots for o in stops) == [199, 199]
    rig.sim.set_price("ETHUSDTM", p.stop - D("5"))  # through the stop
    assert (await rig.client.position("ETHUSDTM")).lots == 0


async def test_no_stop_order_outlives_its_position(rig: Rig) -> None:
    """A take-profit extension whose placement failed without an answer is live on the exchange but unknown to
    the engine. When the position closes, no reduce-only stop of the symbol may stay behind: left there, it
    would close the next position on the symbol at a level chosen for the old one."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    rig.sim.faults.lose_reply_next(40, "/api/v1/orders")
    await rig.engine.coordinator.move_take_profit(p, p.take_profit + D("10.00"))
    rig.sim.faults.reset()
    rig.engine.clock = lambda: 1_900_000_000_000
    await rig.engine.run_retries()
    assert len(await rig.client.open_stop_orders("ETHUSDTM")) == 3  # stop, take-profit and the unknown one
    rig.sim.set_price("ETHUSDTM", p.stop - D("5"))  # stopped out
    await rig.engine.sync_positions()
    assert "ETHUSDTM" not in rig.engine.managed
    assert await rig.client.open_stop_orders("ETHUSDTM") == []


async def test_hedge_mode_reconciliation_compares_the_managed_side_only(rig: Rig) -> None:
    """In hedge mode a symbol can hold a LONG and a SHORT. The reconciliation must compare the managed long with
    the exchange's long: taking the short's size for it resized the long's protection to the short's lots (a
    stop for 20 of 179 lots)."""
    await rig.client.set_position_mode(hedge=True)
    rig.engine.options.hedge = rig.engine.coordinator.hedge = True
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None and p.lots == 179
    await rig.client.place_order(OrderRequest("ETHUSDTM", OrderSide.SELL, 20, leverage=10, position_side="SHORT"))
    assert await rig.engine.sync_positions() == []
    assert p.lots == 179 and rig.engine.managed["ETHUSDTM"].protection is p
    assert sorted(o.lots for o in await rig.client.open_stop_orders("ETHUSDTM")) == [179, 179]


async def test_a_kill_switch_that_cannot_see_the_positions_leaves_their_stops(rig: Rig) -> None:
    """The kill switch cancelled every stop first and only then listed the positions to close: when that listing
    failed (flaky exchange), the positions stayed open with no stop at all. Nothing protective is cancelled
    before the position it protects is closed."""
    from exchange.errors import ExchangeError

    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    rig.sim.faults.lose_reply_next(100, "/api/v1/positions")
    with pytest.raises(ExchangeError):  # it says it failed; it must not leave the position naked
        await rig.engine.kill_switch()
    rig.sim.faults.reset()
    assert (await rig.client.position("ETHUSDTM")).lots == p.lots  # it could not close it
    assert len([o for o in await rig.client.open_stop_orders("ETHUSDTM") if o.stop_price == p.stop]) == 1


async def test_a_kill_switch_close_that_fails_keeps_that_positions_stop(rig: Rig) -> None:
    from exchange.errors import ExchangeError

    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    client = rig.engine.client
    real_place = client.place_order

    async def refuse_closes(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        if req.reduce_only and req.stop is None:
            raise ExchangeError("300014: position is being liquidated")
        return await real_place(req, test=test, urgent=urgent)

    client.place_order = refuse_closes  # type: ignore[method-assign,assignment]
    report = await rig.engine.kill_switch()
    assert not report.flat
    assert (await rig.client.position("ETHUSDTM")).lots == p.lots
    assert len([o for o in await rig.client.open_stop_orders("ETHUSDTM") if o.stop_price == p.stop]) == 1


async def test_the_old_take_profit_whose_cancel_failed_is_cancelled_by_the_retry_not_called_drift(
    rig: Rig,
) -> None:
    """A TP extension lands and is saved, and KuCoin answers 503 to the old TP's cancel. Before: nothing owed that
    cancel (the retry item only re-checked the sizes), so two TPs of 179 lots stayed live (2033.74 and 2050.00)
    until the next reconciliation cancelled the old one and reported it as drift, pausing new entries. Now the
    cancel is a persisted ``tp_cancel`` item: the retry loop cancels it, and the reconciliation finds nothing."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None and (p.stop, p.take_profit) == (D("1989.29"), D("2033.74"))
    old = p.tp_order_id
    rig.sim.faults.server_error_next(40, f"/api/v1/orders/{old}")  # its cancel (and lookups by its id) refused
    await rig.engine.coordinator.move_take_profit(p, D("2050.00"))
    rig.sim.faults.reset()
    ups = [(o.stop_price, o.lots) for o in await rig.client.open_stop_orders("ETHUSDTM") if o.stop is not None]
    assert sorted(ups) == [(D("1989.29"), 179), (D("2033.74"), 179), (D("2050.00"), 179)]
    assert p.take_profit == D("2050.00") and p.tp_order_id != old
    rig.engine.clock = lambda: 1_900_000_000_000  # past every backoff
    await rig.engine.run_retries()
    left = sorted((o.stop_price, o.id) for o in await rig.client.open_stop_orders("ETHUSDTM"))
    assert [price for price, _ in left] == [D("1989.29"), D("2050.00")] and left[1][1] == p.tp_order_id
    assert await rig.engine.sync_positions() == []
    assert await rig.engine.retry.depth() == 0
