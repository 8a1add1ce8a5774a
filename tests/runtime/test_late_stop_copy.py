"""Found by the fault soak: a moved stop's placement answered 504 by the gateway and executed by the exchange a few
hundred ms later. The client re-sent the reduce-only stop at once, the stop moved on again, and the late first
copy landed afterwards as an extra stop at the old level (only a reconciliation cancelled it). A replacement stop
has the old one protecting meanwhile, so it waits the grace and looks again, as an entry does."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from exchange.models import OrderRequest, OrderSide, StopDirection, StopPriceType
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_decision

SYM = "ETHUSDTM"


async def test_a_moved_stop_whose_answer_was_lost_is_placed_once_and_no_late_copy_remains(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None and p.entry == D("2000.40")
    rig.client.resend_grace_s = 1.0
    real_place = rig.client.place_order
    armed = [True]

    async def place(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        if armed[0] and req.stop is StopDirection.DOWN:  # the first moved stop's POST: 504 now, executed 0.6 s later
            armed[0] = False
            rig.sim.faults.gateway_timeout_next(1, 600, "/api/v1/orders")
        return await real_place(req, test=test, urgent=urgent)

    rig.client.place_order = place  # type: ignore[method-assign, assignment]
    rig.sim.set_price(SYM, D("2010.00"))
    assert await rig.engine.on_mark(SYM, D("2010.00"))  # +8.6 % ROI: to break-even
    rig.sim.set_price(SYM, D("2016.00"))
    assert await rig.engine.on_mark(SYM, D("2016.00"))  # +14 % ROI: trailing, moved on at once
    await asyncio.sleep(1.0)  # any late copy has landed by now
    downs = [o for o in await rig.client.open_stop_orders(SYM) if o.stop is StopDirection.DOWN]
    assert [(o.stop_price, o.lots) for o in downs] == [(rig.engine.managed[SYM].protection.stop, p.lots)]
    posts = [q for m, q in rig.sim.requests if m == "POST" and q == "/api/v1/orders"]
    assert len(posts) == 1 + 2 + 2 + 1  # entry; stop and TP; the two moves (one each); the TP extension


async def test_an_urgent_stop_is_still_re_sent_at_once(rig: Rig) -> None:
    """The first stop after an entry has nothing else protecting the position: it does not wait the grace."""
    rig.client.resend_grace_s = 30.0
    await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 5, leverage=5))
    rig.sim.faults.server_error_next(1)  # refused before executing: unknown to the exchange, re-sent
    stop = OrderRequest(
        SYM,
        OrderSide.SELL,
        5,
        reduce_only=True,
        stop=StopDirection.DOWN,
        stop_price=D("1900"),
        stop_price_type=StopPriceType.MARK,
    )
    started = asyncio.get_running_loop().time()
    order = await rig.client.place_order(stop)  # urgent by default
    assert asyncio.get_running_loop().time() - started < 5  # not the 30 s grace
    assert order.stop is StopDirection.DOWN and len(await rig.client.open_stop_orders(SYM)) == 1
