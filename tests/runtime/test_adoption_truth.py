"""What the engine believes about a position it did not open, or whose size changed, must be what KuCoin holds:
the leverage its ROI-based stop is measured with, how a close the fills history does not list yet ended, the
take-profit's size after a failed resize, and when the chat is told the stop and TP cover the new size. Each runs
through the simulator and the real client."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

import engine.runtime.engine as engine_module
from bot.formatting import format_event
from engine.events import PositionClosed, PositionResized, ResizeConfirmed
from engine.models import Side
from engine.risk.formulas import initial_levels
from engine.runtime.protection import Protected
from exchange.errors import ExchangeError
from exchange.models import OrderRequest, OrderSide, StopDirection
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from storage.db import Database
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_engine import long_decision
from tests.runtime.test_money_agrees import HOUR, Clock, by_hand, check_close, move, open_trade, short_decision
from tests.runtime.test_position_size_changes import stops

SYM = "ETHUSDTM"


async def test_a_position_adopted_at_5x_gets_the_stop_of_5x_although_kucoin_reports_4_98(rig: Rig) -> None:
    """A person opens 50 lots at 5x (isolated) from the app. KuCoin reports the position's leverage margin-derived,
    4.98: ``int()`` made it 4x, and the -10 % ROI stop sat 2.5 % under the entry instead of 2 % (looser than the
    rule). The opening order says 5x: the stop and TP are the rule's for 5x."""
    rig.sim.set_price(SYM, D("2000"))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=5))
    reported = (await rig.client.position(SYM)).leverage
    assert D("4.9") < reported < 5  # the simulator reports it as KuCoin does (reference §5.6.3: 4.9685590767)
    await rig.engine.sync_positions()
    p = rig.engine.managed[SYM].protection
    levels = initial_levels(rig.engine.cfg, Side.LONG, p.entry, 5, rig.engine.specs[SYM].tick_size)
    assert p.leverage == 5  # before: 4
    assert (p.stop, p.take_profit) == (levels.stop, levels.take_profit) == (D("1960.40"), D("2120.42"))
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(50, D("1960.40"))]  # before: 1950.39, 2.5 % away
    assert got[StopDirection.UP] == [(50, D("2120.42"))]


async def test_an_adopted_position_whose_orders_cannot_be_read_is_never_given_a_looser_stop(rig: Rig) -> None:
    """The opening order cannot be looked up: the exchange's 4.98 is all there is. Rounded up to 5 (a stop for
    4x would be looser than the position's real leverage allows)."""
    rig.sim.set_price(SYM, D("2000"))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=5))
    rig.sim.faults.order_lag_next(1)  # the order lookup answers "not found"
    await rig.engine.sync_positions()
    p = rig.engine.managed[SYM].protection
    assert p.leverage == 5 and p.stop == D("1960.40")  # before: 4x, 1950.39


async def test_an_adopted_position_added_to_at_another_leverage_takes_the_exchanges_figure_rounded_up(
    rig: Rig,
) -> None:
    """50 lots at 5x, then 50 more at 10x: the orders disagree, the position's margin makes it ~6.6x. The stop is
    measured for 7x (tighter than 6.6x's, never looser), not for 5x or 10x."""
    rig.sim.set_price(SYM, D("2000"))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=5))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=10))
    reported = (await rig.client.position(SYM)).leverage
    assert D("6.5") < reported < 7
    await rig.engine.sync_positions()
    assert rig.engine.managed[SYM].protection.leverage == 7  # before: 6


def at(rig: Rig, ms: int) -> None:
    rig.engine.clock = rig.engine.coordinator.clock = lambda: ms


async def test_a_take_profit_resize_that_fails_is_retried_as_a_resize_and_only_then_said_to_cover(rig: Rig) -> None:
    """KuCoin auto-deleverages 79 of 179 lots; the stop is resized to 100, but placing the 100-lot TP fails once.
    The queued take-profit retry only handled extensions, so the TP kept covering 179 lots until the next
    reconciliation; and the chat had already been told "stop · TP now cover 100 lots". Now the message says the
    TP is being resized, the retry resizes it, and a follow-up says so once KuCoin lists both at 100 lots."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None and p.lots == 179
    client = rig.engine.client
    real_place = client.place_order
    refused: list[int] = []

    async def refuse_tp_once(req: OrderRequest, **kw: Any) -> Any:
        if req.stop is StopDirection.UP and not refused:
            refused.append(req.lots)
            raise ExchangeError("take-profit placement refused (exchange busy)")
        return await real_place(req, **kw)

    client.place_order = refuse_tp_once  # type: ignore[method-assign]
    rig.sim.state.force_reduce(SYM, 79, D("2003.50"), trade_type="adl")
    now = 1_800_000_000_000
    at(rig, now)
    await rig.engine.sync_positions()
    assert refused == [100]
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(100, p.stop)] and got[StopDirection.UP] == [(179, p.take_profit)]
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert not resized.covered
    assert format_event(resized) == (
        "📏 <b>ETHUSDTM long 179 → 100 lots</b>: 79 lots taken @ 2003.50, auto-deleveraged by KuCoin\n"
        f"stop {p.stop} · TP {p.take_profit} being resized to 100 lots (not yet confirmed on KuCoin; a message "
        "follows once they are)"
    )  # before: "... now cover 100 lots", with the TP still for 179
    assert not [e for e in rig.events if isinstance(e, ResizeConfirmed)]
    at(rig, now + 60_000)  # past the retry's backoff
    await rig.engine.run_retries()
    got = await stops(rig)
    assert got[StopDirection.UP] == [(100, p.take_profit)]  # before: [(179, ...)] until the next reconciliation
    assert got[StopDirection.DOWN] == [(100, p.stop)]
    assert await rig.engine.retry.depth() == 0
    await rig.bus.drain()
    (confirmed,) = [e for e in rig.events if isinstance(e, ResizeConfirmed)]
    assert format_event(confirmed) == (
        f"🛡 ETHUSDTM long: stop {p.stop} · TP {p.take_profit} now cover 100 lots (confirmed on KuCoin)"
    )
    at(rig, now + 120_000)
    assert await rig.engine.sync_positions() == []
    await rig.bus.drain()
    assert len([e for e in rig.events if isinstance(e, ResizeConfirmed)]) == 1  # said once


async def adl_with_the_take_profit_refused_once(rig: Rig, now: int) -> Protected:
    """KuCoin auto-deleverages 79 of 179 lots and the 100-lot TP is refused once: the chat is told "being
    resized to 100 lots (not yet confirmed on KuCoin)" and a ``resize`` item is queued."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None and p.lots == 179
    client = rig.engine.client
    real_place = client.place_order

    async def refuse_tp_once(req: OrderRequest, **kw: Any) -> Any:
        if req.stop is StopDirection.UP:
            client.place_order = real_place  # type: ignore[method-assign]
            raise ExchangeError("take-profit placement refused (exchange busy)")
        return await real_place(req, **kw)

    client.place_order = refuse_tp_once  # type: ignore[method-assign]
    rig.sim.state.force_reduce(SYM, 79, D("2003.50"), trade_type="adl")
    at(rig, now)
    await rig.engine.sync_positions()
    assert client.place_order == real_place  # refused once, then the real one again
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert not resized.covered and (await stops(rig))[StopDirection.UP] == [(179, p.take_profit)]
    return p


async def restarted(rig: Rig, data_dir: Path, now: int) -> Rig:
    """A new process on the same database and exchange, started as the app starts it."""
    again = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    at(again, now)
    await again.engine.restore_resizes(again.log)
    await again.engine.recover()
    await again.engine.run_retries()
    await again.bus.drain()
    return again


async def test_a_resize_said_unconfirmed_before_a_restart_is_confirmed_after_it(rig: Rig, data_dir: Path) -> None:
    """The bot stops between "being resized to 100 lots (not yet confirmed)" and the resize: the next process
    resizes the TP (persisted retry queue) and must say so. Before: the list of resizes owed a follow-up lived in
    memory only, so the TP was resized to 100 but no "🛡 … now cover 100 lots (confirmed on KuCoin)" ever came:
    the trader's last word on the position was "not yet confirmed"."""
    now = 1_800_000_000_000
    p = await adl_with_the_take_profit_refused_once(rig, now)
    again = await restarted(rig, data_dir, now + 60_000)
    try:
        got = await stops(again)
        assert got[StopDirection.UP] == [(100, p.take_profit)] and got[StopDirection.DOWN] == [(100, p.stop)]
        assert await again.engine.retry.depth() == 0
        (confirmed,) = [e for e in again.events if isinstance(e, ResizeConfirmed)]  # before: none
        assert format_event(confirmed) == (
            f"🛡 ETHUSDTM long: stop {p.stop} · TP {p.take_profit} now cover 100 lots (confirmed on KuCoin)"
        )
        at(again, now + 120_000)
        assert await again.engine.sync_positions() == []
        await again.engine.run_retries()
        await again.bus.drain()
        assert len([e for e in again.events if isinstance(e, ResizeConfirmed)]) == 1  # said once
    finally:
        await again.bus.stop()


async def test_a_resize_confirmed_before_a_restart_is_not_confirmed_again(rig: Rig, data_dir: Path) -> None:
    now = 1_800_000_000_000
    await adl_with_the_take_profit_refused_once(rig, now)
    at(rig, now + 60_000)
    await rig.engine.run_retries()
    await rig.bus.drain()
    assert len([e for e in rig.events if isinstance(e, ResizeConfirmed)]) == 1
    again = await restarted(rig, data_dir, now + 120_000)
    try:
        assert [e for e in again.events if isinstance(e, ResizeConfirmed)] == []
        assert SYM not in again.engine._resize_unconfirmed
    finally:
        await again.bus.stop()


async def test_a_resize_owed_when_the_position_closed_while_the_bot_was_down_is_never_confirmed(
    rig: Rig, data_dir: Path
) -> None:
    """Stopped out while down: the restart books the close, and no "now cover 100 lots" follows for a position
    that is gone (nor for the next one on the symbol)."""
    now = 1_800_000_000_000
    p = await adl_with_the_take_profit_refused_once(rig, now)
    rig.sim.set_price(SYM, p.stop - D("0.5"))
    again = await restarted(rig, data_dir, now + 60_000)
    try:
        await again.bus.drain()
        assert [e.symbol for e in again.events if isinstance(e, PositionClosed)] == [SYM]
        assert [e for e in again.events if isinstance(e, ResizeConfirmed)] == []
        assert SYM not in again.engine._resize_unconfirmed and SYM not in again.engine.managed
    finally:
        await again.bus.stop()


async def test_a_stop_resize_that_fails_is_not_announced_as_covering_the_new_size(rig: Rig) -> None:
    """A person adds 179 lots; the 358-lot stop cannot be placed (refused twice). The chat must not read "stop
    now covers 358 lots" while KuCoin holds a 179-lot stop: it says "being resized", then confirms."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_place = client.place_order
    refused: list[int] = []

    async def refuse_stop_twice(req: OrderRequest, **kw: Any) -> Any:
        if req.stop is StopDirection.DOWN and len(refused) < 2:
            refused.append(req.lots)
            raise ExchangeError("stop placement refused (exchange busy)")
        return await real_place(req, **kw)

    client.place_order = refuse_stop_twice  # type: ignore[method-assign]
    await rig.client.place_order(by_hand(OrderSide.BUY, 179, leverage=p.leverage))
    now = 1_800_000_000_000
    at(rig, now)
    await rig.engine.sync_positions()
    assert (await stops(rig))[StopDirection.DOWN] == [(179, p.stop)]  # the old stop still protects 179
    await rig.bus.drain()
    (resized,) = [e for e in rig.events if isinstance(e, PositionResized)]
    assert not resized.covered and "being resized to 358 lots" in (format_event(resized) or "")
    for step in range(1, 6):
        at(rig, now + step * 60_000)
        await rig.engine.run_retries()
    assert refused == [358, 358]
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(358, p.stop)] and got[StopDirection.UP] == [(358, p.take_profit)]
    assert await rig.engine.retry.depth() == 0
    await rig.bus.drain()
    (confirmed,) = [e for e in rig.events if isinstance(e, ResizeConfirmed)]
    assert confirmed.lots == 358


async def test_a_take_profit_retry_alone_resizes_the_take_profit(rig: Rig) -> None:
    """The queue holds only the take-profit item of a failed TP resize (as the version before this one left it, with
    no ``resize`` item beside it): that item must resize the TP, not only extend it. Before: the TP kept its 179
    lots over a position of 100 until the next reconciliation."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    client = rig.engine.client
    real_place = client.place_order

    async def refuse_tp(req: OrderRequest, **kw: Any) -> Any:
        if req.stop is StopDirection.UP:
            raise ExchangeError("take-profit placement refused (exchange busy)")
        return await real_place(req, **kw)

    client.place_order = refuse_tp  # type: ignore[method-assign]
    rig.sim.state.force_reduce(SYM, 79, D("2003.50"), trade_type="adl")
    now = 1_800_000_000_000
    at(rig, now)
    await rig.engine.sync_positions()
    client.place_order = real_place  # type: ignore[method-assign]
    assert sorted(i.key for i in await rig.engine.retry.due(2**62)) == [f"resize:{SYM}", f"take_profit:{SYM}"]
    await rig.engine.retry.done(f"resize:{SYM}")
    at(rig, now + 60_000)
    await rig.engine.run_retries()
    assert (await stops(rig))[StopDirection.UP] == [(100, p.take_profit)]  # before: [(179, ...)]
    assert await rig.engine.retry.depth() == 0


async def test_a_full_auto_deleverage_the_fills_history_does_not_list_is_booked_from_kucoins_closed_position(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KuCoin auto-deleverages the whole long at 2012.40 after a funding settlement, and its fills history does
    not list the ADL fill within the close's reads. Before: estimated at the stop (1989.29, taker fees) and booked
    as ``stop_loss``, a loss for a trade that made money. Now the closed-position history (``ADL_LONG``) books it:
    the exchange's gross, fees and funding, to the last digit, and ``auto_deleverage``."""
    monkeypatch.setattr(engine_module, "CLOSE_FILLS_RETRY_S", (0.01, 0.01, 0.01))
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2012.00", 2 * HOUR)  # past the 04:00 UTC funding settlement
    assert [r.symbol for r in rig.sim.state.funding] == [SYM]
    rig.sim.faults.stale_fills_upto = len(rig.sim.state.fills)  # the entry is listed, the ADL will not be
    rig.sim.faults.stale_fills_remaining = 20
    rig.sim.state.force_reduce(SYM, p.lots, D("2012.40"), trade_type="adl")
    clock.step()
    await rig.engine.sync_positions()
    c = await check_close(rig, since, wallet, "auto_deleverage")  # before: "stop_loss"
    assert c.exit == D("2012.40") and c.net > 0  # before: exit 1989.29, net < 0
    assert c.funding_known and await rig.engine.retry.depth() == 0  # the record's funding: nothing owed
    assert SYM not in rig.engine.managed and await rig.client.open_stop_orders(SYM) == []


async def test_a_liquidated_short_the_fills_history_does_not_list_is_booked_as_a_liquidation(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "CLOSE_FILLS_RETRY_S", (0.01, 0.01, 0.01))
    clock = Clock(rig)
    p, since, wallet = await open_trade(rig, clock, short_decision())
    for oid in (p.stop_order_id, p.tp_order_id):
        await rig.client.cancel_order(oid or "")  # the protection removed by hand ...
    rig.sim.faults.stale_fills_upto = len(rig.sim.state.fills)
    rig.sim.faults.stale_fills_remaining = 20
    await move(rig, clock, "2400.00")  # ... and the price runs through the liquidation price
    assert [f.trade_type for f in rig.sim.state.fills if not f.opening] == ["liquid"]
    (record,) = await rig.client.closed_positions(SYM)
    assert (record.kind, record.side) == ("liquid", "SHORT")
    await rig.engine.sync_positions()
    c = await check_close(rig, since, wallet, "liquidation")  # before: "stop_loss" at the stop price
    assert c.exit == record.close_price and c.net == record.pnl < D("-190")


async def test_a_close_whose_fills_and_closed_position_are_both_unreadable_is_estimated(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the fills nor the closed-position history answer: estimated at the stop as before (the engine goes
    on), its funding owed to a later read."""
    monkeypatch.setattr(engine_module, "CLOSE_FILLS_RETRY_S", (0.01, 0.01, 0.01))
    clock = Clock(rig)
    p, _, _ = await open_trade(rig, clock, long_decision())
    rig.sim.faults.stale_fills_upto = len(rig.sim.state.fills)
    rig.sim.faults.stale_fills_remaining = 20
    rig.sim.faults.server_error_next(50, "/api/v1/history-positions")
    rig.sim.state.force_reduce(SYM, p.lots, D("2012.40"), trade_type="adl")
    clock.step()
    await rig.engine.sync_positions()
    await rig.bus.drain()
    (c,) = [e for e in rig.events if isinstance(e, PositionClosed)]
    assert (c.exit, c.exit_reason) == (p.stop, "stop_loss")


async def test_a_cross_position_is_adopted_at_the_symbols_cross_leverage(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    """Cross margin: KuCoin's position ``leverage`` is the symbol's cross leverage; the engine asks the symbol's
    setting itself (8x here), the configured number, not a figure derived from the margin."""
    async with Database(tmp_path / "cross.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir, margin_mode="CROSS")
        try:
            await client.set_margin_mode(SYM, "CROSS")
            await client.set_cross_leverage(SYM, 8)
            sim.set_price(SYM, D("2000"))
            await client.place_order(
                OrderRequest(SYM, OrderSide.BUY, 50, leverage=8, margin_mode="CROSS", client_oid="web-cross-1")
            )
            await rig.engine.sync_positions()
            p = rig.engine.managed[SYM].protection
            levels = initial_levels(rig.engine.cfg, Side.LONG, p.entry, 8, rig.engine.specs[SYM].tick_size)
            assert p.leverage == 8 and (p.stop, p.take_profit) == (levels.stop, levels.take_profit)
        finally:
            await rig.bus.stop()


async def test_a_resize_stored_but_never_announced_is_announced_from_the_size_the_trader_knows(
    rig: Rig, data_dir: Path
) -> None:
    """The process stores the new size (179 -> 100 after an ADL) and dies before announcing it; while it is down,
    KuCoin deleverages 40 more. Before: the restart compared the exchange's 60 with the stored 100 and said
    "100 -> 60 lots": the trader, who last heard 179, never learnt of the first 79. Now the announcement starts at
    the size the event log says they were told, and the stop and TP cover the 60 left."""
    now = 1_800_000_000_000
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None and p.lots == 179
    rig.sim.state.force_reduce(SYM, 79, D("2003.50"), trade_type="adl")
    p.lots = 100  # what the killed process had stored (sync_positions saves before it announces)
    await rig.engine.positions_repo.save(p.row())
    rig.sim.state.force_reduce(SYM, 40, D("2001.00"), trade_type="adl")
    again = await restarted(rig, data_dir, now)
    try:
        got = await stops(again)
        assert got[StopDirection.DOWN] == [(60, p.stop)] and got[StopDirection.UP] == [(60, p.take_profit)]
        (resized,) = [e for e in again.events if isinstance(e, PositionResized)]
        assert (resized.old_lots, resized.new_lots, resized.cause, resized.covered) == (
            179,
            60,
            "auto_deleverage",
            True,
        )  # before: (100, 60, ...)
        assert format_event(resized) is not None and "179 → 60 lots" in (format_event(resized) or "")
        at(again, now + 60_000)
        assert await again.engine.sync_positions() == []  # said once: the next look finds nothing
        await again.bus.drain()
        assert len([e for e in again.events if isinstance(e, PositionResized)]) == 1
    finally:
        await again.bus.stop()


async def test_a_restart_after_an_announced_resize_announces_nothing(rig: Rig, data_dir: Path) -> None:
    """The resize was stored and announced before the stop: the restart finds the told size, the stored size and
    the exchange's equal and says nothing more."""
    now = 1_800_000_000_000
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None
    rig.sim.state.force_reduce(SYM, 79, D("2003.50"), trade_type="adl")
    at(rig, now)
    await rig.engine.sync_positions()
    await rig.bus.drain()
    again = await restarted(rig, data_dir, now + 60_000)
    try:
        assert [e for e in again.events if isinstance(e, PositionResized)] == []
        assert SYM not in again.engine._told_lots  # looked at once, then forgotten
    finally:
        await again.bus.stop()
