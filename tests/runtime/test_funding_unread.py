"""A close whose funding cannot be read is never booked with a silent 0 (§10.3): the client retries the read as
every read; past that the trade is booked with its funding marked unknown, the close message says so, and the
retry loop books the funding once the exchange answers, correcting today's realised PnL, /pnl, the daily summary
and what a restart restores. Through the simulator and the real client, 503s injected on the funding history."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from bot.formatting import format_event
from engine.events import FundingBooked, PositionClosed
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_equity_marks import long_decision
from tests.runtime.test_money_agrees import CENT, COOLDOWN, HOUR, SYMBOL, TINY, Clock, expected, move, open_trade

FUNDING_PATH = "/api/v1/funding-history"


def closes(rig: Rig) -> list[PositionClosed]:
    return [e for e in rig.events if isinstance(e, PositionClosed)]


def booked(rig: Rig) -> list[FundingBooked]:
    return [e for e in rig.events if isinstance(e, FundingBooked)]


async def held_over_a_settlement_then_stopped(rig: Rig, clock: Clock, failures: int) -> tuple[int, D]:
    """A long held over the 04:00 settlement, stopped out while the funding history answers 503 ``failures``
    times; returns (opened at, wallet before)."""
    p, since, wallet = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2001.00", 2 * HOUR)  # over 04:00: the long pays
    assert len([r for r in rig.sim.state.funding if r.time_point >= since]) == 1
    rig.sim.faults.server_error_next(failures, FUNDING_PATH)
    await move(rig, clock, str(p.stop - D("0.5")))
    await rig.engine.sync_positions()
    await rig.bus.drain()
    return since, wallet


async def test_a_funding_read_failing_a_few_times_is_retried_and_booked_at_once(rig: Rig) -> None:
    clock = Clock(rig)
    since, wallet = await held_over_a_settlement_then_stopped(rig, clock, failures=3)
    c = closes(rig)[-1]
    assert c.funding_known
    assert c.funding == expected(rig, since)[2] > 0
    assert abs(rig.sim.state.balance - wallet - c.net) < TINY


async def test_unread_funding_is_marked_unknown_then_booked_by_the_retry_loop(rig: Rig, data_dir: Path) -> None:
    """Before: the close was booked with funding 0.00 and net gross − fees while the simulator had charged the
    long's 04:00 funding; today's realised PnL, /pnl and the daily summary were off by it for good."""
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl
    from engine.runtime.daily import summarize_day

    clock = Clock(rig)
    since, wallet = await held_over_a_settlement_then_stopped(rig, clock, failures=1_000)
    gross, fees, funding = expected(rig, since)
    assert funding > 0  # what the simulator charged
    c = closes(rig)[-1]
    assert (c.gross, c.fees, c.funding, c.funding_known) == (gross, fees, D(0), False)
    assert c.net == gross - fees
    shown = format_event(c)
    assert shown is not None and shown.endswith("funding: not read yet"), shown
    assert rig.engine.risk.realized_today == gross - fees
    assert await rig.engine.retry.depth() == 1  # the owed read is persisted

    clock.step()
    await rig.engine.run_retries()  # the exchange still fails: nothing booked, the read stays owed
    await rig.bus.drain()
    assert booked(rig) == [] and await rig.engine.retry.depth() == 1

    rig.sim.faults.server_error_remaining = 0
    clock.step(60_000)  # past the item's backoff
    await rig.engine.run_retries()
    await rig.bus.drain()
    [b] = booked(rig)
    assert (b.symbol, b.closed_ms, b.funding, b.net) == (SYMBOL, c.ts_ms, funding, gross - fees - funding)
    assert await rig.engine.retry.depth() == 0
    net = gross - fees - funding
    assert abs(rig.sim.state.balance - wallet - net) < TINY  # the books agree with the wallet again
    assert rig.engine.risk.realized_today == net
    shown = format_event(b)
    assert shown is not None
    assert f"funding {funding.quantize(CENT):,} USDT paid" in shown and f"net now {net.quantize(CENT):,}" in shown

    stored = await rig.log.closed_trades(since)
    assert [(t.funding, t.net, t.funding_known) for t in stored] == [(funding, net, True)]
    evening = clock.now - clock.now % (24 * HOUR) + 23 * HOUR  # a summary sent in the afternoon covers today
    summary = summarize_day(stored, now_ms=evening, risk=rig.engine.risk)
    assert summary.net_pnl == net
    pnl = await EngineControl(rig.engine, Settings(_env_file=None), rig.log).pnl()  # type: ignore[call-arg]
    assert pnl["7 days"] == f"{net.quantize(CENT):+,} USDT over 1 trades"
    assert pnl["today (realised)"] == f"{net.quantize(CENT):+,} USDT"

    again = await make_engine(rig.sim, rig.client, rig.db, data_dir)  # a restart restores the corrected day
    again.engine.clock = clock
    await again.engine.restore_risk(again.log)
    assert again.engine.risk.realized_today == net
    await again.bus.stop()


async def test_owed_funding_survives_a_restart(rig: Rig, data_dir: Path) -> None:
    """The read still owed when the process stops is booked by the next one's retry loop."""
    clock = Clock(rig)
    since, _ = await held_over_a_settlement_then_stopped(rig, clock, failures=1_000)
    rig.sim.faults.server_error_remaining = 0
    again = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    again.engine.clock = clock
    clock.step(60_000)
    await again.engine.run_retries()
    await again.bus.drain()
    [b] = [e for e in again.events if isinstance(e, FundingBooked)]
    assert b.funding == expected(rig, since)[2]
    assert await again.engine.retry.depth() == 0
    await again.bus.stop()


async def test_the_late_read_books_only_the_closed_trades_funding(rig: Rig) -> None:
    """Read after a next trade on the symbol has been funded too: only the records up to the close are booked."""
    clock = Clock(rig)
    since, _ = await held_over_a_settlement_then_stopped(rig, clock, failures=1_000)
    first = -sum((r.funding for r in rig.sim.state.funding if r.time_point >= since), D(0))
    await move(rig, clock, "2000", COOLDOWN)
    _, second_since, _ = await open_trade(rig, clock, long_decision())
    await move(rig, clock, "2001.00", 8 * HOUR)  # over 12:00: the next trade pays too
    assert len([r for r in rig.sim.state.funding if r.time_point >= second_since]) == 1
    rig.sim.faults.server_error_remaining = 0
    await rig.engine.run_retries()
    await rig.bus.drain()
    [b] = booked(rig)
    assert b.funding == first == D("0.358")  # not 0.358 + the next trade's 12:00 record
    assert SYMBOL in rig.engine.managed  # the next trade is untouched


async def test_an_unreadable_owed_funding_item_is_dropped_and_logged_not_raised(rig: Rig) -> None:
    """A corrupt row (a hand-edited database) would otherwise raise on every pass of the retry loop."""
    await rig.engine.retry.put("funding", "funding:ETHUSDTM:1", {"symbol": SYMBOL, "side": "sideways"}, 0)
    assert await rig.engine.run_retries() == 1
    assert await rig.engine.retry.depth() == 0 and booked(rig) == []
