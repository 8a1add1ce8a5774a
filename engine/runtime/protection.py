"""Stops and take-profits on the exchange: placed right after the entry, moved by place-new → confirm →
cancel-old, every step persisted so a restart resumes it, failures queued for retry with backoff.

Both the old and the new stop are reduce-only stop-market orders for the whole position: if both ever
triggered, the exchange trims the second to zero (it can never open or flip a position).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from engine.events import EventBus, StopMissing, StopMoved, StopPlaced
from engine.models import Side
from engine.runtime.chaos import crash_point
from exchange.errors import ExchangeError, InvalidRequestError, OrderNotFoundError
from exchange.ids import new_client_oid
from exchange.models import OrderRequest, OrderSide, StopDirection, StopPriceType
from exchange.rest import KucoinFuturesClient
from storage.repos import Intents, Positions, RetryQueue

log = structlog.get_logger(__name__)

RETRY_BASE_MS = 500
RETRY_CAP_MS = 30_000


@dataclass
class Protected:
    """One managed position's exchange-side protection."""

    symbol: str
    side: Side
    lots: int
    entry: Decimal
    leverage: int
    stop: Decimal
    stop_reason: str
    take_profit: Decimal
    tp_roi: Decimal
    trailing: bool
    stop_order_id: str | None
    tp_order_id: str | None
    replace_state: str
    pending_client_oid: str | None
    pending_price: Decimal | None
    opened_ms: int
    # Set (in memory only) the moment the engine accounts for the position's close: a stop or TP move still on
    # its way for it must then neither persist it again nor leave what it placed on the exchange.
    closed: bool = False

    def row(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side.value,
            "lots": self.lots,
            "entry": self.entry,
            "leverage": self.leverage,
            "stop": self.stop,
            "stop_reason": self.stop_reason,
            "take_profit": self.take_profit,
            "tp_roi": self.tp_roi,
            "trailing": int(self.trailing),
            "stop_order_id": self.stop_order_id,
            "tp_order_id": self.tp_order_id,
            "replace_state": self.replace_state,
            "pending_client_oid": self.pending_client_oid,
            "pending_price": self.pending_price,
            "opened_ms": self.opened_ms,
        }

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Protected:
        return cls(
            symbol=r["symbol"],
            side=Side(r["side"]),
            lots=int(r["lots"]),
            entry=Decimal(r["entry"]),
            leverage=int(r["leverage"]),
            stop=Decimal(r["stop"]),
            stop_reason=r["stop_reason"],
            take_profit=Decimal(r["take_profit"]),
            tp_roi=Decimal(r["tp_roi"]),
            trailing=bool(r["trailing"]),
            stop_order_id=r["stop_order_id"],
            tp_order_id=r["tp_order_id"],
            replace_state=r["replace_state"],
            pending_client_oid=r["pending_client_oid"],
            pending_price=None if r["pending_price"] is None else Decimal(r["pending_price"]),
            opened_ms=int(r["opened_ms"]),
        )

    @property
    def exit_side(self) -> OrderSide:
        return OrderSide.SELL if self.side is Side.LONG else OrderSide.BUY

    @property
    def stop_direction(self) -> StopDirection:
        return StopDirection.DOWN if self.side is Side.LONG else StopDirection.UP

    @property
    def tp_direction(self) -> StopDirection:
        return StopDirection.UP if self.side is Side.LONG else StopDirection.DOWN


class StopCoordinator:
    """Owns every stop/TP order the engine places; the only code that moves them."""

    def __init__(
        self,
        client: KucoinFuturesClient,
        positions: Positions,
        intents: Intents,
        retry: RetryQueue,
        bus: EventBus,
        *,
        clock: Callable[[], int] | None = None,
        margin_mode: str = "ISOLATED",
    ) -> None:
        self.client = client
        self.positions = positions
        self.intents = intents
        self.retry = retry
        self.bus = bus
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.margin_mode = margin_mode
        self.hedge = False  # hedge position mode: every order names its position side
        self.replaces = 0
        self._protecting: dict[str, asyncio.Lock] = {}

    def _stop_request(self, p: Protected, price: Decimal, direction: StopDirection, client_oid: str) -> OrderRequest:
        return OrderRequest(
            symbol=p.symbol,
            side=p.exit_side,
            lots=p.lots,
            reduce_only=True,
            stop=direction,
            stop_price=price,
            stop_price_type=StopPriceType.MARK,
            margin_mode=self.margin_mode,
            client_oid=client_oid,
            position_side=("LONG" if p.side is Side.LONG else "SHORT") if self.hedge else None,
        )

    async def _save(self, p: Protected) -> None:
        if not p.closed:  # a closed position's row is gone: never write it back
            await self.positions.save(p.row())

    async def _place(
        self, p: Protected, price: Decimal, direction: StopDirection, purpose: str, client_oid: str
    ) -> str:
        if await self.intents.get(client_oid) is None:
            await self.intents.record(client_oid, p.symbol, purpose, p.exit_side.value, p.lots, price, self.clock())
        order = await self.client.place_order(self._stop_request(p, price, direction, client_oid))
        await self.intents.mark(client_oid, "acked", order.id)
        if p.closed:  # the position was closed and accounted for while this order was on its way: undo it
            with contextlib.suppress(ExchangeError):
                await self.client.cancel_order(order.id)
            raise PositionClosedError(f"{p.symbol}: closed while its {purpose} was being placed")
        self.bus.publish(
            StopPlaced(ts_ms=self.clock(), symbol=p.symbol, order_id=order.id, price=price, purpose=purpose)
        )
        return order.id

    async def protect(self, p: Protected) -> None:
        """Place the initial stop and TP (reduce-only, mark price). A failure is retried, never ignored.

        One at a time per symbol: the reconciliation (a stop missing) and the retry queue re-protect the same
        position concurrently in the app, and two calls that both saw no stop would place two."""
        lock = self._protecting.setdefault(p.symbol, asyncio.Lock())
        async with lock:
            await self._protect(p)

    async def _protect(self, p: Protected) -> None:
        try:
            crash_point("before_stop")
            if p.stop_order_id is None:
                p.stop_order_id = await self._unanswered(p, "stop", p.stop)
            if p.tp_order_id is None:
                p.tp_order_id = await self._unanswered(p, "take_profit", p.take_profit)
            if p.stop_order_id is None:
                try:
                    p.stop_order_id = await self._place(p, p.stop, p.stop_direction, "stop", new_client_oid("sl"))
                except InvalidRequestError:
                    if await self._exit_if_through_mark(p, p.stop):
                        return
                    raise
                await self._save(p)
            if p.tp_order_id is None:
                p.tp_order_id = await self._place(p, p.take_profit, p.tp_direction, "take_profit", new_client_oid("tp"))
                await self._save(p)
        except PositionClosedError:
            return
        except ExchangeError as exc:
            await self._save(p)
            self.bus.publish(StopMissing(ts_ms=self.clock(), symbol=p.symbol, detail=f"placing protection: {exc}"))
            await self._schedule(p.symbol, "protect", str(exc))

    async def _unanswered(self, p: Protected, purpose: str, price: Decimal) -> str | None:
        """An earlier attempt whose reply never came may have placed the order: ask the exchange about every such
        intent before sending a new one (a new clientOid would double the stop). The live one at ``price`` is
        taken; the others are closed in the books."""
        for intent in await self.intents.pending_for(p.symbol, purpose):
            try:
                order = await self.client.order_by_client_oid(intent.client_oid)
            except OrderNotFoundError:
                await self.intents.mark(intent.client_oid, "failed", detail="never reached the exchange")
                continue
            if order.is_active and order.stop is not None and order.side is p.exit_side and order.stop_price == price:
                await self.intents.mark(intent.client_oid, "acked", order.id, detail="found after a lost reply")
                log.info("stop.found_after_lost_reply", symbol=p.symbol, purpose=purpose, order_id=order.id)
                return order.id
            await self.intents.mark(intent.client_oid, "done", order.id, detail="found, not live at this price")
        return None

    async def _exit_if_through_mark(self, p: Protected, stop: Decimal) -> bool:
        """The exchange refused the stop: if the mark is already at or past it (a position adopted after the price
        ran through its stop level), the stop would have triggered at once, so the position is closed reduce-only
        at market now instead of being left without a stop while the refusal is retried. True when closed."""
        try:
            mark = await self.client.mark_price(p.symbol)
        except ExchangeError:
            return False
        if not (mark <= stop if p.side is Side.LONG else mark >= stop):
            return False
        oid = new_client_oid("sx")
        await self.intents.record(oid, p.symbol, "stop_exit", p.exit_side.value, p.lots, None, self.clock())
        order = await self.client.place_order(
            OrderRequest(
                symbol=p.symbol,
                side=p.exit_side,
                lots=p.lots,
                reduce_only=True,
                margin_mode=self.margin_mode,
                client_oid=oid,
                position_side=("LONG" if p.side is Side.LONG else "SHORT") if self.hedge else None,
            )
        )
        await self.intents.mark(oid, "done", order.id)
        log.warning("stop.through_mark_exit", symbol=p.symbol, stop=str(stop), mark=str(mark))
        self.bus.publish(
            StopMissing(
                ts_ms=self.clock(),
                symbol=p.symbol,
                detail=f"stop {stop} refused with the mark already at {mark}: closed at market (reduce-only)",
            )
        )
        return True

    async def move_stop(self, p: Protected, new_stop: Decimal, reason: str, new_tp: Decimal | None = None) -> bool:
        """Place the new stop, confirm it on the exchange, then cancel the old one. True when done."""
        fresh = p.replace_state == "STEADY"
        if fresh and (new_stop < p.stop if p.side is Side.LONG else new_stop > p.stop):
            log.error("stop.untrail_refused", symbol=p.symbol, stop=str(p.stop), asked=str(new_stop), reason=reason)
            return False  # never untrail, whoever asks (the same price is a resize and allowed)
        if fresh:
            p.pending_client_oid = new_client_oid("sl")
            p.pending_price = new_stop
            p.replace_state = "PLACING_NEW"
            p.stop_reason = reason
            await self._save(p)
        try:
            await self._advance(p, fresh=fresh)
        except PositionClosedError:
            return False
        except ExchangeError as exc:
            log.warning("stop.replace_failed", symbol=p.symbol, state=p.replace_state, error=str(exc))
            await self._schedule(p.symbol, "replace", str(exc))
            return False
        if new_tp is not None:
            await self.move_take_profit(p, new_tp)
        return True

    async def _advance(self, p: Protected, *, fresh: bool = False) -> None:
        """Drive the persisted replace state machine to STEADY from wherever it stands.

        ``fresh``: the pending clientOid was minted by this very call, so the exchange cannot know it yet and the
        lookup (needed when resuming after a crash or a failed attempt) would only delay the new stop."""
        if p.replace_state == "PLACING_NEW":
            assert_pending(p)
            oid = p.pending_client_oid or ""
            known = None
            if not fresh:
                try:
                    known = await self.client.order_by_client_oid(oid)
                except OrderNotFoundError:
                    known = None
            if known is None or not known.is_active:
                if known is not None and not known.is_active:
                    # It existed but is gone (triggered or cancelled): start over with a fresh clientOid.
                    p.pending_client_oid = oid = new_client_oid("sl")
                    await self._save(p)
                new_id = await self._place(p, p.pending_price or p.stop, p.stop_direction, "stop", oid)
            else:
                new_id = known.id
            crash_point("mid_replace")
            confirmed = await self.client.order_by_id(new_id)
            if not (confirmed.is_active and confirmed.stop is not None):
                raise ExchangeError(f"new stop {new_id} is not live on the exchange")
            old_id = p.stop_order_id
            old_price = p.stop
            p.stop_order_id, p.stop = new_id, p.pending_price or p.stop
            p.replace_state = "CANCELLING_OLD" if old_id and old_id != new_id else "STEADY"
            p.pending_client_oid, p.pending_price = old_id, None  # remember which order to cancel
            await self._save(p)
            self.bus.publish(
                StopMoved(ts_ms=self.clock(), symbol=p.symbol, old=old_price, new=p.stop, reason=p.stop_reason)
            )
        if p.replace_state in ("CANCELLING_OLD", "CONFIRMED_NEW"):
            old_id = p.pending_client_oid
            if old_id:
                with contextlib.suppress(OrderNotFoundError):  # already gone: that is the goal
                    await self.client.cancel_order(old_id)
            p.replace_state, p.pending_client_oid = "STEADY", None
            await self._save(p)
            self.replaces += 1
            await self.retry.done(f"replace:{p.symbol}")

    async def move_take_profit(self, p: Protected, new_tp: Decimal) -> None:
        """TP extension: place the new TP, then cancel the old (a TP gap is harmless; the stop protects)."""
        try:
            new_id = await self._unanswered(p, "take_profit", new_tp) or await self._place(
                p, new_tp, p.tp_direction, "take_profit", new_client_oid("tp")
            )
            old = p.tp_order_id
            p.tp_order_id, p.take_profit = new_id, new_tp
            await self._save(p)
            if old and old != new_id:
                with contextlib.suppress(OrderNotFoundError):
                    await self.client.cancel_order(old)
        except PositionClosedError:
            return
        except ExchangeError as exc:
            await self._schedule(p.symbol, "take_profit", str(exc))

    async def _schedule(self, symbol: str, kind: str, error: str) -> None:
        items = [i for i in await self.retry.due(2**62) if i.key == f"{kind}:{symbol}"]
        attempts = items[0].attempts + 1 if items else 0
        delay = min(RETRY_CAP_MS, RETRY_BASE_MS * 2**attempts)
        await self.retry.put(kind, f"{kind}:{symbol}", {"symbol": symbol}, self.clock() + delay, error)

    async def rescue(self, p: Protected) -> None:
        """The stop that protects the position during a replace is gone (cancelled by hand, or lost): the old one
        while the new one is not placed yet, or the new one while the old one's cancel is still queued."""
        if p.replace_state == "PLACING_NEW":
            p.stop_order_id = None  # the new stop is now the only protection; there is nothing left to cancel
            await self._save(p)
            price = p.pending_price or p.stop
            try:
                await self._advance(p)
            except PositionClosedError:
                return
            except InvalidRequestError as exc:
                if not await self._exit_if_through_mark(p, price):
                    await self._schedule(p.symbol, "replace", str(exc))
            except ExchangeError as exc:
                await self._schedule(p.symbol, "replace", str(exc))
            return
        old = p.pending_client_oid  # CANCELLING_OLD: the old stop's id, still to be cancelled
        p.stop_order_id, p.replace_state, p.pending_client_oid = None, "STEADY", None
        await self._save(p)
        await self.protect(p)  # a new stop at the current level first ...
        if _placed_stop(p) is not None and old:
            p.replace_state, p.pending_client_oid = "CANCELLING_OLD", old  # ... then the old one goes, as usual
            await self._save(p)
            try:
                await self._advance(p)
            except ExchangeError as exc:
                await self._schedule(p.symbol, "replace", str(exc))

    async def resume(self, p: Protected) -> None:
        """After a restart or from the retry queue: finish an interrupted replace, re-place missing protection."""
        if p.stop_order_id is None or p.tp_order_id is None:
            await self.protect(p)
        if p.replace_state != "STEADY":
            try:
                await self._advance(p)
            except PositionClosedError:
                return
            except ExchangeError as exc:
                await self._schedule(p.symbol, "replace", str(exc))


def _placed_stop(p: Protected) -> str | None:
    """The stop order id as it is now (after an await that may have set it)."""
    return p.stop_order_id


class PositionClosedError(ExchangeError):
    """The position was closed (and accounted for) while an order for it was on its way; the order was undone."""


def assert_pending(p: Protected) -> None:
    if p.pending_client_oid is None:
        raise ExchangeError(f"{p.symbol}: replace in progress without a pending clientOid")
