"""§11 live microstructure, read from the exchange at the moment of a passed decision: the avoid-entry filter
(gate 12) and the shadow micro score (§5.3).

Backtests never see these (spec §10.11, invariant 17), so neither is in the pipeline: gate 12 is checked with the
ticker the entry is priced from, the current funding rate and the public tape; the shadow score adds the level-2
book and the mark/index prices. Everything is fetched together, so the entry waits one round trip, not five. The
shadow score is recorded next to the decision (``shadowScore = finalScore + microScore``) and never changes it:
``applyToLiveScore = true`` is refused at start (engine.config.strategy.unsupported_by_runtime).

The spec gives the analyzers' weights and the order book's bands only; the other rules are this module's choices,
written down in docs/ARCHITECTURE.md ("Microstructure shadow score").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Protocol

import aiohttp

from engine.config.strategy import MicroAnalyzer, StrategyConfig
from engine.gates.entry import MicroInputs, avoid_entry
from engine.gates.result import GateResult
from engine.scoring.signals import Direction
from exchange.errors import ExchangeError

# ArithmeticError: a value the client cannot make a Decimal of (``"indexPrice": null`` raises InvalidOperation, an
# Infinity lot size OverflowError): that read is unusable, never a reason to fail the decision it was made for.
READ_ERRORS = (ExchangeError, aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError, ArithmeticError)
# The entry waits for its own reads (ticker, and the tape when gate 12 is on); the shadow score's reads went out with
# them and get at most this much longer, then are cancelled and their analyzers contribute 0 ("not answered").
SHADOW_GRACE_S = 0.05
# With no entry read to ride along (manual mode: the approval card waits for them), the shadow's reads get this long:
# a hanging book (the client's 10 s timeout and its retries) held the card and the symbol's next bars as long.
SHADOW_ALONE_S = 1.0
MARKET_FRESH_S = 1.0  # reads older than this when the entry gets the positions lock are made again for the entry

# Analyzer rules (choices, see the module docstring). Shares are of volume, rates and premiums in percent.
FLOW_BULLISH, FLOW_BEARISH = 0.60, 0.40  # takers' buy share of the tape: the order book's §11 bands
FLOW_STRONG_BULLISH, FLOW_STRONG_BEARISH = 0.70, 0.30
FUNDING_MODERATE_PCT, FUNDING_STRONG_PCT = Decimal("0.05"), Decimal("0.10")  # |rate| a cycle, read contrarian
PREMIUM_MODERATE_PCT, PREMIUM_STRONG_PCT = Decimal("0.05"), Decimal("0.10")  # |mark − index| / index
ANALYZERS = ("buySellRatio", "priceRatio", "fundingRate", "dom")


class TapeSource(Protocol):
    async def funding_rate(self, symbol: str) -> Decimal: ...

    async def trade_history(self, symbol: str) -> list[dict[str, Any]]: ...


class MarketSource(TapeSource, Protocol):
    async def ticker(self, symbol: str) -> dict[str, Any]: ...

    async def level2_depth(self, symbol: str, depth: int = 100) -> dict[str, Any]: ...

    async def mark_and_index(self, symbol: str) -> tuple[Decimal, Decimal]: ...


class Tape(NamedTuple):
    """Funding and order flow of one symbol, or why they could not be read (``error`` names every part that
    failed; ``funding_error`` and ``trades_error`` say which, for the shadow score's analyzers)."""

    funding_rate_pct: float | None
    buy_sell_ratio: float | None
    error: str | None = None
    funding_error: str | None = None
    trades_error: str | None = None


TICKER_FIELDS = {"price": "price", "bestAskPrice": "best ask", "bestBidPrice": "best bid"}


class TickerPriceError(ValueError):
    """The ticker lacks a price the caller needs (null, missing, zero, not a number): nothing is traded on it."""


def ticker_price(symbol: str, ticker: Mapping[str, Any], field: str) -> Decimal:
    """A finite, positive price of the ticker; ``TickerPriceError`` naming what is missing otherwise, so that the
    entry or the approval is refused with a reason instead of raising out of the symbol's lane."""
    value = ticker.get(field) if isinstance(ticker, Mapping) else None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite() or price <= 0:
        raise TickerPriceError(f"the {symbol} ticker has no {TICKER_FIELDS.get(field, field)} ({value!r})")
    return price


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


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def read_tape(client: TapeSource, symbol: str) -> Tape:
    """The funding rate and the last 100 trades' buy share; a failure is reported, never raised, so that the
    caller can refuse the entry with the reason (the filter fails closed: no data, no entry)."""
    # both at once: the entry waits for one round trip, not two; each part's failure is kept apart
    rate, trades = await asyncio.gather(
        client.funding_rate(symbol), client.trade_history(symbol), return_exceptions=True
    )
    funding_error = trades_error = None
    pct = ratio = None
    if isinstance(rate, BaseException):
        if not isinstance(rate, READ_ERRORS):
            raise rate
        funding_error = _reason(rate)
    elif not rate.is_finite():  # JSON's NaN parses: no rate, so gate 12 fails closed (|NaN| > max is false)
        funding_error = f"funding rate {rate} is not a number"
    else:
        pct = float(rate * 100)
    if isinstance(trades, BaseException):
        if not isinstance(trades, READ_ERRORS):
            raise trades
        trades_error = _reason(trades)
    else:
        try:
            ratio = buy_share(trades)
        except READ_ERRORS as exc:
            trades_error = _reason(exc)
    error = "; ".join(e for e in (funding_error, trades_error) if e) or None
    return Tape(pct, ratio, error, funding_error, trades_error)


def avoid_entry_gate(cfg: StrategyConfig, ticker: Mapping[str, Any], tape: Tape) -> GateResult:
    """Gate 12 from what the exchange said; missing data blocks the entry with a reason instead of waving it by."""
    spread = spread_pct(ticker)
    if tape.error is not None:
        return GateResult("avoid_entry", False, detail=f"market data unavailable: {tape.error}")
    if spread is None:
        return GateResult("avoid_entry", False, detail="no two-sided book in the ticker")
    return avoid_entry(cfg, MicroInputs(spread, tape.funding_rate_pct, tape.buy_sell_ratio))


# --------------------------------------------------------------------------- one read of the market


@dataclass(frozen=True, slots=True)
class Market:
    """What the exchange said at one passed decision. A part not asked for is None with no error."""

    read_at: float  # time.monotonic()
    ticker: dict[str, Any] | None = None
    ticker_error: str | None = None
    tape: Tape | None = None
    book: dict[str, Any] | None = None
    book_error: str | None = None
    mark_index: tuple[Decimal, Decimal] | None = None
    mark_error: str | None = None

    def fresh(self, max_age_s: float = MARKET_FRESH_S) -> bool:
        return time.monotonic() - self.read_at <= max_age_s


async def _attempt[T](read: Awaitable[T]) -> tuple[T | None, str | None]:
    """A read's answer, or why there is none (never raised: a shadow read must not fail an entry)."""
    try:
        return await read, None
    except READ_ERRORS as exc:
        return None, _reason(exc)


async def _ticker(client: MarketSource, symbol: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return await client.ticker(symbol), None
    except ExchangeError as exc:  # the entry's own read: refused with the exchange's words, as before
        return None, str(exc)
    except READ_ERRORS as exc:  # an answer of the wrong shape: refused with what was wrong, never raised
        return None, _reason(exc)


def book_depth(cfg: StrategyConfig) -> int:
    """The level-2 endpoint that covers the deepest configured DOM level (depth20 or depth100)."""
    return 20 if max(dom_depths(cfg)) <= 20 else 100


async def read_market(
    client: MarketSource,
    symbol: str,
    cfg: StrategyConfig,
    *,
    entry: bool,
    shadow: bool,
    grace_s: float | None = SHADOW_GRACE_S,
    alone_s: float | None = SHADOW_ALONE_S,
) -> Market:
    """One round trip for everything a passed decision needs. ``entry``: the ticker, and the tape when gate 12 is
    on, which the entry waits for. ``shadow``: the tape, the level-2 book and mark/index for the shadow score,
    waited for at most ``grace_s`` beyond the entry's reads, or ``alone_s`` when no entry read is made (None: until
    answered)."""
    gate = entry and cfg.gates.live_avoid_entry_filter
    a = cfg.microstructure.analyzers
    own: dict[str, asyncio.Task[Any]] = {}
    extra: dict[str, asyncio.Task[Any]] = {}
    if entry:
        own["ticker"] = asyncio.create_task(_ticker(client, symbol))
    if gate or (shadow and (a.buy_sell_ratio.enabled or a.funding_rate.enabled)):
        (own if gate else extra)["tape"] = asyncio.create_task(read_tape(client, symbol))
    if shadow and a.dom.enabled:
        extra["book"] = asyncio.create_task(_attempt(client.level2_depth(symbol, book_depth(cfg))))
    if shadow and a.price_ratio.enabled:
        extra["mark"] = asyncio.create_task(_attempt(client.mark_and_index(symbol)))
    tasks = {**own, **extra}
    try:
        if own:
            await asyncio.wait(own.values())
        waiting = [t for t in extra.values() if not t.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=grace_s if own else alone_s)
    finally:
        for t in tasks.values():
            t.cancel()  # only those still running: the shadow's late reads (or all, if this read was cancelled)
    waited = grace_s if own else alone_s  # None: every read was waited for, nothing is late
    late = "not answered" if waited is None else f"not answered within {waited:g} s"
    if own and waited is not None:
        late = f"not answered within the entry's round trip (+{waited:g} s)"

    def answer(name: str, missing: Any) -> Any:
        t = tasks.get(name)
        if t is None:
            return missing if name == "ticker" else None
        return t.result() if t.done() and not t.cancelled() else missing

    ticker, ticker_error = answer("ticker", (None, None))
    tape = answer("tape", Tape(None, None, late, late, late))
    book, book_error = answer("book", (None, late)) or (None, None)
    mark, mark_error = answer("mark", (None, late)) or (None, None)
    return Market(time.monotonic(), ticker, ticker_error, tape, book, book_error, mark, mark_error)


# --------------------------------------------------------------------------- the shadow score (§5.3, §11)


class Reading(NamedTuple):
    """One analyzer's verdict: a direction with a strength name from ``strengthMultipliers``, the number it was
    read from, or why there is none."""

    direction: Direction = Direction.NEUTRAL
    strength: str | None = None
    value: Any = None
    missing: str | None = None


def _banded(x: Decimal, moderate: Decimal, strong: Decimal, sign: int, value: Any) -> Reading:
    """|x| ≥ strong → strong, ≥ moderate → moderate, else neutral; ``sign`` +1 reads x > 0 as bullish, −1 bearish."""
    if abs(x) < moderate:
        return Reading(value=value)
    d = Direction.BULLISH if (x > 0) == (sign > 0) else Direction.BEARISH
    return Reading(d, "strong" if abs(x) >= strong else "moderate", value)


def flow_reading(tape: Tape | None) -> Reading:
    """buySellRatio: the takers' buy share of the last 100 trades; > 0.60 bullish (≥ 0.70 strong), < 0.40 bearish
    (≤ 0.30 strong)."""
    if tape is None or tape.trades_error is not None:
        return Reading(missing=f"tape not read: {tape.trades_error if tape else 'not asked'}")
    b = tape.buy_sell_ratio
    if b is None:
        return Reading(missing="no trades on the tape")
    if b > FLOW_BULLISH:
        return Reading(Direction.BULLISH, "strong" if b >= FLOW_STRONG_BULLISH else "moderate", b)
    if b < FLOW_BEARISH:
        return Reading(Direction.BEARISH, "strong" if b <= FLOW_STRONG_BEARISH else "moderate", b)
    return Reading(value=b)


def funding_reading(tape: Tape | None) -> Reading:
    """fundingRate, contrarian: longs paying ≥ 0.05 % a cycle is crowded long, bearish (≥ 0.10 % strong); shorts
    paying as much is bullish."""
    if tape is None or tape.funding_error is not None or tape.funding_rate_pct is None:
        return Reading(missing=f"funding rate not read: {tape.funding_error if tape else 'not asked'}")
    rate = Decimal(repr(tape.funding_rate_pct))
    return _banded(rate, FUNDING_MODERATE_PCT, FUNDING_STRONG_PCT, -1, tape.funding_rate_pct)


def premium_reading(mark_index: tuple[Decimal, Decimal] | None, error: str | None) -> Reading:
    """priceRatio: the mark's premium over the spot index, (mark − index) / index; ≥ 0.05 % bullish (buyers pay
    up for the perpetual), ≤ −0.05 % bearish, 0.10 % strong."""
    if mark_index is None:
        return Reading(missing=f"mark/index not read: {error}")
    mark, index = mark_index
    if not mark.is_finite() or not index.is_finite() or index <= 0 or mark <= 0:
        return Reading(missing=f"mark {mark} / index {index} not usable")
    premium = (mark - index) / index * 100
    return _banded(premium, PREMIUM_MODERATE_PCT, PREMIUM_STRONG_PCT, 1, float(premium))


def dom_depths(cfg: StrategyConfig) -> list[int]:
    depths = cfg.microstructure.analyzers.dom.depth_levels or ""
    return [int(x) for x in depths.split(",") if x.strip()]


def _side_lots(levels: Any, n: int) -> int:
    return sum(int(level[1]) for level in list(levels)[:n])


def dom_reading(cfg: StrategyConfig, book: Mapping[str, Any] | None, error: str | None) -> Reading:
    """DOM: the bid share of the bid + ask lots over the top n levels for each configured depth (5, 10, 25); a
    depth votes bullish above ``imbalanceLong`` (0.60), bearish below ``imbalanceShort`` (0.40). The net vote
    gives the direction; its size the strength: every depth → strong, two → moderate, one → weak."""
    if book is None:
        return Reading(missing=f"level-2 book not read: {error}")
    dom = cfg.microstructure.analyzers.dom
    high = 0.60 if dom.imbalance_long is None else dom.imbalance_long
    low = 0.40 if dom.imbalance_short is None else dom.imbalance_short
    shares: dict[str, float] = {}
    net = 0
    try:
        for n in dom_depths(cfg):
            bids, asks = _side_lots(book["bids"], n), _side_lots(book["asks"], n)
            if bids + asks <= 0:
                return Reading(missing=f"the book is empty in its top {n} levels")
            share = bids / (bids + asks)
            shares[str(n)] = share
            net += 1 if share > high else -1 if share < low else 0
    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as exc:  # Infinity lots: OverflowError
        return Reading(missing=f"level-2 book not understood: {_reason(exc)}")
    if net == 0:
        return Reading(value=shares)
    k = abs(net)
    strength = "strong" if k == len(shares) else "moderate" if k >= 2 else "weak"
    return Reading(Direction.BULLISH if net > 0 else Direction.BEARISH, strength, shares)


def analyzer_points(cfg: StrategyConfig, analyzer: MicroAnalyzer, reading: Reading) -> Decimal:
    """§5.3: W × microstructureBasePointsFraction × strengthMult (no category multiplier), clamped to ±W."""
    if reading.direction is Direction.NEUTRAL or reading.strength is None:
        return Decimal(0)
    w = Decimal(repr(analyzer.weight))
    fraction = Decimal(repr(cfg.scoring.microstructure_base_points_fraction))
    mult = Decimal(repr(cfg.strength_multipliers.get(reading.strength)))
    return max(-w, min(w, int(reading.direction) * w * fraction * mult))


def micro_shadow(cfg: StrategyConfig, final_score: float, market: Market) -> dict[str, Any]:
    """The shadow record of one decision: every analyzer's reading and points, ``micro_score`` (the sum clamped
    to ±microstructureScoreCap) and ``shadow_score = final_score + micro_score``. ``applied`` is always False:
    the real decision never sees it."""
    a = cfg.microstructure.analyzers
    configured = {
        "buySellRatio": a.buy_sell_ratio,
        "priceRatio": a.price_ratio,
        "fundingRate": a.funding_rate,
        "dom": a.dom,
    }
    readers = {
        "buySellRatio": lambda: flow_reading(market.tape),
        "priceRatio": lambda: premium_reading(market.mark_index, market.mark_error),
        "fundingRate": lambda: funding_reading(market.tape),
        "dom": lambda: dom_reading(cfg, market.book, market.book_error),
    }
    analyzers: dict[str, dict[str, Any]] = {}
    total = Decimal(0)
    for name in ANALYZERS:
        analyzer = configured[name]
        reading = readers[name]() if analyzer.enabled else Reading()
        points = analyzer_points(cfg, analyzer, reading)
        total += points
        row: dict[str, Any] = {
            "value": reading.value,
            "direction": reading.direction.label,
            "strength": reading.strength,
            "points": float(points),
        }
        if not analyzer.enabled:
            row["disabled"] = True  # in the strategy config: contributes 0, and is not "missing" data
        if reading.missing is not None:
            row["missing"] = reading.missing
        analyzers[name] = row
    cap = Decimal(repr(cfg.scoring.microstructure_score_cap))
    micro = max(-cap, min(cap, total))
    return {
        "final_score": final_score,
        "micro_score": float(micro),
        "shadow_score": float(Decimal(repr(final_score)) + micro),
        "applied": False,
        "analyzers": analyzers,
    }
