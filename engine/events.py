"""Typed, past-tense engine events and the in-process bus that hands them to storage, metrics and notifiers.

An event is a frozen dataclass with a stable ``kind``; ``to_dict`` gives JSON-safe data (Decimal as strings) and
``event_from_dict`` restores it, so storage and the Telegram outbox never guess at shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    ts_ms: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        return out


def _jsonable(v: Any) -> Any:
    """JSON-safe data: Decimals as strings, tuples and sets as lists, a key JSON cannot hold (a tuple) as its text.
    A set or a tuple key made the journal's ``json.dumps`` raise inside ``publish``, in the middle of trading."""
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dict):
        return {k if isinstance(k, str | int | float | None) else str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, set | frozenset):
        return sorted((_jsonable(x) for x in v), key=str)
    return v


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEvaluated(Event):
    kind: ClassVar[str] = "signal_evaluated"
    symbol: str
    decision: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequested(Event):
    kind: ClassVar[str] = "approval_requested"
    approval_id: str
    symbol: str
    side: str
    entry: Decimal
    stop: Decimal
    take_profit: Decimal
    lots: int
    leverage: int
    margin: Decimal
    risk: Decimal
    expires_ms: int
    # What the decision was (shown on the card, and kept there when its outcome is written): None for older events.
    score: float | None = None
    confidence: float | None = None
    gates: list[str] = field(default_factory=list)  # the gates it passed
    # The §11 shadow score read at the decision (never applied to it); None when not computed.
    micro_score: float | None = None
    shadow_score: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalResolved(Event):
    kind: ClassVar[str] = "approval_resolved"
    approval_id: str
    outcome: str  # approved | rejected | expired | failed_recheck | executed
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPlaced(Event):
    kind: ClassVar[str] = "order_placed"
    symbol: str
    client_oid: str
    order_id: str
    purpose: str  # entry | stop | take_profit | close
    side: str
    lots: int
    price: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(Event):
    kind: ClassVar[str] = "order_rejected"
    symbol: str
    client_oid: str
    purpose: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(Event):
    kind: ClassVar[str] = "order_filled"
    symbol: str
    order_id: str
    side: str
    lots: int
    price: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPlaced(Event):
    kind: ClassVar[str] = "stop_placed"
    symbol: str
    order_id: str
    price: Decimal
    purpose: str = "stop"


@dataclass(frozen=True, slots=True, kw_only=True)
class StopMoved(Event):
    kind: ClassVar[str] = "stop_moved"
    symbol: str
    old: Decimal
    new: Decimal
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeProfitMoved(Event):
    """The take-profit was replaced on the exchange and its new order saved, told once: ``extended`` further (the
    stop manager's TP extension, or one owed after a failure or a crash), or ``resized`` for the position's ``lots``
    (at its price, or on a tick grid KuCoin changed). A stop move used to be the only thing told of it."""

    kind: ClassVar[str] = "take_profit_moved"
    symbol: str
    old: Decimal
    new: Decimal
    reason: str  # extended | resized
    lots: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StopMissing(Event):
    kind: ClassVar[str] = "stop_missing"
    symbol: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignOrderSeen(Event):
    """An order on the account that the engine did not place (no ENYGMA clientOid): left alone, reported once."""

    kind: ClassVar[str] = "foreign_order_seen"
    symbol: str
    order_id: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidationNear(Event):
    """§10.10: the mark is within the minimum liquidation buffer of the position's liquidation price."""

    kind: ClassVar[str] = "liquidation_near"
    symbol: str
    side: str
    mark: Decimal
    liquidation: Decimal
    buffer_pct: Decimal
    min_pct: Decimal
    stop: Decimal
    source: str  # exchange (its reported price) | formula (§10.10)


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionOpened(Event):
    kind: ClassVar[str] = "position_opened"
    symbol: str
    side: str
    lots: int
    entry: Decimal
    leverage: int
    stop: Decimal
    take_profit: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionResized(Event):
    """A managed position changed size without an order of the bot's (or by one that filled only partly): KuCoin
    auto-deleveraged or partly liquidated it, a person trimmed or added to it. The stop and TP follow the new size."""

    kind: ClassVar[str] = "position_resized"
    symbol: str
    side: str
    old_lots: int
    new_lots: int
    cause: str  # auto_deleverage | liquidation | manual | take_profit | stop | unknown (fills not listed yet)
    price: Decimal | None  # the average price of the fills that made the change, when listed
    entry: Decimal
    stop: Decimal
    take_profit: Decimal
    # The stop and TP were confirmed on the exchange for ``new_lots`` when this was said. False: they are being
    # resized (a placement failed or a stop move owns the orders); ResizeConfirmed follows once they are.
    covered: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ResizeConfirmed(Event):
    """The stop and TP of a resized position are now listed on the exchange for its lots (after a PositionResized
    that said they were still being resized)."""

    kind: ClassVar[str] = "resize_confirmed"
    symbol: str
    side: str
    lots: int
    stop: Decimal
    take_profit: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionClosed(Event):
    kind: ClassVar[str] = "position_closed"
    symbol: str
    side: str
    exit_reason: str
    entry: Decimal
    exit: Decimal
    gross: Decimal
    fees: Decimal
    funding: Decimal
    net: Decimal
    # False: the exchange's funding history could not be read at the close, so ``funding`` is 0 for now and ``net``
    # lacks it; a FundingBooked with this close's ``ts_ms`` carries it once read (see with_funding_booked).
    funding_known: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingBooked(Event):
    """The funding of a close booked without it (its read failed then), read later: ``closed_ms`` is that
    PositionClosed's ``ts_ms``, ``net`` the trade's net with the funding."""

    kind: ClassVar[str] = "funding_booked"
    symbol: str
    side: str
    closed_ms: int
    funding: Decimal
    net: Decimal


def with_funding_booked(closes: Iterable[PositionClosed], booked: Iterable[FundingBooked]) -> list[PositionClosed]:
    """The closes as finally booked: one whose funding was read later carries it (and the net with it). Every
    reader of the closed trades (today's realised PnL after a restart, /pnl, the daily summary) goes through this,
    so a trade counts once, with its funding, wherever it is shown."""
    late = {(b.symbol, b.closed_ms): b for b in booked}
    out = []
    for c in closes:
        b = late.get((c.symbol, c.ts_ms))
        if b is not None and not c.funding_known:
            out.append(dataclasses.replace(c, funding=b.funding, net=c.net - b.funding, funding_known=True))
        else:
            out.append(c)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class HaltRaised(Event):
    kind: ClassVar[str] = "halt_raised"
    limit: str
    value: str
    threshold: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Event):
    kind: ClassVar[str] = "trading_state_changed"
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeChanged(Event):
    kind: ClassVar[str] = "mode_changed"
    setting: str  # control | armed | paused
    value: str
    by: str = "engine"


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftDetected(Event):
    kind: ClassVar[str] = "drift_detected"
    differences: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftCleared(Event):
    kind: ClassVar[str] = "drift_cleared"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReconnected(Event):
    kind: ClassVar[str] = "stream_reconnected"
    stream: str
    reconnects: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthChanged(Event):
    kind: ClassVar[str] = "health_changed"
    component: str
    healthy: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractChanged(Event):
    """KuCoin changed a configured contract under the running bot: its status (``old_status`` → ``status``) and/or
    its specs (``changes``, in words). ``position`` names the open position on it ("long 3 lots", "" for none);
    ``loud``: that position may be settled by KuCoin or its stop may not be movable any more."""

    kind: ClassVar[str] = "contract_changed"
    symbol: str
    old_status: str
    status: str
    changes: list[str] = field(default_factory=list)
    position: str = ""
    detail: str = ""
    loud: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitchReport(Event):
    kind: ClassVar[str] = "kill_switch_report"
    cancelled_orders: int
    closed_positions: list[str]
    flat: bool
    leftovers: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleGap(Event):
    kind: ClassVar[str] = "candle_gap"
    symbol: str
    timeframe: str
    missing: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DailySummary(Event):
    kind: ClassVar[str] = "daily_summary"
    day: str
    net_pnl: Decimal
    fees: Decimal
    trades: int
    drawdown_pct: Decimal


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        SignalEvaluated,
        ApprovalRequested,
        ApprovalResolved,
        OrderPlaced,
        OrderRejected,
        OrderFilled,
        StopPlaced,
        StopMoved,
        TakeProfitMoved,
        StopMissing,
        ForeignOrderSeen,
        LiquidationNear,
        PositionOpened,
        PositionResized,
        ResizeConfirmed,
        PositionClosed,
        FundingBooked,
        HaltRaised,
        TradingStateChanged,
        ModeChanged,
        DriftDetected,
        DriftCleared,
        StreamReconnected,
        HealthChanged,
        ContractChanged,
        KillSwitchReport,
        CandleGap,
        DailySummary,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from ``to_dict`` output; unknown kinds are a ValueError."""
    cls = EVENT_TYPES.get(str(data.get("kind")))
    if cls is None:
        raise ValueError(f"unknown event kind {data.get('kind')!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if "Decimal" in str(f.type) and value is not None:
            value = Decimal(str(value))
        kwargs[f.name] = value
    return cls(**kwargs)


Subscriber = Callable[[Event], Awaitable[None]]
# One that is also told the event's journal sequence number (None without a journal): the Telegram outbox keeps it.
SequencedSubscriber = Callable[[Event, int | None], Awaitable[None]]
Item = tuple[Event, int | None]  # an event on its way to a subscriber, with its seq
DROP_LOG_EVERY = 1_000  # a subscriber's dropped events are logged at the first and then every this many


_KEPT = (int, float, Decimal, type(None))  # what cannot hold a text (bool is an int): kept as is, one type check
CLEAN_KEYS_MAX = 10_000  # dict keys remembered as secret-free (a decision's ~150 keys recur on every bar)


def _scrubbed(value: Any, redact: Callable[[str], str], clean_keys: set[str]) -> Any:
    """``value`` with ``redact`` applied to every text inside it, at any depth: strings, dict keys as well as dict
    values, list, tuple, set and frozenset items (each kept its type). An exception, or any other object, is what
    storage, the webhook and Telegram would show of it, its text (``TypeError: <args>``), redacted: its args are in
    that text, and the journal's JSON could not hold the object anyway. The same object when nothing changes, so an
    event without a secret is never copied. Numbers, Decimals and None cost one type check: a decision's breakdown
    holds ~60 texts among its numbers, on every explained bar. ``clean_keys``: string keys already found
    secret-free (the secrets are fixed for a redactor), skipped at the cost of a set lookup."""
    if isinstance(value, str):
        clean = redact(value)
        return value if clean == value else clean
    if isinstance(value, dict):
        if clean_keys.issuperset(value):  # the usual case: every key seen before, only the values to clean
            cleaned = {
                k: c
                for k, v in value.items()
                if not isinstance(v, _KEPT) and (c := _scrubbed(v, redact, clean_keys)) is not v
            }
            return {**value, **cleaned} if cleaned else value
        out: dict[Any, Any] = {}
        changed = False
        for k, v in value.items():
            if isinstance(k, _KEPT) or k in clean_keys:
                ck = k
            else:  # a secret can be a key (a map by account or by URL)
                ck = _scrubbed(k, redact, clean_keys)
                if ck is k and isinstance(k, str) and len(clean_keys) < CLEAN_KEYS_MAX:
                    clean_keys.add(k)
            cv = v if isinstance(v, _KEPT) else _scrubbed(v, redact, clean_keys)
            changed = changed or ck is not k or cv is not v
            out[ck] = cv
        return out if changed else value
    if isinstance(value, list | tuple | set | frozenset):
        items = [v if isinstance(v, _KEPT) else _scrubbed(v, redact, clean_keys) for v in value]
        if all(c is v for c, v in zip(items, value, strict=True)):
            return value
        if isinstance(value, set | frozenset):
            return type(value)(items) if type(value) in (set, frozenset) else set(items)
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, _KEPT):
        return value
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}" if str(value) else type(value).__name__)
    return redact(str(value))


def _redacted(event: Event, redact: Callable[[str], str], clean_keys: set[str]) -> Event:
    """``event`` with ``redact`` applied to its texts, nested ones too (``SignalEvaluated.decision``, a list of
    differences); the same object when nothing changes (the usual case)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if not isinstance(value, _KEPT) and (clean := _scrubbed(value, redact, clean_keys)) is not value:
            changes[f.name] = clean
    return dataclasses.replace(event, **changes) if changes else event


class EventBus:
    """Fan-out with one bounded queue and task per subscriber: a slow or failing subscriber never blocks
    ``publish`` or the others. ``publish`` is synchronous so the trading path never awaits a notifier."""

    def __init__(
        self,
        queue_size: int = 10_000,
        recorder: Callable[[Event], int | None] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        # Synchronous write-ahead (storage.journal): runs before any subscriber sees it; returns the event's seq.
        self.recorder = recorder
        # An event's texts can carry an error's text, and so a secret: blanked before the journal, Telegram or the
        # webhook sees them (the runtime passes the log redactor).
        self.redact = redact
        self._clean_keys: set[str] = set()  # for ``redact`` only: dict keys it leaves as they are
        self._subs: list[tuple[str, asyncio.Queue[Item | None], asyncio.Task[None] | None, SequencedSubscriber]] = []
        self._queue_size = queue_size
        self.dropped = 0
        self._dropped_by: dict[str, int] = {}
        self.failures = 0

    def subscribe(self, name: str, handler: Subscriber) -> None:
        async def plain(event: Event, _seq: int | None) -> None:
            await handler(event)

        self.subscribe_sequenced(name, plain)

    def subscribe_sequenced(self, name: str, handler: SequencedSubscriber) -> None:
        """``handler`` gets each event with the sequence number the recorder gave it."""
        self._subs.append((name, asyncio.Queue(self._queue_size), None, handler))

    async def start(self) -> None:
        self._subs = [
            (name, q, asyncio.create_task(self._pump(name, q, h), name=f"bus-{name}"), h)
            for name, q, _, h in self._subs
        ]

    async def start_new(self) -> None:
        """Start pumps for subscribers added after ``start()``."""
        self._subs = [
            (name, q, task if task is not None else asyncio.create_task(self._pump(name, q, h), name=f"bus-{name}"), h)
            for name, q, task, h in self._subs
        ]

    def publish(self, event: Event) -> None:
        if self.redact is not None:
            event = _redacted(event, self.redact, self._clean_keys)
        seq = None
        if self.recorder is not None:
            seq = self.recorder(event)
        for name, q, _, _ in self._subs:
            try:
                q.put_nowait((event, seq))
            except asyncio.QueueFull:
                self.dropped += 1
                n = self._dropped_by[name] = self._dropped_by.get(name, 0) + 1
                if n == 1 or n % DROP_LOG_EVERY == 0:  # one line per burst, not one per event (a log flood)
                    log.error("bus.dropped", subscriber=name, kind=event.kind, dropped_total=n)

    async def _pump(self, name: str, q: asyncio.Queue[Item | None], handler: SequencedSubscriber) -> None:
        while True:
            item = await q.get()
            event = None if item is None else item[0]
            try:
                if item is None:
                    return
                await handler(*item)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                log.exception("bus.subscriber_failed", subscriber=name, kind=event.kind if event else "")
            finally:
                q.task_done()

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued event has been handled, at most ``timeout_s``; False if that ran out (a
        subscriber hanging on an unreachable webhook must not hold up a shutdown for hours)."""
        try:
            async with asyncio.timeout(timeout_s):
                for _, q, _, _ in self._subs:
                    await q.join()
        except TimeoutError:
            left = {name: q.qsize() for name, q, _, _ in self._subs}
            log.error("bus.drain_timed_out", waiting=left)
            return False
        return True

    async def stop(self, timeout_s: float = 5.0) -> None:
        """End every pump: after what is queued when it is free, cancelled when it is still busy after ``timeout_s``.
        Never raises (it runs in the shutdown, before the journal is closed)."""
        for name, q, _, _ in self._subs:
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:  # a hung subscriber's full queue: its pump is cancelled below
                log.error("bus.stop_queue_full", subscriber=name, waiting=q.qsize())
        for name, _, task, _ in self._subs:
            if task is None:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=timeout_s)
            except TimeoutError:
                log.error("bus.subscriber_cancelled", subscriber=name, detail="still busy at shutdown")
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
