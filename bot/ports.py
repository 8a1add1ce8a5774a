"""What the Telegram cockpit may ask of the engine. The engine implements it; the bot never calls the exchange."""

from __future__ import annotations

from typing import Protocol


class TradingControl(Protocol):
    async def status(self) -> dict[str, str]:
        """Mode, armed, auto/manual, equity, today's PnL, drawdown, open positions, halts, health."""
        ...

    async def positions(self) -> list[dict[str, str]]:
        """One dict per open position: symbol, side, size, entry, stop, TP, liquidation, uPnL."""
        ...

    async def orders(self) -> list[str]:
        """Open orders and stop orders, one line each."""
        ...

    async def pnl(self) -> dict[str, str]:
        """Realised net PnL today, last 7 days, last 30 days."""
        ...

    async def signals(self) -> list[str]:
        """The latest decision per symbol: passed, or why not."""
        ...

    async def config_view(self) -> dict[str, str]:
        """The effective settings with every secret redacted."""
        ...

    async def chart(self, symbol: str) -> bytes | None:
        """A PNG of recent candles with entries, exits and the stop path; None for an unknown symbol."""
        ...

    async def health(self) -> dict[str, str]:
        """Readiness checks: data fresh, streams connected, storage, reconciliation."""
        ...

    async def pause(self, by: str) -> None: ...

    async def resume(self, by: str) -> str:
        """Lift the pause; returns what happened, with anything that still refuses new entries (plain text)."""
        ...

    async def set_control_mode(self, mode: str, by: str) -> None: ...

    async def approve(self, approval_id: str, by: str) -> str:
        """Re-check and trade once: executed | failed_recheck | expired."""
        ...

    async def reject(self, approval_id: str, by: str) -> bool: ...

    async def approval_state(self, approval_id: str) -> str | None:
        """PENDING | APPROVED | EXECUTED | REJECTED | EXPIRED | FAILED_RECHECK; None for an unknown id."""
        ...

    async def arm_info(self) -> str:
        """What arming live means: account, symbols, risk per trade (plain text)."""
        ...

    async def arm(self, by: str) -> str:
        """Arm live trading; returns what happened (refused unless BOT_MODE=live and LIVE_TRADING_ARMED=true)."""
        ...

    async def disarm(self, by: str) -> None: ...

    async def halts(self) -> list[str]:
        """The latched halts only a person can lift (circuit breaker, kill switch), one line each; empty if none."""
        ...

    async def reset_halts(self, by: str) -> str:
        """Lift the latched halts; returns what happened (plain text)."""
        ...

    async def kill_switch(self, by: str) -> str:
        """Cancel all, flatten reduce-only, confirm flat; returns the report as text."""
        ...
