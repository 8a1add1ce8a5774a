"""The daily summary counts the day that ended (it used to send 0 trades and 0 fees, and the new day's PnL)."""

from __future__ import annotations

from decimal import Decimal as D

from bot.formatting import format_event
from engine.events import PositionClosed
from engine.risk.limits import DAY_MS, RiskState
from engine.runtime.daily import summarize_day

DAY = 20_423 * DAY_MS  # 2025-12-01 00:00 UTC


def closed(ts_ms: int, net: str, fees: str) -> PositionClosed:
    return PositionClosed(
        ts_ms=ts_ms,
        symbol="ETHUSDTM",
        side="long",
        exit_reason="stop_loss",
        entry=D("2000"),
        exit=D("1990"),
        gross=D(net) + D(fees),
        fees=D(fees),
        funding=D(0),
        net=D(net),
    )


def risk_at(now_ms: int, worst_yesterday: str = "0", worst_today: str = "0") -> RiskState:
    r = RiskState.start(D(10000), now_ms)
    r.worst_drawdown_yesterday, r.worst_drawdown_today = D(worst_yesterday), D(worst_today)
    return r


def test_summary_of_the_day_that_ended() -> None:
    trades = [
        closed(DAY - 1, "-9.00", "1.00"),  # the day before: not counted
        closed(DAY, "-40.45", "6.46"),  # 00:00:00.000, the first instant of the day
        closed(DAY + 3_600_000, "25.10", "4.27"),
        closed(DAY + DAY_MS - 1, "-24.86", "4.26"),  # 23:59:59.999
        closed(DAY + DAY_MS, "100.00", "5.00"),  # the new day: not counted
    ]
    now = DAY + DAY_MS + 5 * 60_000  # 00:05 the next day
    s = summarize_day(trades, now_ms=now, risk=risk_at(now, worst_yesterday="1.25", worst_today="0.1"))
    assert (s.day, s.trades, s.net_pnl, s.fees, s.drawdown_pct) == ("2025-12-01", 3, D("-40.21"), D("14.99"), D("1.25"))
    text = format_event(s)
    assert text is not None and "2025-12-01" in text and "3 trades" in text and "1.25 %" in text


def test_a_day_without_trades() -> None:
    s = summarize_day([], now_ms=DAY + 60_000, risk=risk_at(DAY + 60_000))
    assert (s.day, s.trades, s.net_pnl, s.fees) == ("2025-11-30", 0, D(0), D(0))


def test_sent_in_the_afternoon_it_is_the_day_so_far() -> None:
    now = DAY + 20 * 3_600_000  # a summary configured for 20:00 UTC
    trades = [closed(DAY - 1, "-9.00", "1.00"), closed(DAY + 3_600_000, "25.10", "4.27")]
    s = summarize_day(trades, now_ms=now, risk=risk_at(now, worst_yesterday="2", worst_today="0.75"))
    assert (s.day, s.trades, s.net_pnl, s.drawdown_pct) == ("2025-12-01", 1, D("25.10"), D("0.75"))


def test_risk_state_keeps_the_worst_drawdown_of_the_day_that_ended() -> None:
    r = RiskState.start(D(10000), DAY)
    breaker = D(10)
    r.mark_equity(D(10200), DAY + 1_000, breaker_pct=breaker)
    r.mark_equity(D(9996), DAY + 2_000, breaker_pct=breaker)  # 2 % below the 10,200 peak
    r.mark_equity(D(10100), DAY + 3_000, breaker_pct=breaker)
    assert r.worst_drawdown_today == D(2)
    assert r.roll(DAY + DAY_MS + 1)
    assert (r.worst_drawdown_yesterday, r.worst_drawdown_today, r.peak_equity) == (D(2), D(0), D(10100))
    assert r.roll(DAY + 3 * DAY_MS)  # a whole day without marks: nothing is known of it
    assert r.worst_drawdown_yesterday == D(0)
