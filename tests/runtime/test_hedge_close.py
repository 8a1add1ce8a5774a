"""Hedge position mode: a symbol holds a LONG and a SHORT, and the close of the managed one is booked from its own
side's fills and funding only, never from the other side's (a person trading it by hand in the same window).
Checked to the last digit against the simulator's fills and funding records of that side, through the real client.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.events import PositionClosed, PositionResized
from exchange.models import OrderSide
from tests.runtime.conftest import Rig
from tests.runtime.test_equity_marks import long_decision
from tests.runtime.test_money_agrees import HOUR, SYMBOL, Clock, by_hand, move, open_trade, short_decision


def side_books(rig: Rig, since_ms: int, position_side: str) -> tuple[D, D, D, D, D]:
    """(entry, exit, gross, fees, funding paid) of ``position_side``'s trade since ``since_ms``, from the
    simulator's own fills (each fill's side is its order's) and funding records."""
    st = rig.sim.state
    fills = [f for f in st.fills if f.symbol == SYMBOL and f.ts_ms >= since_ms]
    fills = [f for f in fills if st.orders[f.order_id].position_side == position_side]
    opened = [f for f in fills if f.opening]
    closed = [f for f in fills if not f.opening]
    assert sum(f.size for f in opened) == sum(f.size for f in closed)  # that side is flat again
    sign = 1 if position_side == "LONG" else -1
    gross = sign * (sum((f.value for f in closed), D(0)) - sum((f.value for f in opened), D(0)))
    entry = sum((f.price * f.size for f in opened), D(0)) / sum(f.size for f in opened)
    exit_ = sum((f.price * f.size for f in closed), D(0)) / sum(f.size for f in closed)
    fees = sum((f.fee for f in fills), D(0))
    funding = -sum(
        (
            r.funding
            for r in st.funding
            if r.symbol == SYMBOL and r.time_point >= since_ms and r.position_side == position_side
        ),
        D(0),
    )
    return entry, exit_, gross, fees, funding


async def hedge(rig: Rig, *, fills_carry_side: bool) -> Clock:
    clock = Clock(rig)
    await rig.client.set_position_mode(hedge=True)
    rig.engine.options.hedge = rig.engine.coordinator.hedge = True
    rig.sim.state.fills_position_side = fills_carry_side
    return clock


@pytest.mark.parametrize("fills_carry_side", [False, True], ids=["side-from-orders", "side-on-fills"])
async def test_managed_long_closes_while_the_short_side_trades_by_hand(rig: Rig, fills_carry_side: bool) -> None:
    """Before (side from the orders): booked gross −20.92 USDT, fees 4.36, exit 1988.92 from both sides' fills,
    while the LONG side's fills say −21.50, 4.28 and 1988.39."""
    clock = await hedge(rig, fills_carry_side=fills_carry_side)
    p, since, _ = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2003.00")
    await rig.client.place_order(by_hand(OrderSide.SELL, 7, leverage=5, position_side="SHORT"))  # opens a short
    await move(rig, clock, "2001.00")
    await rig.client.place_order(by_hand(OrderSide.BUY, 3, leverage=5, position_side="SHORT"))  # trims it
    await move(rig, clock, str(p.stop - D("0.5")))
    await rig.engine.sync_positions()
    await rig.bus.drain()
    [c] = [e for e in rig.events if isinstance(e, PositionClosed)]
    entry, exit_, gross, fees, funding = side_books(rig, since, "LONG")
    assert (c.exit_reason, c.entry, c.exit, c.gross, c.fees, c.funding) == (
        "stop_loss",
        entry,
        exit_,
        gross,
        fees,
        funding,
    )
    assert c.net == gross - fees - funding
    assert entry == p.entry  # the bot's own fill, not averaged with the short's sell
    assert [x.lots for x in await rig.client.symbol_positions(SYMBOL) if x.is_open] == [-4]  # the short is left


async def test_managed_short_over_a_settlement_books_only_its_own_funding(rig: Rig) -> None:
    """Both sides held over 04:00: each is funded on the same symbol; the managed short receives, the long opened
    by hand beside it pays. Before, the close summed both records (and the long's fills)."""
    clock = await hedge(rig, fills_carry_side=False)
    p, since, _ = await open_trade(rig, clock, short_decision())
    await rig.client.place_order(by_hand(OrderSide.BUY, 11, leverage=5, position_side="LONG"))
    await move(rig, clock, "2001.00", 2 * HOUR)  # over the 04:00 settlement
    assert {r.position_side for r in rig.sim.state.funding if r.time_point >= since} == {"LONG", "SHORT"}
    await rig.client.place_order(by_hand(OrderSide.SELL, 11, leverage=5, position_side="LONG"))  # closes it
    await move(rig, clock, str(p.stop + D("0.5")))
    await rig.engine.sync_positions()
    await rig.bus.drain()
    [c] = [e for e in rig.events if isinstance(e, PositionClosed)]
    entry, exit_, gross, fees, funding = side_books(rig, since, "SHORT")
    assert funding < 0  # the short received
    assert (c.entry, c.exit, c.gross, c.fees, c.funding, c.funding_known) == (entry, exit_, gross, fees, funding, True)
    assert c.net == gross - fees - funding


async def test_an_order_whose_side_cannot_be_read_at_first_is_asked_again(rig: Rig) -> None:
    """The first order query of the close outlasts the client's retries (five 503s): that fill is left out of the
    first read, the fills no longer cover the opened lots, and the next read asks about its order again."""
    clock = await hedge(rig, fills_carry_side=False)
    p, since, _ = await open_trade(rig, clock, long_decision())
    await rig.client.place_order(by_hand(OrderSide.SELL, 7, leverage=5, position_side="SHORT"))
    await move(rig, clock, str(p.stop - D("0.5")))
    rig.sim.faults.server_error_next(5, "/api/v1/orders/")
    await rig.engine.sync_positions()
    await rig.bus.drain()
    assert rig.sim.faults.server_error_remaining == 0
    [c] = [e for e in rig.events if isinstance(e, PositionClosed)]
    entry, exit_, gross, fees, funding = side_books(rig, since, "LONG")
    assert (c.entry, c.exit, c.gross, c.fees, c.funding) == (entry, exit_, gross, fees, funding)


async def test_a_resize_names_its_cause_and_price_from_its_own_sides_fills(rig: Rig) -> None:
    """KuCoin auto-deleverages 79 lots of the managed LONG at 2003.50; then a SHORT of 7 is opened by hand beside
    it, so the newest sell fill of the symbol is the short's. Before, the resize averaged that sell into the taken
    lots (price 2003.44, not the ADL's 2003.50)."""
    clock = await hedge(rig, fills_carry_side=False)
    await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2003.00")
    rig.sim.state.force_reduce(SYMBOL, 79, D("2003.50"), trade_type="adl", position_side="LONG")
    await rig.client.place_order(by_hand(OrderSide.SELL, 7, leverage=5, position_side="SHORT"))
    clock.step()
    await rig.engine.sync_positions()
    await rig.bus.drain()
    [r] = [e for e in rig.events if isinstance(e, PositionResized)]
    assert (r.old_lots, r.new_lots, r.cause, r.price) == (179, 100, "auto_deleverage", D("2003.50"))
