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

from engine.events import EventBus, StopMissing, StopMoved, StopPlaced, TakeProfitMoved
from engine.models import Side
from engine.risk.formulas import gross_roi, round_stop, round_take_profit
from engine.risk.stops import StopReason
from engine.runtime.chaos import crash_point
from exchange.errors import ExchangeError, InvalidRequestError, OrderNotFoundError
from exchange.ids import is_own_client_oid, new_client_oid
from exchange.models import Order, OrderRequest, OrderSide, StopDirection, StopPriceType
from exchange.rest import KucoinFuturesClient
from storage.repos import Intents, Positions, RetryQueue

log = structlog.get_logger(__name__)

RETRY_BASE_MS = 500
RETRY_CAP_MS = 30_000
TP_CANCEL = "tp_cancel"  # retry-queue kind: the TP a take-profit move replaced, still to be cancelled
STOP_MISSING_REMIND_MS = 15 * 60_000  # a stop the exchange keeps refusing is told again this often while it lasts


def retry_delay_ms(attempts: int, cap_ms: int = RETRY_CAP_MS) -> int:
    """The retry queue's backoff: RETRY_BASE_MS doubled per attempt already made, up to ``cap_ms``."""
    return min(cap_ms, RETRY_BASE_MS * (1 << attempts))


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
        # The contract's tick size now (None: unknown, prices go as they are). KuCoin can change a contract's tick
        # under an open position: a stop kept at a price of the old grid is re-placed on the new one.
        self.tick_of: Callable[[str], Decimal | None] = lambda symbol: None
        # symbol -> why its stop could not be placed, as last told (the error's code or class), when it was first
        # told and when last. The reconciliation and the retry loop try every 30 s: a contract Paused for hours
        # refused each one (200003) and each said "has no live stop" again. Told once a reason, then reminded every
        # STOP_MISSING_REMIND_MS while it lasts; cleared once a stop is placed.
        self._missing_told: dict[str, tuple[str, int, int]] = {}

    def forget(self, symbol: str) -> None:
        """The position on ``symbol`` is closed (or a new one adopted): what was told of its stop is not the next's."""
        self._missing_told.pop(symbol, None)

    def _stop_on_grid(self, p: Protected, price: Decimal) -> Decimal:
        """``price`` on the contract's current tick grid, rounded the protective way (a long's stop up, a short's
        down: tighter by less than one tick, never looser)."""
        tick = self.tick_of(p.symbol)
        return price if tick is None else round_stop(price, p.side, tick)

    def _tp_on_grid(self, p: Protected, price: Decimal) -> Decimal:
        """``price`` as a take-profit on the contract's current tick grid (§10.4: rounded toward the entry)."""
        tick = self.tick_of(p.symbol)
        return price if tick is None else round_take_profit(price, p.side, tick)

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
        self,
        p: Protected,
        price: Decimal,
        direction: StopDirection,
        purpose: str,
        client_oid: str,
        *,
        urgent: bool = True,
    ) -> str:
        """``urgent``: nothing else protects the position meanwhile (see KucoinFuturesClient.place_order)."""
        if await self.intents.get(client_oid) is None:
            await self.intents.record(client_oid, p.symbol, purpose, p.exit_side.value, p.lots, price, self.clock())
        order = await self.client.place_order(self._stop_request(p, price, direction, client_oid), urgent=urgent)
        crash_point(f"unacked:{purpose}")  # on the exchange, its intent still pending
        await self.intents.mark(client_oid, "acked", order.id)
        if p.closed:  # the position was closed and accounted for while this order was on its way: undo it
            with contextlib.suppress(ExchangeError):
                await self.client.cancel_order(order.id)
            raise PositionClosedError(f"{p.symbol}: closed while its {purpose} was being placed")
        self.bus.publish(
            StopPlaced(ts_ms=self.clock(), symbol=p.symbol, order_id=order.id, price=price, purpose=purpose)
        )
        return order.id

    async def ours(self, o: Order) -> bool:
        """The engine placed this order: its clientOid carries one of our prefixes, or its intent is recorded.
        Anything else is the trader's own (placed on KuCoin's site) and is never cancelled."""
        return is_own_client_oid(o.client_oid) or (
            bool(o.client_oid) and await self.intents.get(o.client_oid) is not None
        )

    async def protect(self, p: Protected, *, look: bool = True) -> None:
        """Place the initial stop and TP (reduce-only, mark price). A failure is retried, never ignored.

        One at a time per symbol: the reconciliation (a stop missing) and the retry queue re-protect the same
        position concurrently in the app, and two calls that both saw no stop would place two.
        ``look``: first ask the exchange for a live order of ours that already is the missing stop or TP (off only
        right after an entry, where none can exist yet and the look would delay the first stop)."""
        lock = self._protecting.setdefault(p.symbol, asyncio.Lock())
        async with lock:
            await self._protect(p, look=look)

    async def _protect(self, p: Protected, *, look: bool) -> None:
        try:
            crash_point("before_stop")
            if p.stop_order_id is None:
                p.stop_order_id = await self._unanswered(p, "stop", p.stop, self._stop_on_grid(p, p.stop))
            if p.tp_order_id is None:
                p.tp_order_id = await self._unanswered(
                    p, "take_profit", p.take_profit, self._tp_on_grid(p, p.take_profit)
                )
            if look and (p.stop_order_id is None or p.tp_order_id is None):
                await self._take_over_live(p)
            if p.stop_order_id is None:
                await self._onto_grid(p, stop=self._stop_on_grid(p, p.stop))  # a tick changed: never looser
                try:
                    p.stop_order_id = await self._place(p, p.stop, p.stop_direction, "stop", new_client_oid("sl"))
                except InvalidRequestError:
                    if await self._exit_if_through_mark(p, p.stop):
                        return
                    raise
                crash_point("after_stop")  # landed and acked, its id not saved yet
                self._missing_told.pop(p.symbol, None)  # placed: a later loss is a new alert
                await self._save(p)
            if p.tp_order_id is None:
                await self._onto_grid(p, take_profit=self._tp_on_grid(p, p.take_profit))
                p.tp_order_id = await self._place(
                    p, p.take_profit, p.tp_direction, "take_profit", new_client_oid("tp"), urgent=False
                )
                crash_point("after_take_profit")  # landed and acked, its id not saved yet
                await self._save(p)
            self._missing_told.pop(p.symbol, None)  # protected (placed, or taken over): a later loss is told again
        except PositionClosedError:
            return
        except ExchangeError as exc:
            await self._save(p)
            why, now = exc.code or type(exc).__name__, self.clock()
            told = self._missing_told.get(p.symbol)
            if told is None or told[0] != why:
                self._missing_told[p.symbol] = (why, now, now)
                self.bus.publish(StopMissing(ts_ms=now, symbol=p.symbol, detail=f"placing protection: {exc}"))
            elif now - told[2] >= STOP_MISSING_REMIND_MS:  # a position without a stop is not let slip from mind
                self._missing_told[p.symbol] = (why, told[1], now)
                minutes = (now - told[1]) // 60_000
                detail = f"placing protection: {exc} (still no stop, {minutes} min after it was first refused)"
                self.bus.publish(StopMissing(ts_ms=now, symbol=p.symbol, detail=detail))
            else:  # the trader knows it is missing and why: the retries go on without a message each
                log.warning("stop.still_missing", symbol=p.symbol, error=str(exc))
            await self._schedule(p.symbol, "protect", str(exc))

    async def _onto_grid(
        self, p: Protected, *, stop: Decimal | None = None, take_profit: Decimal | None = None
    ) -> None:
        """Take the stop or TP price rounded onto the current tick grid, saved before the order goes out: a crash
        between the order landing and the save after it left the old-grid price stored, and the restart, looking
        for a live order at that price, placed a second one beside the first (a new clientOid)."""
        changed = (stop is not None and stop != p.stop) or (take_profit is not None and take_profit != p.take_profit)
        p.stop = p.stop if stop is None else stop
        p.take_profit = p.take_profit if take_profit is None else take_profit
        if changed:  # on the grid already (every entry's first stop): nothing to save, no delay
            await self._save(p)

    def _took(self, p: Protected, purpose: str, price: Decimal | None) -> None:
        """A live order of ours was taken over as the stop or TP: its price is the one now held."""
        if price is None:
            return
        if purpose == "stop":
            p.stop = price
        elif purpose == "take_profit":
            p.take_profit = price

    async def _unanswered(self, p: Protected, purpose: str, *prices: Decimal) -> str | None:
        """An earlier attempt whose reply never came may have placed the order: ask the exchange about every such
        intent before sending a new one (a new clientOid would double the stop). The live one at one of ``prices``
        (the level as stored, and on the current tick grid: the tick may have changed since) is taken; the others
        are closed in the books."""
        for intent in await self.intents.pending_for(p.symbol, purpose):
            try:
                order = await self.client.order_by_client_oid(intent.client_oid)
            except OrderNotFoundError:
                await self.intents.mark(intent.client_oid, "failed", detail="never reached the exchange")
                continue
            if order.is_active and order.stop is not None and order.side is p.exit_side and order.stop_price in prices:
                await self.intents.mark(intent.client_oid, "acked", order.id, detail="found after a lost reply")
                log.info("stop.found_after_lost_reply", symbol=p.symbol, purpose=purpose, order_id=order.id)
                self._took(p, purpose, order.stop_price)
                return order.id
            await self.intents.mark(intent.client_oid, "done", order.id, detail="found, not live at this price")
        return None

    async def _take_over_live(self, p: Protected) -> None:
        """A stop or TP whose id was never saved (the process died between the order landing and the save, after
        its intent was settled) is live on the exchange but unknown here: placing another would leave two. A live
        reduce-only order of ours at exactly the wanted price and size is taken over instead. When the exchange
        cannot list the orders, the protection is placed anyway (a second order is the safe error)."""
        try:
            listed = await self.client.open_stop_orders(p.symbol)
        except ExchangeError as exc:
            log.warning("stop.live_lookup_failed", symbol=p.symbol, error=str(exc))
            return
        for purpose, prices, direction in (
            ("stop", (p.stop, self._stop_on_grid(p, p.stop)), p.stop_direction),
            ("take_profit", (p.take_profit, self._tp_on_grid(p, p.take_profit)), p.tp_direction),
        ):
            if (p.stop_order_id if purpose == "stop" else p.tp_order_id) is not None:
                continue
            taken = {p.stop_order_id, p.tp_order_id}
            for o in listed:
                if not (
                    o.id not in taken
                    and o.reduce_only
                    and not o.stop_triggered
                    and o.side is p.exit_side
                    and o.stop is direction
                    and o.stop_price in prices
                    and o.lots == p.lots
                    and await self.ours(o)
                ):
                    continue
                intent = await self.intents.get(o.client_oid)
                if intent is not None and intent.status != "acked":
                    await self.intents.mark(o.client_oid, "acked", o.id, detail="live, taken over")
                log.warning("stop.live_order_taken_over", symbol=p.symbol, purpose=purpose, order_id=o.id)
                self._took(p, purpose, o.stop_price)
                if purpose == "stop":
                    p.stop_order_id = o.id
                else:
                    p.tp_order_id = o.id
                await self._save(p)
                break

    async def converge(self, p: Protected, listed: dict[str, Order]) -> list[str]:
        """Exactly one stop and at most one TP of ours for the position: after a crash or a lost reply the exchange
        can hold more (two TPs, two stops). The tightest stop of ours is kept (never loosen: a tighter duplicate
        is taken over, or re-placed at the position's size), the tracked TP is kept; every other reduce-only exit
        order of ours is cancelled, only once the kept one is confirmed live. Orders in flight (intent pending) and
        orders that are not ours are left alone. ``listed``: the symbol's open stop orders, just listed. Returns
        the differences, one per cancelled order."""
        lock = self._protecting.setdefault(p.symbol, asyncio.Lock())
        async with lock:
            return await self._converge(p, listed)

    async def _converge(self, p: Protected, listed: dict[str, Order]) -> list[str]:
        if p.replace_state != "STEADY" or p.closed or p.stop_order_id not in listed:
            return []  # a replace, a re-protection or a close owns the orders now; the next look converges
        seen = (p.stop_order_id, p.tp_order_id)

        def moved() -> bool:
            """A stop or TP move on the symbol's lane began meanwhile: it owns the orders, the next look converges."""
            return p.replace_state != "STEADY" or p.closed or (p.stop_order_id, p.tp_order_id) != seen

        extras: list[Order] = []
        tightest: Order | None = None
        for o in listed.values():
            if o.id in (p.stop_order_id, p.tp_order_id) or not o.reduce_only or o.stop_triggered:
                continue
            if o.side is not p.exit_side or o.stop is None or not await self.ours(o):
                continue  # another side's (hedge mode) or a person's order: not this position's to tidy
            intent = await self.intents.get(o.client_oid)
            if intent is not None and intent.status == "pending":
                continue  # on its way, or awaiting the lookup that takes it over
            extras.append(o)
            if o.stop is p.stop_direction and o.stop_price is not None:
                best = p.stop if tightest is None or tightest.stop_price is None else tightest.stop_price
                if p.side.further(o.stop_price, best):
                    tightest = o
        if not extras or moved():
            return []
        diffs: list[str] = []
        if tightest is not None and tightest.stop_price is not None:
            price = tightest.stop_price
            roi = gross_roi(p.side, p.entry, price, p.leverage)
            reason = StopReason.PROFIT_LOCK.value if p.stop_reason == StopReason.INITIAL and roi > 0 else p.stop_reason
            diffs.append(f"{p.symbol}: tighter stop {tightest.id} at {price} kept (was {p.stop})")
            if tightest.lots == p.lots:  # taken over as it is; the stop it replaces is now the extra
                old_id, old_price = p.stop_order_id, p.stop
                p.stop_order_id, p.stop, p.stop_reason = tightest.id, price, reason
                await self._save(p)
                extras = [o for o in extras if o.id != tightest.id] + [listed[old_id or ""]]
                self.bus.publish(
                    StopMoved(ts_ms=self.clock(), symbol=p.symbol, old=old_price, new=price, reason=reason)
                )
            elif not await self.move_stop(p, price, reason):  # re-placed at its price for the position's size
                return diffs  # not done: nothing is cancelled, the retry and the next look go on
            seen = (p.stop_order_id, p.tp_order_id)
        keep_tp = p.tp_order_id is not None and p.tp_order_id in listed
        if not await self._confirmed(p.stop_order_id):
            return diffs
        if keep_tp and not await self._confirmed(p.tp_order_id):
            keep_tp = False
        if moved():
            return diffs
        for o in extras:
            if o.stop is p.tp_direction and not keep_tp:
                continue  # no confirmed TP to keep: a live one of ours may yet be taken over
            what = "take-profit" if o.stop is p.tp_direction else "stop"
            try:
                await self.client.cancel_order(o.id)
            except OrderNotFoundError:
                pass  # gone already: that is the goal
            except ExchangeError as exc:
                log.error("stop.duplicate_cancel_failed", symbol=p.symbol, order_id=o.id, error=str(exc))
                continue
            if await self.intents.get(o.client_oid) is not None:
                await self.intents.mark(o.client_oid, "done", o.id, detail="duplicate, cancelled by the reconciliation")
            log.warning(
                "stop.duplicate_cancelled", symbol=p.symbol, purpose=what, order_id=o.id, price=str(o.stop_price)
            )
            diffs.append(f"{p.symbol}: duplicate {what} {o.id} at {o.stop_price} cancelled")
        return diffs

    async def _confirmed(self, order_id: str | None) -> bool:
        """The order is live on the exchange right now (asked by id, not from a listing that may be stale)."""
        if order_id is None:
            return False
        try:
            o = await self.client.order_by_id(order_id)
        except ExchangeError:
            return False
        return o.is_active and o.stop is not None and not o.stop_triggered

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
        new_stop = self._stop_on_grid(p, new_stop)  # a move asked on a tick grid KuCoin has since changed
        if fresh and p.side.further(p.stop, new_stop):
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
                # A move: the old stop protects until this one is confirmed, unless it is gone (rescue).
                urgent = p.stop_order_id is None
                new_id = await self._place(p, p.pending_price or p.stop, p.stop_direction, "stop", oid, urgent=urgent)
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

    async def move_take_profit(self, p: Protected, new_tp: Decimal, reason: str = "extended") -> None:
        """TP extension (or resize, ``reason``): place the new TP (or take over the one an interrupted attempt
        landed), save it with the old TP's cancel owed in the retry queue, then cancel the old (a TP gap is harmless;
        the stop protects). Told once, right after the save: a crash before it leaves the move owed (and untold) to
        the restart, one after it leaves nothing to redo."""
        new_tp = self._tp_on_grid(p, new_tp)
        # The price told as the old one: read now, as the lookup of an unanswered intent takes its price over.
        start_id, start_price = p.tp_order_id, p.take_profit
        try:
            new_id = (
                await self._unanswered(p, "take_profit", new_tp)
                or await self._landed_take_profit(p, new_tp)
                or await self._place(p, new_tp, p.tp_direction, "take_profit", new_client_oid("tp"), urgent=False)
            )
            crash_point("tp_extension_landed")  # the new TP acked, its id not saved yet
            old = p.tp_order_id
            old_price = start_price if old == start_id else p.take_profit  # a concurrent move replaced it meanwhile
            p.tp_order_id, p.take_profit = new_id, new_tp  # no await in between: a concurrent move reads either
            if old and old != new_id and not p.closed:
                # The old TP's cancel is owed from the save on, persisted before it: a restart finishes it instead
                # of the reconciliation finding a second TP and calling it drift. Due late: this call cancels it.
                payload = {"symbol": p.symbol, "order_id": old}
                await self.retry.put(TP_CANCEL, f"{TP_CANCEL}:{p.symbol}:{old}", payload, self.clock() + RETRY_CAP_MS)
            await self._save(p)
            if new_id != old and not p.closed:  # a retry that finds its own TP in place replaced nothing
                self.bus.publish(
                    TakeProfitMoved(
                        ts_ms=self.clock(), symbol=p.symbol, old=old_price, new=new_tp, reason=reason, lots=p.lots
                    )
                )
            crash_point("tp_extension_saved")  # the new TP saved, the old one still live
            if old and old != new_id:
                await self.cancel_replaced_take_profit(p, old)
            crash_point("tp_extension_done")
        except PositionClosedError:
            return
        except ExchangeError as exc:
            await self._schedule(p.symbol, "take_profit", str(exc))

    async def cancel_replaced_take_profit(self, p: Protected, order_id: str) -> None:
        """Cancel the TP a take-profit move replaced and settle its owed ``tp_cancel`` item. Not while it is still
        the position's TP (the process died before the move's save: the restart's move replaces it again)."""
        if order_id != p.tp_order_id:
            with contextlib.suppress(OrderNotFoundError):  # already gone: that is the goal
                await self.client.cancel_order(order_id)
        await self.retry.done(f"{TP_CANCEL}:{p.symbol}:{order_id}")

    async def _landed_take_profit(self, p: Protected, price: Decimal) -> str | None:
        """A TP move whose order landed and was acked, its id never saved (the process died in between): the
        restart owes the same move (``tp_roi`` was saved with the stop move that asked for it) and placed a second
        TP at that price under a new clientOid, beside the first until the reconciliation cancelled one and called
        it drift. The intent, written before the order went out, names it: the live one at ``price`` for the
        position's size is taken over. An intent whose order is no longer live is closed in the books."""
        for intent in await self.intents.acked_for(p.symbol, "take_profit", price):
            if intent.order_id is None or intent.order_id == p.tp_order_id:
                continue
            try:
                o = await self.client.order_by_client_oid(intent.client_oid)
            except OrderNotFoundError:
                await self.intents.mark(intent.client_oid, "done", detail="gone from the exchange")
                continue
            if not (o.is_active and o.stop is not None and not o.stop_triggered):
                await self.intents.mark(intent.client_oid, "done", o.id, detail="no longer live")
                continue
            same = o.side is p.exit_side and o.stop is p.tp_direction and o.stop_price == price and o.lots == p.lots
            if o.reduce_only and same:
                log.warning("stop.landed_take_profit_taken_over", symbol=p.symbol, order_id=o.id, price=str(price))
                return o.id
        return None

    async def schedule(self, symbol: str, kind: str, error: str) -> None:
        """Queue ``kind`` work for ``symbol`` with the coordinator's backoff (the engine's owed resizes too)."""
        await self._schedule(symbol, kind, error)

    async def _schedule(self, symbol: str, kind: str, error: str) -> None:
        items = [i for i in await self.retry.due(2**62) if i.key == f"{kind}:{symbol}"]
        attempts = items[0].attempts + 1 if items else 0
        delay = retry_delay_ms(attempts)
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
