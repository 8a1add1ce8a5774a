"""Position and stop management against the simulator: the stop follows the position's real size, nothing the
engine placed outlives the position, and a stop never moves back (restarts and re-adoptions included)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from exchange.errors import ExchangeError
from exchange.models import OrderRequest, OrderSide, StopDirection
from tests.runtime.conftest import Rig, make_engine
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


async def test_old_stop_left_by_a_failed_cancel_does_not_outlive_the_position(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    old_stop_id = p.stop_order_id
    real_cancel = rig.engine.client.cancel_order

    refusals = [4]  # the old cancel keeps failing: the move, its retry, the close's cleanup, that look's sweep

    async def cancel(order_id: str) -> list[str]:
        if order_id == old_stop_id and refusals[0] > 0:
            refusals[0] -= 1
            raise ExchangeError("cancel refused (exchange busy)")
        return await real_cancel(order_id)

    rig.engine.client.cancel_order = cancel  # type: ignore[method-assign]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2012.00"))
    await rig.engine.on_mark(SYM, D("2012.00"))  # break-even move: the new stop lands, the old one will not go
    assert p.replace_state == "CANCELLING_OLD" and p.stop > D("1989.29")
    downs = (await stops_by_direction(rig))[StopDirection.DOWN]
    assert len(downs) == 2 and all(ro for _, _, ro in downs)  # both reduce-only: together they cannot over-close
    at(rig, 1_800_000_100_000)
    assert await rig.engine.run_retries() == 1  # the queued cancel fails again
    assert p.replace_state == "CANCELLING_OLD"
    rig.sim.set_price(SYM, D("2000.00"))  # through the new stop, above the old one
    assert (await rig.client.position(SYM)).lots == 0
    await rig.engine.sync_positions()  # neither the close's cleanup nor the sweep can cancel it yet
    assert SYM not in rig.engine.managed
    assert refusals == [0]
    diffs = await rig.engine.sync_positions()  # the next reconciliation sweeps it
    assert diffs == [f"{SYM}: stop {old_stop_id} of a closed position cancelled"]
    assert await rig.client.open_stop_orders(SYM) == []  # the old stop is not left behind on a flat symbol
    assert await rig.engine.sync_positions() == []


async def test_a_new_stop_whose_confirmation_failed_does_not_outlive_the_position(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    real_by_id = rig.engine.client.order_by_id

    async def by_id(order_id: str) -> object:
        raise ExchangeError("timeout")

    rig.engine.client.order_by_id = by_id  # type: ignore[method-assign, assignment]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2012.00"))
    assert not await rig.engine.on_mark(SYM, D("2012.00"))  # placed, not confirmed: queued
    assert p.replace_state == "PLACING_NEW"
    rig.engine.client.order_by_id = real_by_id  # type: ignore[method-assign]
    rig.sim.set_price(SYM, D("2040.00"))  # the take-profit closes the position; the unconfirmed stop stays
    assert (await rig.client.position(SYM)).lots == 0
    await rig.engine.sync_positions()
    assert SYM not in rig.engine.managed
    assert await rig.client.open_stop_orders(SYM) == []


async def test_a_restart_mid_replace_never_moves_the_stop_back(rig: Rig, data_dir: Path) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.set_price(SYM, D("2020.00"))
    # Persisted PLACING_NEW towards a profit lock at 2012.00, placed on the exchange, then the process died.
    p.replace_state, p.pending_client_oid, p.pending_price = "PLACING_NEW", "sl-crash-0002", D("2012.00")
    await rig.engine.positions_repo.save(p.row())
    from tests.runtime.test_engine import long_stop

    await rig.client.place_order(long_stop(p.lots, D("2012.00"), "sl-crash-0002"))
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    await fresh.engine.recover()
    restored = fresh.engine.managed[SYM].protection
    assert restored.stop == D("2012.00")
    fresh.engine.clock = lambda: 1_800_000_000_000
    rig.sim.set_price(SYM, D("2015.00"))
    # 13 % ROI: the best candidate is the trailing stop at 2009.29, above the initial stop, below 2012.00.
    assert not await fresh.engine.on_mark(SYM, D("2015.00"))
    downs = (await stops_by_direction(rig))[StopDirection.DOWN]
    assert [price for _, price, _ in downs] == [D("2012.00")] and restored.stop == D("2012.00")
    assert not await fresh.engine.coordinator.move_stop(restored, D("2005.00"), "trailing_stop")  # nor by hand
    assert [s[1] for s in (await stops_by_direction(rig))[StopDirection.DOWN]] == [D("2012.00")]
    await fresh.bus.stop()


async def test_a_failed_take_profit_extension_is_retried_not_dropped(rig: Rig, data_dir: Path) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    real_place = rig.engine.client.place_order

    async def place(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        if req.stop is StopDirection.UP:
            raise ExchangeError("503 (the TP leg)")
        return await real_place(req, test=test, urgent=urgent)

    rig.engine.client.place_order = place  # type: ignore[method-assign, assignment]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    assert await rig.engine.on_mark(SYM, D("2015.00"))  # trailing: the stop moves, the TP should go to +48 % ROI
    want = rig.engine.managed[SYM].rule.take_profit  # the extended TP, ~+48 % ROI
    assert p.stop == D("2009.30") and want > D("2050") and p.take_profit == D("2033.74")  # TP move queued
    assert await rig.engine.retry.depth() == 1
    rig.engine.client.place_order = real_place  # type: ignore[method-assign]
    at(rig, 1_800_000_100_000)
    await rig.engine.run_retries()
    assert (await stops_by_direction(rig))[StopDirection.UP] == [(179, want, True)]
    assert p.take_profit == want and await rig.engine.retry.depth() == 0


async def test_re_adopting_a_position_keeps_its_tighter_stop_and_leaves_one_stop(rig: Rig, data_dir: Path) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    assert await rig.engine.on_mark(SYM, D("2015.00"))
    trailed, extended = p.stop, p.take_profit
    assert trailed == D("2009.30") and extended > D("2050")
    await rig.engine.positions_repo.delete(SYM)  # the engine's record is lost (a new data directory, a bad disk)
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    diffs = await fresh.engine.recover()
    assert diffs == [f"{SYM}: unmanaged position of 179 lots adopted"]
    adopted = fresh.engine.managed[SYM].protection
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(179, trailed, True)]  # not the initial 1989.29 beside the old one
    assert stops[StopDirection.UP] == [(179, extended, True)]
    assert (adopted.stop, adopted.take_profit) == (trailed, extended)
    await fresh.bus.stop()


async def _hand_long_then_drop(rig: Rig) -> None:
    """A person opens a long at 2000 (10x); the mark falls to 1975, past the −10 % ROI stop (1980.40) the
    reconciliation will want for it."""
    await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 20, leverage=10))
    rig.sim.set_price(SYM, D("1975.00"))


async def test_adopting_a_position_already_past_its_stop_closes_it_when_the_stop_triggers_at_once(rig: Rig) -> None:
    await _hand_long_then_drop(rig)
    await rig.engine.sync_positions()
    assert (await rig.client.position(SYM)).lots == 0  # the stop triggered on placement and closed it
    await rig.engine.sync_positions()
    assert SYM not in rig.engine.managed and await rig.client.open_stop_orders(SYM) == []
    assert all(o.reduce_only for o in rig.sim.state.orders.values() if o.stop)


async def test_adopting_a_position_already_past_its_stop_closes_it_when_the_exchange_refuses_the_stop(
    rig: Rig,
) -> None:
    rig.sim.state.reject_triggered_stops = True
    await _hand_long_then_drop(rig)
    await rig.engine.sync_positions()
    # Not left unprotected and retried forever while the price falls on: closed reduce-only, as its stop would.
    assert (await rig.client.position(SYM)).lots == 0
    closes = [o for o in rig.sim.state.orders.values() if not o.stop and o.side == "sell"]
    assert len(closes) == 1 and closes[0].reduce_only
    await rig.engine.sync_positions()
    assert SYM not in rig.engine.managed and await rig.client.open_stop_orders(SYM) == []
    await rig.bus.drain()
    closed = next(e for e in rig.events if e.kind == "position_closed")
    assert closed.exit_reason == "stop_loss"  # type: ignore[attr-defined]


async def test_a_refused_stop_move_keeps_the_old_stop_alone_until_the_retry_lands(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.state.reject_triggered_stops = True
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2005.00"))  # the mark fell back below 2009.30 before the move reached the exchange
    assert not await rig.engine.on_mark(SYM, D("2015.00"))
    assert p.replace_state == "PLACING_NEW" and p.stop == D("1989.29")
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("1989.29"), True)]
    rig.sim.set_price(SYM, D("2015.00"))
    at(rig, 1_800_000_100_000)
    await rig.engine.run_retries()
    assert p.replace_state == "STEADY" and p.stop == D("2009.30")
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("2009.30"), True)]


async def test_an_entry_that_fills_partly_is_protected_for_the_filled_size(rig: Rig) -> None:
    rig.sim.state.max_taker_lots = 100  # the book holds 100 lots within the slippage guard; 179 were asked
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    assert (await rig.client.position(SYM)).lots == p.lots == 100
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(100, p.stop, True)] and stops[StopDirection.UP] == [
        (100, p.take_profit, True)
    ]
    assert await rig.engine.sync_positions() == []


async def test_a_take_profit_that_fills_partly_shrinks_the_stop_to_what_is_left(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.state.max_taker_lots = 120
    rig.sim.set_price(SYM, D("2040.00"))  # the TP triggers; the book takes 120 of its 179 lots
    assert (await rig.client.position(SYM)).lots == 59
    rig.sim.set_price(SYM, D("2030.00"))  # and the price falls back below the TP
    diffs = await rig.engine.sync_positions()
    assert diffs == [f"{SYM}: engine 179 lots, exchange 59", f"{SYM}: take-profit missing"]
    downs = (await stops_by_direction(rig))[StopDirection.DOWN]
    assert downs == [(59, p.stop, True)]  # the stop now closes exactly what is left
    ups = (await stops_by_direction(rig)).get(StopDirection.UP, [])
    assert ups == [(59, p.take_profit, True)]  # a TP for the rest, on the exchange again
    rig.sim.state.max_taker_lots = None
    rig.sim.set_price(SYM, D("1980.00"))
    assert (await rig.client.position(SYM)).lots == 0  # never reversed into a short


async def test_a_stop_move_that_lands_while_reconciliation_lists_the_stops_is_not_taken_for_a_missing_stop(
    rig: Rig,
) -> None:
    """The mark-tick lane and the reconciliation run concurrently: a listing taken before a replace landed must not
    make the reconciliation place a second stop (which nothing would manage, move or resize afterwards)."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_list = client.open_stop_orders
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))

    async def stale_listing(symbol: str | None = None) -> list[object]:
        listing = await real_list(symbol)
        if symbol == SYM and p.stop == D("1989.29"):  # meanwhile the stop move completes on the other lane
            assert await rig.engine.on_mark(SYM, D("2015.00"))
        return listing  # type: ignore[return-value]

    client.open_stop_orders = stale_listing  # type: ignore[method-assign, assignment]
    diffs = await rig.engine.sync_positions()
    client.open_stop_orders = real_list  # type: ignore[method-assign]
    assert "ETHUSDTM: stop missing" not in diffs and "ETHUSDTM: take-profit missing" not in diffs
    downs = (await stops_by_direction(rig))[StopDirection.DOWN]
    assert downs == [(179, D("2009.30"), True)]
    assert len((await stops_by_direction(rig))[StopDirection.UP]) == 1


async def test_two_take_profit_moves_at_once_leave_exactly_one_take_profit(rig: Rig) -> None:
    """A trailing TP extension (mark lane) and a resize (reconciliation) can move the same TP at the same time."""
    import asyncio

    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    coord = rig.engine.coordinator
    await asyncio.gather(coord.move_take_profit(p, D("2040.00")), coord.move_take_profit(p, D("2040.00")))
    ups = (await stops_by_direction(rig))[StopDirection.UP]
    assert ups == [(179, D("2040.00"), True)]
    assert [o.id for o in await rig.client.open_stop_orders(SYM) if o.stop is StopDirection.UP] == [p.tp_order_id]


async def test_a_position_closed_while_its_stop_move_is_in_flight_leaves_no_stop_behind(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_by_id = client.order_by_id
    spiked: list[bool] = []

    async def by_id(order_id: str) -> object:
        if not spiked:  # between placing the new stop and confirming it, the take-profit fills
            spiked.append(True)
            rig.sim.set_price(SYM, D("2040.00"))
        return await real_by_id(order_id)

    client.order_by_id = by_id  # type: ignore[method-assign, assignment]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    client.order_by_id = real_by_id  # type: ignore[method-assign]
    assert (await rig.client.position(SYM)).lots == 0
    await rig.engine.sync_positions()  # the position push that follows the fill
    assert SYM not in rig.engine.managed
    assert await rig.client.open_stop_orders(SYM) == []
    await rig.bus.drain()
    assert next(e for e in rig.events if e.kind == "position_closed").exit_reason == "take_profit"  # type: ignore[attr-defined]


async def test_a_liquidation_is_reported_as_a_liquidation(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    await rig.client.cancel_all_stop_orders(SYM)  # the protection is gone (by hand) before the next look ...
    rig.sim.set_price(SYM, D("1850.00"))  # ... and the market crashes through the liquidation price
    assert (await rig.client.position(SYM)).lots == 0
    await rig.engine.sync_positions()
    await rig.bus.drain()
    closed = next(e for e in rig.events if e.kind == "position_closed")
    assert closed.exit_reason == "liquidation"  # type: ignore[attr-defined]  # not "stop_loss"
    assert closed.exit < D("1910") and closed.net < D("-190")  # type: ignore[attr-defined]  # the margin is lost


def lose_the_stops_reply(rig: Rig) -> None:
    """The next stop placement lands but its reply is lost (armed at the placement itself: the adoption reads the
    opening order first, which a fault armed earlier on ``/api/v1/orders`` would hit instead)."""
    client = rig.engine.client
    real_place = client.place_order

    async def place(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        if req.stop is not None and req.reduce_only:
            client.place_order = real_place  # type: ignore[method-assign]
            rig.sim.faults.lose_reply_next(1, "/api/v1/orders")
        return await real_place(req, test=test, urgent=urgent)

    client.place_order = place  # type: ignore[method-assign, assignment]


async def test_a_protective_stop_whose_reply_was_lost_is_not_placed_twice_by_the_retry(rig: Rig) -> None:
    await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 20, leverage=10))  # adopted below
    # The stop is placed but its reply is lost, and the lookup by clientOid that follows times out too.
    from exchange.errors import ExchangeTimeoutError

    client = rig.engine.client
    real_lookup = client.order_by_client_oid

    async def lookup_times_out(client_oid: str) -> object:
        raise ExchangeTimeoutError("no answer in time")

    lose_the_stops_reply(rig)
    client.order_by_client_oid = lookup_times_out  # type: ignore[method-assign, assignment]
    await rig.engine.sync_positions()
    client.order_by_client_oid = real_lookup  # type: ignore[method-assign]
    p = rig.engine.managed[SYM].protection
    assert p.stop_order_id is None and await rig.engine.retry.depth() == 1
    assert len((await stops_by_direction(rig))[StopDirection.DOWN]) == 1  # it did land
    at(rig, int(__import__("time").time() * 1000) + 60_000)
    await rig.engine.run_retries()
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(20, p.stop, True)]  # the retry found it instead of sending another
    assert stops[StopDirection.UP] == [(20, p.take_profit, True)]
    assert p.stop_order_id is not None and await rig.engine.retry.depth() == 0


async def test_a_take_profit_move_whose_reply_was_lost_is_not_placed_twice_by_the_retry(rig: Rig) -> None:
    from exchange.errors import ExchangeTimeoutError

    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_lookup, real_place = client.order_by_client_oid, client.place_order

    async def lookup_times_out(client_oid: str) -> object:
        raise ExchangeTimeoutError("no answer in time")

    async def place(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        if req.stop is StopDirection.UP:  # the TP extension lands, its reply and the lookup are lost
            rig.sim.faults.lose_reply_next(1, "/api/v1/orders")
            client.order_by_client_oid = lookup_times_out  # type: ignore[method-assign, assignment]
        return await real_place(req, test=test, urgent=urgent)

    client.place_order = place  # type: ignore[method-assign, assignment]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    client.place_order, client.order_by_client_oid = real_place, real_lookup  # type: ignore[method-assign]
    want = rig.engine.managed[SYM].rule.take_profit
    assert p.take_profit == D("2033.74") and await rig.engine.retry.depth() == 1
    at(rig, 1_800_000_100_000)
    await rig.engine.run_retries()
    assert (await stops_by_direction(rig))[StopDirection.UP] == [(179, want, True)]  # one TP, the extended one
    assert p.take_profit == want and await rig.engine.retry.depth() == 0


async def test_a_stop_move_that_lands_after_the_close_was_accounted_is_undone_and_not_persisted(
    rig: Rig, data_dir: Path
) -> None:
    """The mark lane's stop move is on its way when the TP fills and the account lane accounts for the close."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_place = client.place_order

    async def place(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        if req.stop is StopDirection.DOWN and p.stop_order_id is not None and SYM in rig.engine.managed:
            rig.sim.set_price(SYM, D("2040.00"))  # the TP fills ...
            await rig.engine.sync_positions()  # ... and the reconciliation closes the books on it
        return await real_place(req, test=test, urgent=urgent)

    client.place_order = place  # type: ignore[method-assign, assignment]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    client.place_order = real_place  # type: ignore[method-assign]
    assert SYM not in rig.engine.managed
    assert await rig.engine.positions_repo.all() == []  # not brought back to life by the late move
    assert await rig.client.open_stop_orders(SYM) == []  # and its stop not left on the flat symbol
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    await fresh.engine.recover()
    await fresh.bus.drain()
    await rig.bus.drain()
    closes = [e for e in rig.events + fresh.events if e.kind == "position_closed"]
    assert len(closes) == 1  # the trade is accounted once, also across a restart
    await fresh.bus.stop()


async def test_a_restart_with_a_queued_cancel_finishes_it_with_one_stop_left(rig: Rig, data_dir: Path) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    old_stop_id = p.stop_order_id
    real_cancel = rig.engine.client.cancel_order

    async def cancel(order_id: str) -> list[str]:
        if order_id == old_stop_id:
            raise ExchangeError("cancel refused (exchange busy)")
        return await real_cancel(order_id)

    rig.engine.client.cancel_order = cancel  # type: ignore[method-assign]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    assert p.replace_state == "CANCELLING_OLD" and await rig.engine.retry.depth() == 1
    rig.engine.client.cancel_order = real_cancel  # type: ignore[method-assign]
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)  # the process restarts
    assert await fresh.engine.recover() == []
    restored = fresh.engine.managed[SYM].protection
    assert restored.replace_state == "STEADY" and restored.stop == D("2009.30")
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("2009.30"), True)]
    fresh.engine.clock = lambda: 1_800_000_100_000
    await fresh.engine.run_retries()
    assert await fresh.engine.retry.depth() == 0
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("2009.30"), True)]
    await fresh.bus.stop()


async def test_a_restart_places_a_take_profit_extension_that_was_owed(rig: Rig, data_dir: Path) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    real_place = rig.engine.client.place_order

    async def place(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        if req.stop is StopDirection.UP:
            raise ExchangeError("503 (the TP leg)")
        return await real_place(req, test=test, urgent=urgent)

    rig.engine.client.place_order = place  # type: ignore[method-assign, assignment]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    assert await rig.engine.on_mark(SYM, D("2015.00"))
    rig.engine.client.place_order = real_place  # type: ignore[method-assign]
    want = rig.engine.managed[SYM].rule.take_profit
    await rig.engine.retry.done(f"take_profit:{SYM}")  # the process died before the retry was written
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    await fresh.engine.recover()
    assert (await stops_by_direction(rig))[StopDirection.UP] == [(179, want, True)]
    await fresh.bus.stop()


async def test_two_mark_ticks_at_once_move_the_stop_once(rig: Rig) -> None:
    import asyncio

    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    moved = await asyncio.gather(rig.engine.on_mark(SYM, D("2015.00")), rig.engine.on_mark(SYM, D("2016.00")))
    assert sorted(moved) == [False, True]
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, p.stop, True)]
    assert len((await stops_by_direction(rig))[StopDirection.UP]) == 1
    assert rig.engine.managed[SYM].rule.stop == p.stop  # the dropped tick did not run ahead of the exchange


async def test_a_trade_closed_in_parts_is_accounted_for_all_of_its_lots(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.state.max_taker_lots = 120
    rig.sim.set_price(SYM, D("2040.00"))  # the TP closes 120 of 179 lots
    rig.sim.set_price(SYM, D("2030.00"))
    await rig.engine.sync_positions()  # 59 left: stop and TP resized to them
    rig.sim.state.max_taker_lots = None
    rig.sim.set_price(SYM, D("1980.00"))  # the stop closes the rest
    await rig.engine.sync_positions()
    await rig.bus.drain()
    closed = next(e for e in rig.events if e.kind == "position_closed")
    sells = [f for f in rig.sim.state.fills if f.side == "sell"]
    assert sum(f.size for f in sells) == 179
    gross = sum(((f.price - p.entry) * f.size * D("0.01") for f in sells), D(0))
    assert abs(closed.gross - gross) < D("0.0001")  # type: ignore[attr-defined]  # both parts, not 59 lots


async def test_the_old_stop_vanishing_while_its_replacement_is_refused_does_not_leave_the_position_bare(
    rig: Rig,
) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.state.reject_triggered_stops = True
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2005.00"))
    assert not await rig.engine.on_mark(SYM, D("2015.00"))  # the move to 2009.30 is refused: PLACING_NEW
    assert p.replace_state == "PLACING_NEW"
    await rig.client.cancel_order(p.stop_order_id or "")  # a person cancels the old stop meanwhile
    diffs = await rig.engine.sync_positions()
    assert f"{SYM}: stop missing" in diffs
    # The rule's stop (2009.30) is already through the mark and the old one is gone: closed as its stop would.
    assert (await rig.client.position(SYM)).lots == 0
    assert all(o.reduce_only for o in rig.sim.state.orders.values() if o.side == "sell")


async def test_the_new_stop_vanishing_while_the_old_ones_cancel_is_queued_is_replaced(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    old_stop_id = p.stop_order_id
    real_cancel = rig.engine.client.cancel_order

    async def cancel(order_id: str) -> list[str]:
        if order_id == old_stop_id:
            raise ExchangeError("cancel refused (exchange busy)")
        return await real_cancel(order_id)

    rig.engine.client.cancel_order = cancel  # type: ignore[method-assign]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    assert p.replace_state == "CANCELLING_OLD"
    rig.engine.client.cancel_order = real_cancel  # type: ignore[method-assign]
    await rig.client.cancel_order(p.stop_order_id or "")  # a person cancels the new stop
    diffs = await rig.engine.sync_positions()
    assert f"{SYM}: stop missing" in diffs
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("2009.30"), True)]
    assert p.replace_state == "STEADY"
    at(rig, 1_800_000_100_000)
    await rig.engine.run_retries()  # the queued cancel must not take away the only stop
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(179, D("2009.30"), True)]


async def test_a_position_listing_that_misses_an_open_position_does_not_strip_its_protection(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_positions = client.positions

    async def empty_once() -> list[object]:
        client.positions = real_positions  # type: ignore[method-assign]
        return []  # one listing comes back without it (a glitch, a lagging replica)

    client.positions = empty_once  # type: ignore[method-assign, assignment]
    await rig.engine.sync_positions()
    assert (await rig.client.position(SYM)).lots == 179  # still open on the exchange ...
    assert SYM in rig.engine.managed  # ... so still managed,
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(179, p.stop, True)]  # still protected,
    await rig.bus.drain()
    assert "position_closed" not in rig.kinds()  # and no phantom stop-loss booked


async def test_a_stop_listing_that_misses_a_live_stop_does_not_double_it(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_list = client.open_stop_orders

    async def empty_once(symbol: str | None = None) -> list[object]:
        client.open_stop_orders = real_list  # type: ignore[method-assign]
        return []

    client.open_stop_orders = empty_once  # type: ignore[method-assign, assignment]
    diffs = await rig.engine.sync_positions()
    assert diffs == []
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(179, p.stop, True)] and stops[StopDirection.UP] == [
        (179, p.take_profit, True)
    ]


async def test_a_protective_stop_whose_reply_was_lost_is_not_doubled_by_a_restart(rig: Rig, data_dir: Path) -> None:
    from exchange.errors import ExchangeTimeoutError

    await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 20, leverage=10))
    client = rig.engine.client
    real_lookup = client.order_by_client_oid

    async def lookup_times_out(client_oid: str) -> object:
        raise ExchangeTimeoutError("no answer in time")

    lose_the_stops_reply(rig)
    client.order_by_client_oid = lookup_times_out  # type: ignore[method-assign, assignment]
    await rig.engine.sync_positions()
    client.order_by_client_oid = real_lookup  # type: ignore[method-assign]
    assert rig.engine.managed[SYM].protection.stop_order_id is None
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)  # the process restarts
    await fresh.engine.recover()
    p = fresh.engine.managed[SYM].protection
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(20, p.stop, True)] and p.stop_order_id is not None
    assert stops[StopDirection.UP] == [(20, p.take_profit, True)]
    await fresh.bus.stop()


async def test_a_short_keeps_its_tighter_stop_across_re_adoption_and_follows_a_trim(rig: Rig, data_dir: Path) -> None:
    from engine.gates.result import GateResult
    from engine.scoring.pipeline import Decision
    from engine.scoring.signals import Direction

    short = Decision(SYM, 0, 2000.0, -92.9, "STRONG_SELL", Direction.BEARISH, 0.98, 0.35, [GateResult("all", True)])
    p = await rig.engine.enter(SYM, short)
    assert p is not None and p.side.value == "short" and p.stop > p.entry > p.take_profit
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("1985.00"))
    assert await rig.engine.on_mark(SYM, D("1985.00"))
    trailed, extended = p.stop, p.take_profit
    assert trailed < p.entry and extended < D("1967")
    await rig.engine.positions_repo.delete(SYM)
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    await fresh.engine.recover()
    adopted = fresh.engine.managed[SYM].protection
    assert (adopted.stop, adopted.take_profit) == (trailed, extended)
    assert (await stops_by_direction(rig))[StopDirection.UP] == [(p.lots, trailed, True)]
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(p.lots, extended, True)]
    await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 50, reduce_only=True))  # trimmed by hand
    await fresh.engine.sync_positions()
    assert (await stops_by_direction(rig))[StopDirection.UP] == [(p.lots - 50, trailed, True)]
    assert (await stops_by_direction(rig))[StopDirection.DOWN] == [(p.lots - 50, extended, True)]
    await fresh.bus.stop()


async def test_a_position_on_a_symbol_the_bot_does_not_trade_is_adopted_with_a_stop(rig: Rig) -> None:
    rig.sim.set_price("XBTUSDTM", D("90000"))
    await rig.client.place_order(OrderRequest("XBTUSDTM", OrderSide.BUY, 20, leverage=10))  # by hand, elsewhere
    assert "XBTUSDTM" not in rig.engine.specs
    diffs = await rig.engine.sync_positions()
    assert diffs == ["XBTUSDTM: unmanaged position of 20 lots adopted"]
    p = rig.engine.managed["XBTUSDTM"].protection
    stops = await rig.client.open_stop_orders("XBTUSDTM")
    assert sorted((o.stop, o.lots, o.reduce_only) for o in stops) == [
        (StopDirection.DOWN, 20, True),
        (StopDirection.UP, 20, True),
    ]
    assert p.stop < p.entry < p.take_profit


async def test_a_reconciliation_and_the_retry_queue_re_protecting_at_once_place_one_stop(rig: Rig) -> None:
    """After a failed stop placement both the reconciliation (stop missing) and the retry queue re-protect; the
    position push's reconciliation and the scheduled retry run concurrently in the app."""
    import asyncio

    await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 20, leverage=10))
    real_place = rig.engine.client.place_order
    calls = [0]

    async def place(req: OrderRequest, *, test: bool = False, urgent: bool = True) -> object:
        calls[0] += 1
        if calls[0] == 1:
            from exchange.errors import InvalidRequestError

            raise InvalidRequestError("refused once", code="100001")  # the adoption's stop placement fails
        return await real_place(req, test=test, urgent=urgent)

    rig.engine.client.place_order = place  # type: ignore[method-assign, assignment]
    rig.engine.client.mark_price = lambda symbol: asyncio.sleep(0, D("2000"))  # type: ignore[method-assign, assignment]
    await rig.engine.sync_positions()
    p = rig.engine.managed[SYM].protection
    assert p.stop_order_id is None and await rig.engine.retry.depth() == 1
    at(rig, int(__import__("time").time() * 1000) + 60_000)
    await asyncio.gather(rig.engine.sync_positions(), rig.engine.run_retries())
    stops = await stops_by_direction(rig)
    assert stops[StopDirection.DOWN] == [(20, p.stop, True)]
    assert stops[StopDirection.UP] == [(20, p.take_profit, True)]
