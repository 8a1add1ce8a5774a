"""Reconciliation converges on exactly one stop and at most one take-profit per position, whatever a crash or a
lost reply left on the exchange; orders of ours on a flat symbol go; a person's orders are never touched, only
reported once. Against the simulator, with a real SQLite file; a "crash" is an exception out of the save that
would have recorded the order, followed by a fresh engine on the same database (the process restarted)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from engine.events import ForeignOrderSeen
from exchange.ids import new_client_oid
from exchange.models import OrderRequest, OrderSide, StopDirection, StopPriceType
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_engine import long_decision, long_stop
from tests.runtime.test_protection_defects import stops_by_direction

SYM = "ETHUSDTM"


class Crash(BaseException):
    """The process dies here: nothing in the engine catches it (it is not an Exception)."""


def crash_on_save(rig: Rig, when: Any) -> None:
    """The first positions save whose row matches ``when`` kills the process before it writes."""
    repo = rig.engine.positions_repo
    real = repo.save
    fired = [False]

    async def save(row: dict[str, Any]) -> None:
        if not fired[0] and when(row):
            fired[0] = True
            raise Crash
        await real(row)

    repo.save = save  # type: ignore[method-assign]


async def test_a_crash_between_the_take_profit_landing_and_its_save_leaves_one_take_profit(
    rig: Rig, data_dir: Path
) -> None:
    crash_on_save(rig, lambda row: row["tp_order_id"] is not None)
    with pytest.raises(Crash):
        await rig.engine.enter(SYM, long_decision())
    landed = await stops_by_direction(rig)
    assert landed[StopDirection.DOWN] == [(179, D("1989.29"), True)]
    assert landed[StopDirection.UP] == [(179, D("2033.74"), True)]  # on the exchange, its id not saved
    (tp_before,) = [o.id for o in await rig.client.open_stop_orders(SYM) if o.stop is StopDirection.UP]
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)  # the process restarts
    assert await fresh.engine.recover() == []
    p = fresh.engine.managed[SYM].protection
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.UP] == [(179, D("2033.74"), True)]  # the one that landed, not a second one
    assert stops[StopDirection.DOWN] == [(179, D("1989.29"), True)]
    assert p.tp_order_id == tp_before
    (stored,) = await fresh.engine.positions_repo.all()
    assert stored["tp_order_id"] == tp_before  # and it is saved now
    assert await fresh.engine.sync_positions() == []
    await fresh.bus.stop()


async def test_a_crash_between_the_stop_landing_and_its_save_leaves_one_stop(rig: Rig, data_dir: Path) -> None:
    crash_on_save(rig, lambda row: row["stop_order_id"] is not None)
    with pytest.raises(Crash):
        await rig.engine.enter(SYM, long_decision())
    assert await stops_by_direction(rig) == {StopDirection.DOWN: [(179, D("1989.29"), True)]}
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    assert await fresh.engine.recover() == []
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(179, D("1989.29"), True)]
    assert stops[StopDirection.UP] == [(179, D("2033.74"), True)]
    await fresh.bus.stop()


async def test_duplicate_take_profits_already_on_the_exchange_are_cut_to_the_tracked_one(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    # What an older build left after that crash: a second TP of ours, same price and size, its record settled.
    extra = await rig.client.place_order(
        OrderRequest(
            SYM,
            OrderSide.SELL,
            179,
            reduce_only=True,
            stop=StopDirection.UP,
            stop_price=p.take_profit,
            stop_price_type=StopPriceType.MARK,
            client_oid=new_client_oid("tp"),
        )
    )
    diffs = await rig.engine.sync_positions()
    assert diffs == [f"{SYM}: duplicate take-profit {extra.id} at 2033.74 cancelled"]
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.UP] == [(179, D("2033.74"), True)]
    assert [o.id for o in await rig.client.open_stop_orders(SYM) if o.stop is StopDirection.UP] == [p.tp_order_id]
    assert await rig.engine.sync_positions() == []  # converged


async def test_a_looser_duplicate_stop_is_cancelled_and_the_tracked_one_kept(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    extra = await rig.client.place_order(long_stop(179, D("1980.00"), new_client_oid("sl")))
    diffs = await rig.engine.sync_positions()
    assert diffs == [f"{SYM}: duplicate stop {extra.id} at 1980.00 cancelled"]
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("1989.29"), True)]
    assert p.stop == D("1989.29")
    assert await rig.engine.sync_positions() == []


async def test_a_tighter_duplicate_stop_is_kept_never_loosened_and_the_tracked_one_goes(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    tracked = p.stop_order_id
    tighter = await rig.client.place_order(long_stop(179, D("1995.00"), new_client_oid("sl")))
    diffs = await rig.engine.sync_positions()
    assert diffs == [
        f"{SYM}: tighter stop {tighter.id} at 1995.00 kept (was 1989.29)",
        f"{SYM}: duplicate stop {tracked} at 1989.29 cancelled",
    ]
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("1995.00"), True)]
    assert (p.stop, p.stop_order_id) == (D("1995.00"), tighter.id)
    (stored,) = await rig.engine.positions_repo.all()
    assert D(stored["stop"]) == D("1995.00")
    rig.sim.set_price(SYM, D("2001.00"))
    await rig.engine.on_mark(SYM, D("2001.00"))  # the rule starts from the stop that is really there
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("1995.00"), True)]


async def test_a_tighter_duplicate_stop_of_the_wrong_size_is_re_placed_for_the_whole_position(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    await rig.client.place_order(long_stop(50, D("1995.00"), new_client_oid("sl")))
    diffs = await rig.engine.sync_positions()
    assert len(diffs) == 2 and diffs[1].startswith(f"{SYM}: duplicate stop ")
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("1995.00"), True)]
    assert p.stop == D("1995.00") and p.replace_state == "STEADY"
    assert await rig.engine.sync_positions() == []


async def test_a_duplicate_stop_is_not_cancelled_while_the_kept_one_cannot_be_confirmed(rig: Rig) -> None:
    from exchange.errors import ExchangeError

    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    await rig.client.place_order(long_stop(179, D("1980.00"), new_client_oid("sl")))
    real_by_id = rig.engine.client.order_by_id

    async def by_id(order_id: str) -> object:
        raise ExchangeError("timeout")

    rig.engine.client.order_by_id = by_id  # type: ignore[method-assign, assignment]
    assert await rig.engine.sync_positions() == []
    assert len((await stops_by_direction(rig))[StopDirection.DOWN]) == 2  # both kept: never fewer than one
    rig.engine.client.order_by_id = real_by_id  # type: ignore[method-assign]
    assert len(await rig.engine.sync_positions()) == 1
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("1989.29"), True)]


async def test_a_persons_orders_are_never_touched_and_reported_once(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    mine = await rig.client.place_order(long_stop(179, D("1970.00"), "web-1a2b3c"))  # the trader's own stop
    rig.sim.set_price("XBTUSDTM", D("90000"))
    elsewhere = await rig.client.place_order(  # the trader's breakout entry on a symbol the bot holds nothing in
        OrderRequest(
            "XBTUSDTM",
            OrderSide.BUY,
            5,
            leverage=10,
            stop=StopDirection.UP,
            stop_price=D("95000"),
            stop_price_type=StopPriceType.MARK,
            client_oid="web-4d5e6f",
        )
    )
    assert await rig.engine.sync_positions() == []  # not a difference: no drift, no halt
    assert await rig.engine.sync_positions() == []
    live = {o.id for o in await rig.client.open_stop_orders()}
    assert {mine.id, elsewhere.id} <= live  # both still there
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [
        (179, D("1989.29"), True),
        (179, D("1970.00"), True),
    ]
    await rig.bus.drain()
    seen = [e for e in rig.events if isinstance(e, ForeignOrderSeen)]
    assert sorted((e.symbol, e.order_id) for e in seen) == sorted([(SYM, mine.id), ("XBTUSDTM", elsewhere.id)])


async def test_stops_of_ours_on_a_flat_symbol_are_swept_even_without_their_record(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    await rig.client.place_order(OrderRequest(SYM, OrderSide.SELL, 179, reduce_only=True))  # closed by hand
    stale = await rig.client.place_order(long_stop(179, D("1950.00"), new_client_oid("sl")))  # no intent recorded
    persons = await rig.client.place_order(long_stop(10, D("1940.00"), "web-777"))
    diffs = await rig.engine.sync_positions()
    assert SYM not in rig.engine.managed
    assert f"{SYM}: stop {stale.id} of a closed position cancelled" in diffs
    assert [o.id for o in await rig.client.open_stop_orders(SYM)] == [persons.id]  # the person's stays
    assert await rig.engine.sync_positions() == []


async def test_a_duplicate_whose_reply_was_lost_is_cancelled_after_a_restart(rig: Rig, data_dir: Path) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    # A second TP went out, its reply never came, and the process died: its intent is still "pending".
    oid = new_client_oid("tp")
    await rig.engine.intents.record(oid, SYM, "take_profit", "sell", 179, p.take_profit, 0)
    extra = await rig.client.place_order(
        OrderRequest(
            SYM,
            OrderSide.SELL,
            179,
            reduce_only=True,
            stop=StopDirection.UP,
            stop_price=p.take_profit,
            stop_price_type=StopPriceType.MARK,
            client_oid=oid,
        )
    )
    assert await rig.engine.sync_positions() == []  # while it may still be on its way, it is left alone
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    assert await fresh.engine.recover() == [f"{SYM}: duplicate take-profit {extra.id} at 2033.74 cancelled"]
    assert (await stops_by_direction(rig))[StopDirection.UP] == [(179, D("2033.74"), True)]
    assert fresh.engine.managed[SYM].protection.tp_order_id == p.tp_order_id
    intent = await fresh.engine.intents.get(oid)
    assert intent is not None and intent.status == "done"
    await fresh.bus.stop()


async def test_a_stop_move_that_lands_while_duplicates_are_weighed_is_left_to_finish(rig: Rig) -> None:
    """The symbol's lane moves the stop (a mark tick) while the reconciliation is looking at the duplicates: the
    reconciliation must not take over the duplicate it found tighter than the stop as it was (that would move
    the stop back), and cancels nothing that pass."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    tighter = await rig.client.place_order(long_stop(179, D("1995.00"), new_client_oid("sl")))
    looser = await rig.client.place_order(long_stop(179, D("1980.00"), new_client_oid("sl")))
    intents = rig.engine.coordinator.intents
    real_get = intents.get
    fired = [False]

    async def get(client_oid: str) -> Any:
        if client_oid == looser.client_oid and not fired[0]:  # looked at after the tighter one was picked
            fired[0] = True
            rig.engine.clock = lambda: 1_800_000_000_000
            rig.sim.set_price(SYM, D("2015.00"))
            assert await rig.engine.on_mark(SYM, D("2015.00"))  # the trailing move lands meanwhile
        return await real_get(client_oid)

    intents.get = get  # type: ignore[method-assign]
    assert await rig.engine.sync_positions() == []  # the move owns the orders this time
    assert fired == [True] and p.stop == D("2009.30")  # never back to 1995.00
    downs = (await stops_by_direction(rig))[StopDirection.DOWN]
    assert sorted(price for _, price, _ in downs if price is not None) == [D("1980.00"), D("1995.00"), D("2009.30")]
    diffs = await rig.engine.sync_positions()  # the next look removes both duplicates, keeps the moved stop
    assert sorted(diffs) == sorted(
        [
            f"{SYM}: duplicate stop {looser.id} at 1980.00 cancelled",
            f"{SYM}: duplicate stop {tighter.id} at 1995.00 cancelled",
        ]
    )
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("2009.30"), True)]
    assert p.stop == D("2009.30")
