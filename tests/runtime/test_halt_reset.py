"""§9.4: the circuit breaker "halts all new entries until a manual reset", and the kill switch leaves trading HALTED
until a person resets it. Neither could be reset: nothing called RiskState.reset_circuit_breaker, and a restart
re-latched a breaker tripped by the day's realised losses (the drawdown is rebuilt from the stored closes)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from engine.events import ModeChanged, OrderRejected
from engine.risk.limits import RiskState
from engine.runtime.trading_state import TradingState
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_engine import long_decision
from tests.runtime.test_risk_restore import HOUR, NOW, closed


async def _trip_breaker(rig: Rig) -> None:
    """A day that began at 10,000 USDT, lost 1,100 on a close two hours ago: 11 % below the peak."""
    rig.engine.clock = lambda: NOW
    rig.engine.risk = RiskState.start(D(10000), NOW - 6 * HOUR)
    await rig.log.append(closed("XBTUSDTM", "-1100", NOW - 2 * HOUR))
    rig.sim.state.balance = D(8900)
    await rig.engine.mark_to_market()


async def _restart(rig: Rig, data_dir: Path) -> Rig:
    """A new engine on the same database and exchange, an hour later, built as the runtime builds it: from the
    exchange's equity, then the risk state rebuilt from the event log."""
    again = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    again.engine.clock = lambda: NOW + HOUR
    again.engine.risk = RiskState.start((await rig.client.account_overview()).equity, NOW + HOUR)
    await again.engine.restore_risk(again.log)
    await again.engine.mark_to_market()
    return again


async def test_a_person_lifts_the_breaker_and_a_restart_keeps_it_lifted(rig: Rig, data_dir: Path) -> None:
    await _trip_breaker(rig)
    assert rig.engine.latched_halts() == [
        "circuit breaker: drawdown 11.00 % from today's peak 10,000.00 USDT (equity 8,900.00 USDT)"
    ]
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    await rig.bus.drain()
    assert [e.reason for e in rig.events if isinstance(e, OrderRejected)] == ["circuit_breaker"]

    assert rig.engine.reset_halts("phone") == [
        "circuit breaker: drawdown 11.00 % from today's peak 10,000.00 USDT (equity 8,900.00 USDT)"
    ]
    assert rig.engine.latched_halts() == [] and rig.engine.risk.drawdown_pct == 0
    await rig.engine.mark_to_market()  # the same 8,900: measured from the reset, nothing to latch
    assert not rig.engine.risk.circuit_breaker
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is not None  # the breaker no longer refuses
    await rig.bus.drain()
    resets = [e for e in rig.events if isinstance(e, ModeChanged) and e.setting == "circuit_breaker"]
    assert [(e.value, e.by) for e in resets] == [("reset", "phone")]

    # Restart the same day: the stored closes say 11 % down from the day's start, but the reset is stored too.
    again = await _restart(rig, data_dir)
    assert not again.engine.risk.circuit_breaker and again.engine.latched_halts() == []
    await again.bus.stop()


async def test_without_a_reset_a_restart_still_latches_the_breaker(rig: Rig, data_dir: Path) -> None:
    await _trip_breaker(rig)
    again = await _restart(rig, data_dir)
    assert again.engine.risk.circuit_breaker
    await again.bus.stop()


async def test_the_kill_switchs_halt_is_lifted_by_a_person_only(rig: Rig) -> None:
    await rig.engine.kill_switch()
    assert rig.engine.state is TradingState.HALTED
    assert rig.engine.latched_halts() == ["trading HALTED by the kill switch"]
    assert rig.engine.entries_blocked() == "trading state HALTED"
    assert rig.engine.reset_halts("phone") == ["trading HALTED by the kill switch"]
    assert rig.engine.state is TradingState.ACTIVE and rig.engine.entries_blocked() is None
    assert rig.engine.reset_halts("phone") == []  # nothing latched: nothing happens
    await rig.bus.drain()
    moves = [(e.old, e.new) for e in rig.events if e.kind == "trading_state_changed"]
    assert moves[-2:] == [("HALTED", "REDUCING"), ("REDUCING", "ACTIVE")]


async def test_the_cockpit_port_reports_what_it_lifted(rig: Rig) -> None:
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl

    control = EngineControl(rig.engine, Settings(_env_file=None))  # type: ignore[call-arg]
    assert await control.halts() == []
    assert await control.reset_halts("telegram:111") == "nothing to reset: no halt is latched"
    await rig.engine.kill_switch()
    rig.engine.set_paused(True, by="phone")
    assert await control.halts() == ["trading HALTED by the kill switch"]
    assert await control.reset_halts("telegram:111") == (
        "lifted by telegram:111: trading HALTED by the kill switch. New entries are allowed again "
        "(still paused: /resume)."
    )


async def test_status_says_what_blocks_new_entries_and_what_lifts_it(rig: Rig) -> None:
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl

    control = EngineControl(rig.engine, Settings(_env_file=None))  # type: ignore[call-arg]
    assert (await control.status())["new entries"] == "allowed"
    await _trip_breaker(rig)  # 11 % below the day's peak
    rig.engine.risk.realized_today = D(-600)  # −6 % of the 10,000 the day started with
    rig.engine.risk.consecutive_losses = 5
    rig.engine.set_paused(True, by="phone")
    assert (await control.status())["new entries"] == (
        "paused (/resume); circuit breaker latched, drawdown 11.00 % (/reset); "
        "daily loss limit: -6.00 % today (until 00:00 UTC); 5 losses in a row (until 00:00 UTC)"
    )


async def test_status_and_pnl_start_the_new_day_at_midnight_not_at_the_next_mark(rig: Rig) -> None:
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl

    control = EngineControl(rig.engine, Settings(_env_file=None))  # type: ignore[call-arg]
    rig.engine.clock = lambda: NOW
    rig.engine.risk = RiskState.start(D(10000), NOW - HOUR)
    rig.engine.risk.realized_today = D(-600)
    assert (await control.status())["today"].startswith("-600.00 USDT")
    midnight = (NOW // 86_400_000 + 1) * 86_400_000
    rig.engine.clock = lambda: midnight + 5_000  # five seconds into the new UTC day, no mark since
    assert (await control.status())["today"].startswith("+0.00 USDT")  # was -600.00 until the next mark
    assert "daily loss limit" not in (await control.status())["new entries"]
    assert (await control.pnl())["today (realised)"] == "+0.00 USDT"


async def test_resume_from_the_phone_says_what_still_refuses_new_entries(rig: Rig) -> None:
    """/resume under a latched circuit breaker answered "Resumed: new entries allowed." while every entry was
    still refused: the trader went back to sleep on a bot that could not trade. Through the real bot library."""
    from typing import Any, cast

    from bot.service import TelegramService
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl
    from tests.bot.fake_telegram import FakeTelegram
    from tests.bot.test_cockpit_faults import build

    await _trip_breaker(rig)
    rig.engine.set_paused(True, by="phone")
    tg = FakeTelegram()
    await tg.start()
    control = EngineControl(rig.engine, Settings(_env_file=None))  # type: ignore[call-arg]
    svc: TelegramService = build(tg, rig.db, cast(Any, control))
    await svc.start()
    try:
        tg.push_message(111, "/resume")
        reply = (await tg.wait_for("sendMessage", timeout=10))[-1]["text"]
        assert not rig.engine.paused
        assert reply == (
            "Pause lifted, but new entries are still refused: circuit breaker latched, drawdown 11.00 % (/reset)"
        )
        rig.engine.reset_halts("phone")
        tg.push_message(111, "/resume")
        assert (await tg.wait_for("sendMessage", 2, timeout=10))[-1]["text"] == "Resumed: new entries allowed."
    finally:
        await svc.stop()
        await tg.stop()
