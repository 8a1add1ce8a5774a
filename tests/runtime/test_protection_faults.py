"""Protection under exchange faults: an ambiguous stop placement must never leave two stops behind."""

from __future__ import annotations

from decimal import Decimal as D

from engine.models import Side
from exchange.models import OrderRequest, OrderSide
from tests.runtime.conftest import Rig


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
