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
MEMORY_MS = 2 * DAY_MS  # the closes a restart restores from, and the live state remembers for a late correction


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
    # The closes of the last MEMORY_MS, oldest first: [symbol, net, ts, the loss streak just before it]. A close
    # corrected later (correct_close) refolds the streak from them, as a restart does from the event log.
    recent_closes: list[tuple[str, Decimal, int, int]] = field(default_factory=list)

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
        self.recent_closes = [c for c in self.recent_closes if c[2] >= now_ms - MEMORY_MS]
        self.recent_closes.append((symbol, net_pnl, now_ms, self.consecutive_losses))
        if net_pnl < 0:
            self.consecutive_losses += 1
            self.last_loss_exit_ms[symbol] = now_ms
        else:
            self.consecutive_losses = 0

    def correct_close(self, symbol: str, old_net: Decimal, new_net: Decimal, closed_ms: int, now_ms: int) -> None:
        """A trade closed at ``closed_ms`` was booked at ``old_net`` and is really ``new_net`` (its funding read only
        later): today's realised PnL (when it closed today), the loss streak and the symbol's loss cooldown, as if
        it had been booked right at the close. The streak is refolded over the closes since, so an earlier trade
        turning into a loss (or a win) after later closes counts at once, not only after the next restart: the
        live state is what a restart would restore from the corrected closes."""
        self.roll(now_ms)
        if utc_day(closed_ms) == self.day:
            self.realized_today += new_net - old_net
        at = next((i for i, c in enumerate(self.recent_closes) if c[0] == symbol and c[2] == closed_ms), None)
        if at is None:  # older than the memory (or booked before a restart that did not see it): PnL only
            if new_net < 0 <= old_net:
                self.last_loss_exit_ms[symbol] = max(closed_ms, self.last_loss_exit_ms.get(symbol, closed_ms))
            return
        c = self.recent_closes[at]
        self.recent_closes[at] = (c[0], new_net, c[2], c[3])
        self.consecutive_losses = self._refold(now_ms)
        losses = [ts for sym, net, ts, _ in self.recent_closes if sym == symbol and net < 0]
        if losses:
            self.last_loss_exit_ms[symbol] = max(losses)
        elif self.last_loss_exit_ms.get(symbol, closed_ms) >= self.recent_closes[0][2]:
            self.last_loss_exit_ms.pop(symbol, None)  # its only loss in the memory was this one: no cooldown

    def _refold(self, now_ms: int) -> int:
        """The loss streak now, from the remembered closes: each starts from the streak before the first one, a
        loss adds one, a win resets it, and (when the streak resets daily) so does a UTC midnight, as ``roll``
        does live. Each close's "streak before it" is rewritten on the way, for the next correction."""
        if not self.recent_closes:
            return self.consecutive_losses
        streak, prev_day = self.recent_closes[0][3], utc_day(self.recent_closes[0][2])
        for i, (symbol, net, ts, _) in enumerate(self.recent_closes):
            if self.consecutive_loss_resets_daily and utc_day(ts) > prev_day:
                streak = 0
            prev_day = utc_day(ts)
            self.recent_closes[i] = (symbol, net, ts, streak)
            streak = streak + 1 if net < 0 else 0
        if self.consecutive_loss_resets_daily and utc_day(now_ms) > prev_day:
            streak = 0
        return streak

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
        self.recent_closes = []
        for symbol, net, ts in sorted(closes, key=lambda c: c[2]):
            if ts > now_ms:
                continue  # a replay started again over an old database: that history is in its future
            if net < 0:
                self.last_loss_exit_ms[symbol] = max(ts, self.last_loss_exit_ms.get(symbol, ts))
            if utc_day(ts) == today:
                self.realized_today += net
            self.recent_closes.append((symbol, net, ts, 0))
        # The same fold a late correction does (the streak starts again at midnight when it resets daily).
        self.consecutive_losses = self._refold(now_ms) if self.recent_closes else 0
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
