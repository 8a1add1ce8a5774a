"""The position changes size behind the engine's back, as a trader with real money meets it on KuCoin: an entry
IOC the matching engine fills after the placement answered, auto-deleveraging and partial liquidations that take
lots without an order of ours, a person adding to or trimming the position from the app. Each runs through the
simulator and the real client: the stop and the take-profit must cover exactly the lots that are there, and the
books must say what the exchange did."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from typing import Any

import pytest

import engine.runtime.engine as engine_module
from bot.formatting import format_event
from engine.events import PositionClosed, PositionResized, StopMoved, TakeProfitMoved
from engine.runtime.app import Runtime
from engine.runtime.trading_state import TradingState
from exchange.errors import ExchangeError
from exchange.models import OrderRequest, OrderSide, StopDirection
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_decision
from tests.runtime.test_money_agrees import Clock, by_hand, check_close, move, open_trade, short_decision
from tests.runtime.test_paper_faults import running


class CancelRefused:
    """KuCoin refuses to cancel one order (the stop being replaced) until ``lift()``: a stop move stays in
    CANCELLING_OLD, its new stop live beside the old. ``refused`` lists each refusal."""

    def __init__(self, rig: Rig, order_id: str | None) -> None:
        self.client = rig.engine.client
        self.real = rig.engine.client.cancel_order
        self.order_id = order_id
        self.refused: list[str] = []
        self.client.cancel_order = self._cancel  # type: ignore[method-assign]

    async def _cancel(self, order_id: str) -> list[str]:
        if order_id == self.order_id:
            self.refused.append(order_id)
            raise ExchangeError("cancel refused (exchange busy)")
        return await self.real(order_id)

    def lift(self) -> None:
        self.client.cancel_order = self.real  # type: ignore[method-assign]


SYM = "ETHUSDTM"
__all__ = ["running"]  # the paper Runtime fixture


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


async def test_a_partial_auto_deleverage_resizes_the_stop_and_the_later_stop_out_is_booked_as_a_stop(
    rig: Rig,
) -> None:
    """KuCoin auto-deleverages 79 of 179 lots (tradeType adl, no fee). The stop and TP follow to the 100 lots left,
    the position is still the bot's, and when the stop closes the rest the trade is a stop-loss with every lot's
    money, the ADL'd ones included."""
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2003.00")
    rig.sim.state.force_reduce(SYM, 79, D("2003.50"), trade_type="adl")
    clock.step()
    diffs = await rig.engine.sync_positions()
    assert any("engine 179 lots, exchange 100" in d for d in diffs)
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(100, p.stop)] and got[StopDirection.UP] == [(100, p.take_profit)]
    assert rig.engine.managed[SYM].protection.lots == 100
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert (resized.old_lots, resized.new_lots, resized.cause, resized.price) == (
        179,
        100,
        "auto_deleverage",
        D("2003.50"),
    )
    assert format_event(resized) == (
        "📏 <b>ETHUSDTM long 179 → 100 lots</b>: 79 lots taken @ 2003.50, auto-deleveraged by KuCoin\n"
        f"stop {p.stop} · TP {p.take_profit} now cover 100 lots"
    )  # before: only "Drift: ETHUSDTM: engine 179 lots, exchange 100", no cause, no word of the stop
    same_price = [e for e in rig.events if isinstance(e, StopMoved)]
    assert [(e.old, e.new) for e in same_price] == [(p.stop, p.stop)]  # the resize, in the event log ...
    assert format_event(same_price[0]) is None  # ... not on the phone (before: "stop 1989.29 → 1989.29 (initial)")
    # The TP replaced for the 100 lots says so in its own event (before: none, only its order in the log), once;
    # at its price, the phone has it from the "📏" message above, not twice.
    [tp_moved] = [e for e in rig.events if isinstance(e, TakeProfitMoved)]
    assert (tp_moved.old, tp_moved.new, tp_moved.reason, tp_moved.lots) == (
        p.take_profit,
        p.take_profit,
        "resized",
        100,
    )
    assert format_event(tp_moved) is None
    await move(rig, clock, str(p.stop - D("0.5")))
    await rig.engine.sync_positions()
    c = await check_close(rig, since, wallet, "stop_loss")  # before: "auto_deleverage"
    assert c.net < 0 and await rig.client.open_stop_orders(SYM) == []


async def test_a_full_auto_deleverage_ends_the_trade_as_the_exchange_booked_it(rig: Rig) -> None:
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2012.00")
    rig.sim.state.force_reduce(SYM, p.lots, D("2012.40"), trade_type="adl")
    clock.step()
    await rig.engine.sync_positions()
    c = await check_close(rig, since, wallet, "auto_deleverage")
    assert c.exit == D("2012.40") and c.net > 0
    assert SYM not in rig.engine.managed and await rig.client.open_stop_orders(SYM) == []


async def test_a_partial_liquidation_then_a_stop_out_is_booked_as_a_stop(rig: Rig) -> None:
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "1995.00")
    rig.sim.state.force_reduce(SYM, 60, D("1994.80"), trade_type="liquid")
    clock.step()
    await rig.engine.sync_positions()
    assert (await stops(rig))[StopDirection.DOWN] == [(119, p.stop)]
    await rig.bus.drain()
    assert [(e.cause, e.new_lots) for e in rig.events if isinstance(e, PositionResized)] == [("liquidation", 119)]
    await move(rig, clock, str(p.stop - D("0.5")))
    await rig.engine.sync_positions()
    await check_close(rig, since, wallet, "stop_loss")  # before: "liquidation"


async def test_a_partial_then_full_liquidation_is_booked_as_a_liquidation(rig: Rig) -> None:
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, long_decision())
    for oid in (p.stop_order_id, p.tp_order_id):
        await rig.client.cancel_order(oid or "")
    rig.sim.state.force_reduce(SYM, 60, D("1994.80"), trade_type="liquid")
    await move(rig, clock, "1880.00")  # the rest past its liquidation price before the engine looked
    assert [f.trade_type for f in rig.sim.state.fills if not f.opening] == ["liquid", "liquid"]
    await rig.engine.sync_positions()
    c = await check_close(rig, since, wallet, "liquidation")
    assert c.net < 0


async def test_lots_added_by_hand_move_the_break_even_to_the_whole_positions_entry(rig: Rig) -> None:
    """A person doubles the bot's long at a higher price from the app. The stop keeps its price and covers all
    358 lots; the break-even the rule moves to later is the whole position's (the exchange's average entry, fees
    included), so a close there is not a loss booked as ``break_even``. The TP keeps its price."""
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, long_decision())
    stop, tp = p.stop, p.take_profit
    await move(rig, clock, "2010.00")
    await rig.client.place_order(by_hand(OrderSide.BUY, 179, leverage=p.leverage))
    clock.step()
    diffs = await rig.engine.sync_positions()
    assert any("engine 179 lots, exchange 358" in d for d in diffs)
    average = (await rig.client.position(SYM)).avg_entry
    assert p.entry == average and p.lots == 358 and (p.stop, p.take_profit) == (stop, tp)
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(358, stop)] and got[StopDirection.UP] == [(358, tp)]
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert format_event(resized) == (
        "📏 <b>ETHUSDTM long 179 → 358 lots</b>: 179 lots added @ 2010.41, by an order that is not the bot's\n"
        f"entry now 2005.405 (average) · stop {stop} · TP {tp} now cover 358 lots"
    )
    assert await rig.engine.sync_positions() == []  # settled: no TP moved by the new entry
    await move(rig, clock, "2012.00", 60_000)  # +10.4 % ROI on the bot's 2000.40, +5.9 % on the average 2005.405
    assert not await rig.engine.on_mark(SYM, D("2012.00"))  # before: a "profit lock" at 2005.96
    await move(rig, clock, "2016.00", 60_000)  # +8 % ROI on the average: the break-even move
    assert await rig.engine.on_mark(SYM, D("2016.00"))
    assert p.stop_reason == "break_even" and p.stop > average
    await move(rig, clock, str(p.stop - D("0.3")), 60_000)
    await rig.engine.sync_positions()
    c = await check_close(rig, since, wallet, "break_even")
    assert c.net >= 0  # before: that 2005.96 "profit lock" filled at 2005.25, booked profit_lock at net -9.17 USDT


async def test_a_take_profit_that_fills_partly_is_announced_as_such(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.state.max_taker_lots = 120
    rig.sim.set_price(SYM, D("2040.00"))  # the TP triggers; the book takes 120 of its 179 lots
    rig.sim.state.max_taker_lots = None
    rig.sim.set_price(SYM, D("2030.00"))
    await rig.engine.sync_positions()
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert (resized.old_lots, resized.new_lots, resized.cause) == (179, 59, "take_profit")
    assert "the take-profit filled partly" in (format_event(resized) or "")


async def test_a_resize_whose_fills_are_not_listed_yet_is_announced_without_a_cause(rig: Rig) -> None:
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.state.force_reduce(SYM, 79, D("2003.50"), trade_type="adl")
    rig.sim.faults.stale_fills_upto = len(rig.sim.state.fills) - 1  # the ADL fill not in the history yet
    rig.sim.faults.stale_fills_remaining = 1
    await rig.engine.sync_positions()
    assert (await stops(rig))[StopDirection.DOWN] == [(100, p.stop)]
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert (resized.cause, resized.price) == ("unknown", None)
    assert "79 lots taken, cause not listed by KuCoin yet" in (format_event(resized) or "")


def at(rig: Rig, ms: int) -> None:
    rig.engine.clock = rig.engine.coordinator.clock = lambda: ms


async def test_a_replacement_stop_that_triggers_before_it_is_confirmed_closes_once_and_leaves_nothing(
    rig: Rig,
) -> None:
    """The stop move's new stop lands with the mark already under it: it triggers at once and closes the
    position while the engine still waits to confirm it, the old stop still on the exchange. The retry must not
    leave a stop behind on the flat symbol, the close is booked once, and nothing ever sells more than 179 lots."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    old_stop = p.stop_order_id
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2005.00"))  # the mark fell back before the move (seen at 2015) reached the exchange
    assert not await rig.engine.on_mark(SYM, D("2015.00"))
    assert (await rig.client.position(SYM)).lots == 0 and p.replace_state == "PLACING_NEW"
    assert [o.id for o in await rig.client.open_stop_orders(SYM) if o.stop is StopDirection.DOWN] == [old_stop]
    at(rig, 1_800_000_100_000)
    await rig.engine.run_retries()  # the retry looks again before the position push is handled
    await rig.engine.sync_positions()
    await rig.engine.run_retries()
    assert SYM not in rig.engine.managed and await rig.client.open_stop_orders(SYM) == []
    assert sum(f.size for f in rig.sim.state.fills if f.side == "sell") == 179
    await rig.bus.drain()
    assert [e.exit_reason for e in rig.events if isinstance(e, PositionClosed)] == ["trailing_stop"]  # its rule


async def test_both_stops_of_a_replace_triggered_by_a_gap_close_the_position_once_and_never_flip_it(rig: Rig) -> None:
    """The new stop is confirmed, the old one's cancel is refused, and the price gaps through both: the first
    closes the 179 lots, the second is trimmed to nothing by reduceOnly; no short is opened."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    refusal = CancelRefused(rig, p.stop_order_id)
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))  # the new stop at 2009.30 is live and confirmed, the old one too
    assert p.replace_state == "CANCELLING_OLD" and len(await rig.client.open_stop_orders(SYM)) == 3
    refusal.lift()
    rig.sim.set_price(SYM, D("1970.00"))  # through 2009.30 and 1989.29 at once
    assert (await rig.client.position(SYM)).lots == 0
    assert sum(f.size for f in rig.sim.state.fills if f.side == "sell") == 179
    await rig.engine.sync_positions()
    assert await rig.client.open_stop_orders(SYM) == [] and SYM not in rig.engine.managed
    await rig.bus.drain()
    (closed,) = [e for e in rig.events if isinstance(e, PositionClosed)]
    assert closed.exit < D("1970") and closed.net < 0
    assert closed.exit_reason == "stop_loss"  # the old (initial) stop went first; before: "trailing_stop"


@pytest.mark.parametrize("running", ["1"], indirect=True)
async def test_a_difference_found_by_a_position_push_pauses_entries_as_its_message_says(running: Runtime) -> None:
    """A person opens a position from the app: its push sets off a reconciliation that adopts and protects it, and
    the drift message says "new entries paused". Before, only the scheduled reconciliation paused them: the push's
    left the engine ACTIVE, and the scheduled one, finding everything fixed, never paused nor cleared anything."""
    rt = running
    assert rt.engine is not None and rt.reconcile is not None
    rt.sim.set_price("ETHUSDTM", D("3000"))
    body = {"clientOid": "web-push-add-1", "symbol": "ETHUSDTM", "side": "buy", "type": "market", "size": 10}
    rt.sim.state.place(body | {"leverage": 5, "marginMode": "ISOLATED"})  # a person's order: a push, no REST
    async with asyncio.timeout(10):
        while "ETHUSDTM" not in rt.engine.managed:
            await asyncio.sleep(0.05)
    await rt.bus.drain()
    assert rt.engine.state is TradingState.REDUCING  # before: ACTIVE
    assert rt.engine.entries_blocked() == "trading state REDUCING" and not rt.health.reconciliation_clean
    await rt.reconcile()  # the next scheduled look finds everything in order
    assert rt.engine.state is TradingState.ACTIVE and rt.health.reconciliation_clean


async def test_lots_added_while_a_stop_move_is_in_flight_are_covered_once_the_move_lands(rig: Rig) -> None:
    """A person adds 179 lots while a stop move is between placing the new stop (for 179) and cancelling the old:
    the reconciliation cannot resize a stop that is being replaced. Once the move lands (the retry loop, every
    second), the stop must cover all 358 lots, not wait for the next scheduled look with half of them bare."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    refusal = CancelRefused(rig, p.stop_order_id)
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    assert p.replace_state == "CANCELLING_OLD"
    await rig.client.place_order(by_hand(OrderSide.BUY, 179, leverage=p.leverage))
    await rig.engine.sync_positions()
    assert p.lots == 358 and p.replace_state == "CANCELLING_OLD"
    refusal.lift()
    at(rig, 1_800_000_100_000)
    await rig.engine.run_retries()  # the old stop goes: the move has landed
    assert p.replace_state == "STEADY"
    at(rig, 1_800_000_200_000)
    await rig.engine.run_retries()
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(358, p.stop)]  # before: [(179, 2009.30)] until the next reconciliation
    assert got[StopDirection.UP] == [(358, p.take_profit)]


async def test_the_old_stop_triggering_while_its_replacement_is_placed_is_booked_as_that_stop(rig: Rig) -> None:
    """The mark tick at 2015 asks for a stop at 2009.30; while that order is on its way the price gaps down
    through the old stop at 1989.29, which closes the position. The new stop lands on a flat symbol and must go;
    the trade was closed by the initial stop, at a loss, and is booked as a stop-loss, not as the move that never
    protected anything."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    real_place = rig.engine.client.place_order

    async def gap_first(req: OrderRequest, **kw: Any) -> Any:
        if req.stop is StopDirection.DOWN:
            rig.sim.set_price(SYM, D("1985.00"))  # the old stop triggers before the new one reaches the exchange
        return await real_place(req, **kw)

    rig.engine.client.place_order = gap_first  # type: ignore[method-assign]
    at(rig, 1_800_000_000_000)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    rig.engine.client.place_order = real_place  # type: ignore[method-assign]
    assert (await rig.client.position(SYM)).lots == 0
    await rig.engine.sync_positions()
    await rig.engine.sync_positions()
    assert SYM not in rig.engine.managed and await rig.client.open_stop_orders(SYM) == []
    await rig.bus.drain()
    (closed,) = [e for e in rig.events if isinstance(e, PositionClosed)]
    assert closed.exit < D("1989.29") and closed.net < 0
    assert closed.exit_reason == "stop_loss"


async def test_a_short_auto_deleveraged_in_part_then_stopped_out_follows_the_same_way(rig: Rig) -> None:
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, short_decision())
    await move(rig, clock, "2004.00")
    rig.sim.state.force_reduce(SYM, 50, D("2004.20"), trade_type="adl")
    clock.step()
    await rig.engine.sync_positions()
    got = await stops(rig)
    assert got[StopDirection.UP] == [(p.lots, p.stop)] and got[StopDirection.DOWN] == [(p.lots, p.take_profit)]
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert (resized.side, resized.old_lots - resized.new_lots, resized.cause) == ("short", 50, "auto_deleverage")
    await move(rig, clock, str(p.stop + D("0.5")))
    await rig.engine.sync_positions()
    assert (await check_close(rig, since, wallet, "stop_loss")).net < 0
    assert (await rig.client.position(SYM)).lots == 0  # never flipped into a long


@pytest.mark.parametrize("running", ["1"], indirect=True)
async def test_an_auto_deleverage_push_resizes_the_stop_in_the_running_bot(running: Runtime) -> None:
    """End to end: KuCoin's position push (changeReason adl) reaches the bot over the WebSocket, its
    reconciliation resizes the stop and TP to the 100 lots left and announces why, with no scheduled look."""
    rt = running
    assert rt.engine is not None
    rt.sim.set_price(SYM, D("2000.00"))
    p = await rt.engine.enter(SYM, long_decision())
    assert p is not None and p.lots == 179
    rt.sim.state.force_reduce(SYM, 79, D("2001.00"), trade_type="adl")
    async with asyncio.timeout(10):
        while [o.size for o in rt.sim.state.open_orders(SYM) if o.stop] != [100, 100]:
            await asyncio.sleep(0.05)
    assert p.lots == 100
    # The push's reconciliation pauses entries after it has resized the orders (the orders can be seen first).
    async with asyncio.timeout(10):
        while rt.engine.state is not TradingState.REDUCING:  # until the next scheduled look agrees
            await asyncio.sleep(0.02)
    await rt.bus.drain()


async def test_an_owed_resize_waits_with_backoff_while_the_stop_move_keeps_failing(rig: Rig) -> None:
    """The old stop's cancel keeps being refused: the owed resize must not resume the move every second (it would
    skip the move's own backoff); it waits with the queue's backoff, and is done once the move lands."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    refusal = CancelRefused(rig, p.stop_order_id)
    refused = refusal.refused
    now = 1_800_000_000_000
    at(rig, now)
    rig.sim.set_price(SYM, D("2015.00"))
    await rig.engine.on_mark(SYM, D("2015.00"))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=p.leverage))
    await rig.engine.sync_positions()
    await rig.engine.run_retries()  # the resize is due at once; the replace's retry is not yet
    assert len(refused) == 2
    due = {i.key: i.due_ms for i in await rig.engine.retry.due(2**62)}
    assert due[f"resize:{SYM}"] > now  # before the fix it stayed due: the move was resumed every second
    await rig.engine.run_retries()
    assert len(refused) == 2
    refusal.lift()
    at(rig, now + 60_000)
    await rig.engine.run_retries()
    assert (await stops(rig))[StopDirection.DOWN] == [(229, p.stop)]
    assert await rig.engine.retry.depth() == 0
