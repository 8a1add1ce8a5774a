"""Position and stop management against the simulator: the stop follows the position's real size, nothing the
engine placed outlives the position, and a stop never moves back (restarts and re-adoptions included)."""

from __future__ import annotations

from decimal import Decimal as D

from exchange.models import OrderRequest, OrderSide, StopDirection
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_decision

SYM = "ETHUSDTM"


async def stops_by_direction(rig: Rig) -> dict[StopDirection | None, list[tuple[int, D | None, bool]]]:
    out: dict[StopDirection | None, list[tuple[int, D | None, bool]]] = {}
    for o in await rig.client.open_stop_orders(SYM):
        out.setdefault(o.stop, []).append((o.lots, o.stop_price, o.reduce_only))
    return out


def at(rig: Rig, ms: int) -> None:
    rig.engine.clock = lambda: ms


async def test_a_position_reduced_by_hand_gets_its_stop_and_tp_resized(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None and p.lots == 179
    await rig.client.place_order(OrderRequest(SYM, OrderSide.SELL, 79, reduce_only=True))  # a person trims it
    diffs = await rig.engine.sync_positions()
    assert diffs == [f"{SYM}: engine 179 lots, exchange 100"]
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(100, p.stop, True)]  # one stop, the position's size, same price
    assert stops[StopDirection.UP] == [(100, p.take_profit, True)]
    assert p.lots == 100 and p.replace_state == "STEADY"
    assert await rig.engine.sync_positions() == []  # agrees now


async def test_a_position_added_to_by_hand_is_fully_covered_by_its_stop(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 50, leverage=18))  # a person adds to it
    await rig.engine.sync_positions()
    stops = await stops_by_direction(rig)
    assert [s[0] for s in stops[StopDirection.DOWN]] == [229]  # the stop closes all of it, not 179 of 229
    assert [s[0] for s in stops[StopDirection.UP]] == [229]
    rig.sim.set_price(SYM, D("1985.00"))  # through the stop
    assert (await rig.client.position(SYM)).lots == 0  # nothing left unprotected


async def test_a_position_flipped_by_hand_is_re_adopted_with_a_stop_on_the_right_side(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    # A person sells twice the position between two reconciliations: now short 179 lots, same size.
    await rig.client.place_order(OrderRequest(SYM, OrderSide.SELL, 358, leverage=18))
    assert (await rig.client.position(SYM)).lots == -179
    await rig.engine.sync_positions()
    m = rig.engine.managed[SYM]
    assert m.protection.side.value == "short"
    stops = await stops_by_direction(rig)
    assert [(s[0], s[2]) for s in stops[StopDirection.UP]] == [(179, True)]  # the short's stop, above
    assert all(price is not None and price > m.protection.entry for _, price, _ in stops[StopDirection.UP])
    rig.sim.set_price(SYM, D("2100.00"))  # the short's stop must close it
    assert (await rig.client.position(SYM)).lots == 0
