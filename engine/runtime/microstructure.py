"""The §11 live avoid-entry filter's inputs, read from the exchange at the moment of an entry.

Backtests never see these (spec §10.11, invariant 17), so the filter is gate 12 of the live path only: checked
with the ticker the entry is priced from, the current funding rate and the public tape, all fetched together so
the entry waits one round trip, not three.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Protocol

import aiohttp

from engine.config.strategy import StrategyConfig
from engine.gates.entry import MicroInputs, avoid_entry
from engine.gates.result import GateResult
from exchange.errors import ExchangeError


class TapeSource(Protocol):
    async def funding_rate(self, symbol: str) -> Decimal: ...

    async def trade_history(self, symbol: str) -> list[dict[str, Any]]: ...


class Tape(NamedTuple):
    """Funding and order flow of one symbol, or why they could not be read."""

    funding_rate_pct: float | None
    buy_sell_ratio: float | None
    error: str | None = None


def spread_pct(ticker: Mapping[str, Any]) -> float | None:
    """Best ask minus best bid over the mid, in percent; None when the book has no two sides."""
    try:
        bid, ask = Decimal(str(ticker["bestBidPrice"])), Decimal(str(ticker["bestAskPrice"]))
    except (KeyError, InvalidOperation):
        return None
    if not bid.is_finite() or not ask.is_finite() or bid <= 0 or ask < bid:
        return None
    return float((ask - bid) / ((ask + bid) / 2) * 100)


def buy_share(trades: Iterable[Mapping[str, Any]]) -> float | None:
    """The takers' buy volume as a share of all volume on the tape (0.5 = balanced); None on an empty tape."""
    buys = total = 0
    for t in trades:
        size = int(t["size"])
        total += size
        if t["side"] == "buy":
            buys += size
    return buys / total if total > 0 else None


async def read_tape(client: TapeSource, symbol: str) -> Tape:
    """The funding rate and the last 100 trades' buy share; a failure is reported, never raised, so that the
    caller can refuse the entry with the reason (the filter fails closed: no data, no entry)."""
    try:  # both at once: the entry waits for one round trip, not two
        rate, trades = await asyncio.gather(client.funding_rate(symbol), client.trade_history(symbol))
        ratio = buy_share(trades)
    except (ExchangeError, aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError) as exc:
        return Tape(None, None, f"{type(exc).__name__}: {exc}")
    return Tape(float(rate * 100), ratio)


def avoid_entry_gate(cfg: StrategyConfig, ticker: Mapping[str, Any], tape: Tape) -> GateResult:
    """Gate 12 from what the exchange said; missing data blocks the entry with a reason instead of waving it by."""
    spread = spread_pct(ticker)
    if tape.error is not None:
        return GateResult("avoid_entry", False, detail=f"market data unavailable: {tape.error}")
    if spread is None:
        return GateResult("avoid_entry", False, detail="no two-sided book in the ticker")
    return avoid_entry(cfg, MicroInputs(spread, tape.funding_rate_pct, tape.buy_sell_ratio))
