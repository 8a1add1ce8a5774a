"""Account-level risk state (§9.3 drawdown, §9.4 halts and cooldowns), driven by an injected clock.

The backtest and the live runtime feed it the same calls (equity marks, entries, closed trades), so a halt that
fires in a backtest fires live at the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

HUNDRED = Decimal(100)
DAY_MS = 86_400_000


def utc_day(ts_ms: int) -> int:
    """Days since the epoch (UTC) of ``ts_ms``."""
    return ts_ms // DAY_MS


@dataclass
class RiskState:
    """Equity, its intraday peak, today's realised PnL, loss streak, circuit breaker and per-symbol cooldown clocks."""

    equity: Decimal
    start_of_day_equity: Decimal
    peak_equity: Decimal
    day: int
    realized_today: Decimal = Decimal(0)
    consecutive_losses: int = 0
    circuit_breaker: bool = False
    last_entry_ms: dict[str, int] = field(default_factory=dict)
    last_loss_exit_ms: dict[str, int] = field(default_factory=dict)
    consecutive_loss_resets_daily: bool = True
    worst_drawdown_today: Decimal = Decimal(0)  # the deepest mark of the day, for the daily summary
    worst_drawdown_yesterday: Decimal = Decimal(0)
    last_close_ms: int | None = None  # the latest close and the loss streak before it, for correct_close
    losses_before_last_close: int = 0

    @classmethod
    def start(cls, equity: Decimal, now_ms: int, *, consecutive_loss_resets_daily: bool = True) -> RiskState:
        return cls(
            equity=equity,
            start_of_day_equity=equity,
            peak_equity=equity,
            day=utc_day(now_ms),
            consecutive_loss_resets_daily=consecutive_loss_resets_daily,
        )

    @property
    def drawdown_pct(self) -> Decimal:
        """100 · (peak − equity) / peak, with the peak reset at UTC midnight (§9.3)."""
        if self.peak_equity <= 0:
            return Decimal(0)
        return max(Decimal(0), HUNDRED * (self.peak_equity - self.equity) / self.peak_equity)

    @property
    def daily_pnl_pct(self) -> Decimal:
        """Today's realised net PnL as a percent of start-of-day equity."""
        if self.start_of_day_equity <= 0:
            return Decimal(0)
        return HUNDRED * self.realized_today / self.start_of_day_equity

    def roll(self, now_ms: int) -> bool:
        """Start a new UTC day if ``now_ms`` is past midnight; returns True when it did."""
        today = utc_day(now_ms)
        if today <= self.day:
            return False
        self.worst_drawdown_yesterday = self.worst_drawdown_today if today == self.day + 1 else Decimal(0)
        self.worst_drawdown_today = Decimal(0)
        self.day = today
        self.start_of_day_equity = self.equity
        self.peak_equity = self.equity
        self.realized_today = Decimal(0)
        if self.consecutive_loss_resets_daily:
            self.consecutive_losses = 0
        return True

    def mark_equity(self, equity: Decimal, now_ms: int, *, breaker_pct: Decimal) -> None:
        """Record mark-to-market equity; latches the circuit breaker when drawdown reaches ``breaker_pct``."""
        self.roll(now_ms)
        self.equity = equity
        self.peak_equity = max(self.peak_equity, equity)
        drawdown = self.drawdown_pct
        self.worst_drawdown_today = max(self.worst_drawdown_today, drawdown)
        if drawdown >= breaker_pct:
            self.circuit_breaker = True

    def record_entry(self, symbol: str, now_ms: int) -> None:
        self.last_entry_ms[symbol] = now_ms

    def record_close(self, symbol: str, net_pnl: Decimal, now_ms: int) -> None:
        """A trade closed: realised PnL, loss streak (reset by a win) and the loss cooldown clock."""
        self.roll(now_ms)
        self.realized_today += net_pnl
        self.last_close_ms, self.losses_before_last_close = now_ms, self.consecutive_losses
        if net_pnl < 0:
            self.consecutive_losses += 1
            self.last_loss_exit_ms[symbol] = now_ms
        else:
            self.consecutive_losses = 0

    def correct_close(self, symbol: str, old_net: Decimal, new_net: Decimal, closed_ms: int, now_ms: int) -> None:
        """A trade closed at ``closed_ms`` was booked at ``old_net`` and is really ``new_net`` (its funding read only
        later): today's realised PnL (when it closed today), the loss cooldown and, when it is the latest close
        and changed sign, the loss streak, as if it had been booked right at the close. (A sign change of an
        earlier close leaves the streak to the next restart, which restores it from the corrected closes.)"""
        self.roll(now_ms)
        if utc_day(closed_ms) == self.day:
            self.realized_today += new_net - old_net
        if new_net < 0 <= old_net:
            self.last_loss_exit_ms[symbol] = max(closed_ms, self.last_loss_exit_ms.get(symbol, closed_ms))
        same_day = utc_day(closed_ms) == self.day or not self.consecutive_loss_resets_daily
        if closed_ms == self.last_close_ms and same_day and (new_net < 0) != (old_net < 0):
            self.consecutive_losses = self.losses_before_last_close + 1 if new_net < 0 else 0

    def restore(
        self,
        closes: Iterable[tuple[str, Decimal, int]],
        entries: Iterable[tuple[str, int]],
        now_ms: int,
        *,
        breaker_reset_ms: int | None = None,
    ) -> None:
        """After a restart: today's realised PnL, the loss streak and the cooldown clocks, from the stored closes
        ``(symbol, net, ts)`` and entries ``(symbol, ts)``, so a restart never clears a halt the history still
        calls for. The start-of-day equity is today's equity before today's closes; the intraday peak is at
        least that (the day's true peak is not stored, so the drawdown is, if anything, overstated). A manual
        breaker reset today (``breaker_reset_ms``) measured the drawdown afresh from the equity then, which is
        today's equity before the closes since."""
        closes = list(closes)
        today = utc_day(now_ms)
        self.day = today
        self.realized_today = Decimal(0)
        self.consecutive_losses = 0
        for symbol, net, ts in sorted(closes, key=lambda c: c[2]):
            if ts > now_ms:
                continue  # a replay started again over an old database: that history is in its future
            if net < 0:
                self.last_loss_exit_ms[symbol] = max(ts, self.last_loss_exit_ms.get(symbol, ts))
            if utc_day(ts) == today:
                self.realized_today += net
            elif self.consecutive_loss_resets_daily:
                continue  # the streak starts again at midnight
            self.consecutive_losses = self.consecutive_losses + 1 if net < 0 else 0
        for symbol, ts in entries:
            if ts <= now_ms:
                self.last_entry_ms[symbol] = max(ts, self.last_entry_ms.get(symbol, ts))
        self.start_of_day_equity = self.equity - self.realized_today
        self.peak_equity = max(self.equity, self.start_of_day_equity)
        if breaker_reset_ms is not None and utc_day(breaker_reset_ms) == today and breaker_reset_ms <= now_ms:
            since_reset = sum((net for _, net, ts in closes if breaker_reset_ms < ts <= now_ms), Decimal(0))
            self.peak_equity = max(self.equity, self.equity - since_reset)

    def reset_circuit_breaker(self) -> None:
        """Manual reset by a person (the breaker never clears itself)."""
        self.circuit_breaker = False
        self.peak_equity = self.equity
