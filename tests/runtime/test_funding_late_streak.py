"""A trade's funding read only after later trades closed (§10.3, §9.4): the loss streak and the loss cooldown are
refolded over the closes as corrected at once, so the live state is what a restart restores from the event log.
Through the simulator and the real client, 503s injected on the funding history."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from engine.events import FundingBooked, PositionClosed
from exchange.models import OrderSide
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_equity_marks import long_decision
from tests.runtime.test_funding_unread import FUNDING_PATH
from tests.runtime.test_money_agrees import COOLDOWN, HOUR, SYMBOL, Clock, by_hand, expected, move, open_trade


def closes(rig: Rig) -> list[PositionClosed]:
    return [e for e in rig.events if isinstance(e, PositionClosed)]


async def test_a_win_read_as_a_loss_after_a_later_loss_counts_in_the_streak_at_once(rig: Rig, data_dir: Path) -> None:
    """A long held over 04:00 is closed by hand a few cents up, its funding unreadable: booked as a win. The next
    trade is stopped out (streak 1). Then the first trade's 0.358 USDT of funding is read: it was a loss, so the
    streak is 2, as a restart restores it. Before: the live streak stayed 1 (the corrected trade was not the
    latest close) and only a restart made it 2."""
    clock = Clock(rig)
    p, since, _ = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2001.00", 2 * HOUR)  # over 04:00: the long pays
    rig.sim.faults.server_error_next(1_000, FUNDING_PATH)
    await move(rig, clock, "2003.35")
    await rig.client.place_order(by_hand(OrderSide.SELL, p.lots, reduce_only=True))
    await rig.engine.sync_positions()
    await rig.bus.drain()
    gross, fees, funding = expected(rig, since)
    [first] = closes(rig)
    assert (first.funding_known, first.net) == (False, gross - fees)
    assert 0 < gross - fees < funding == D("0.358")  # a win without its funding, a loss with it
    assert rig.engine.risk.consecutive_losses == 0

    rig.sim.faults.server_error_remaining = 0
    await move(rig, clock, "2000", COOLDOWN)
    p, _, _ = await open_trade(rig, clock, long_decision())
    await move(rig, clock, str(p.stop - D("0.5")))
    await rig.engine.sync_positions()
    await rig.bus.drain()
    second = closes(rig)[-1]
    assert second.net < 0 and second.funding_known and second.ts_ms > first.ts_ms
    assert rig.engine.risk.consecutive_losses == 1

    clock.step(60_000)  # past the owed read's backoff
    await rig.engine.run_retries()
    await rig.bus.drain()
    [b] = [e for e in rig.events if isinstance(e, FundingBooked)]
    assert b.net == gross - fees - funding < 0
    live = rig.engine.risk
    assert live.consecutive_losses == 2  # before: 1 until a restart
    assert live.realized_today == b.net + second.net
    assert live.last_loss_exit_ms == {SYMBOL: second.ts_ms}

    again = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    try:
        again.engine.clock = clock
        await again.engine.restore_risk(again.log)
        restored = again.engine.risk
        assert (restored.consecutive_losses, restored.realized_today, restored.last_loss_exit_ms) == (
            live.consecutive_losses,
            live.realized_today,
            live.last_loss_exit_ms,
        )
    finally:
        await again.bus.stop()
