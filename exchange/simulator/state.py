"""The simulated exchange's books: one USDT account, orders, stop orders, one-way positions, fills, funding.

Semantics follow reference §6: lots × multiplier, taker/maker fees on every fill, isolated margin per
position, reduce-only trimming, closeOrder, stop triggers on last/mark/index price, liquidation at the
isolated liquidation price, funding at 04:00/12:00/20:00 UTC.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from exchange.simulator.errors import SimError

ZERO = Decimal(0)
FEE_Q = Decimal("0.00000001")


@dataclass
class Contract:
    symbol: str
    multiplier: Decimal
    lot_size: int
    tick_size: Decimal
    max_leverage: int
    maker_fee: Decimal
    taker_fee: Decimal
    mmr: Decimal
    payload: dict[str, Any]


@dataclass
class Prices:
    last: Decimal
    mark: Decimal
    index: Decimal


@dataclass
class Order:
    id: str
    client_oid: str
    symbol: str
    side: str
    type: str
    price: Decimal | None
    size: int
    leverage: int
    margin_mode: str
    reduce_only: bool = False
    close_order: bool = False
    post_only: bool = False
    time_in_force: str = "GTC"
    stop: str = ""
    stop_price: Decimal | None = None
    stop_price_type: str = ""
    stop_triggered: bool = False
    status: str = "open"
    filled_size: int = 0
    filled_value: Decimal = ZERO
    cancel_exist: bool = False
    created_at: int = 0
    updated_at: int = 0
    end_at: int | None = None
    bracket_of: str | None = None
    position_side: str = "BOTH"

    @property
    def is_stop_pending(self) -> bool:
        return bool(self.stop) and not self.stop_triggered and self.status == "open"

    def to_api(self, multiplier: Decimal) -> dict[str, Any]:
        avg = self.filled_value / (self.filled_size * multiplier) if self.filled_size else ZERO
        value = (self.price or ZERO) * self.size * multiplier
        return {
            "id": self.id,
            "symbol": self.symbol,
            "type": self.type,
            "side": self.side,
            "price": str(self.price) if self.price is not None else "0",
            "size": self.size,
            "value": str(value),
            "dealValue": str(self.filled_value),
            "dealSize": self.filled_size,
            "stp": "",
            "stop": self.stop,
            "stopPriceType": self.stop_price_type,
            "stopTriggered": self.stop_triggered,
            "stopPrice": None if self.stop_price is None else str(self.stop_price),
            "timeInForce": self.time_in_force,
            "postOnly": self.post_only,
            "hidden": False,
            "iceberg": False,
            "leverage": str(self.leverage),
            "forceHold": False,
            "closeOrder": self.close_order,
            "visibleSize": 0,
            "clientOid": self.client_oid,
            "remark": None,
            "tags": "",
            "isActive": self.status == "open",
            "cancelExist": self.cancel_exist,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "endAt": self.end_at,
            "orderTime": self.created_at * 1_000_000,
            "settleCurrency": "USDT",
            "marginMode": self.margin_mode,
            "avgDealPrice": str(avg),
            "filledSize": self.filled_size,
            "filledValue": str(self.filled_value),
            "status": self.status,
            "reduceOnly": self.reduce_only,
            "positionSide": self.position_side,  # reference §4.4.6: present on newer accounts and in hedge mode
        }


@dataclass
class Position:
    symbol: str
    qty: int = 0
    cost: Decimal = ZERO  # signed entry value
    margin: Decimal = ZERO  # isolated posInit plus funding adjustments
    leverage: int = 1
    realised_gross: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    opened_at: int = 0
    position_side: str = "BOTH"  # BOTH in one-way mode; LONG / SHORT in hedge mode
    fees: Decimal = ZERO  # trading fees paid since it opened (the closed-position record's tradeFee)
    funding: Decimal = ZERO  # funding settled since it opened, signed: received positive (its fundingFee)
    closed_value: Decimal = ZERO  # value and lots of its reducing fills (the record's average closePrice)
    closed_lots: int = 0

    @property
    def key(self) -> str:
        return pos_key(self.symbol, self.position_side)


@dataclass
class ClosedPosition:
    """A ``GET /api/v1/history-positions`` record (reference §4.3.1, §6.3): made when a position returns to 0."""

    close_id: str
    symbol: str
    side: str  # LONG | SHORT
    kind: str  # CLOSE | LIQUID | ADL: what closed its last lots
    leverage: int
    pnl: Decimal  # gross − fees + funding
    gross: Decimal
    trade_fee: Decimal
    funding_fee: Decimal
    open_time: int
    close_time: int
    open_price: Decimal
    close_price: Decimal
    margin_mode: str
    liquid_price: Decimal

    def to_api(self) -> dict[str, Any]:
        return {
            "closeId": self.close_id,
            "userId": "633559791e1cbc0001f319bc",
            "symbol": self.symbol,
            "settleCurrency": "USDT",
            "leverage": str(self.leverage),
            "type": f"{self.kind}_{self.side}",
            "pnl": str(self.pnl),
            "realisedGrossCost": str(-self.gross),
            "withdrawPnl": "0",
            "tradeFee": str(self.trade_fee),
            "fundingFee": str(self.funding_fee),
            "openTime": self.open_time,
            "closeTime": self.close_time,
            "openPrice": str(self.open_price),
            "closePrice": str(self.close_price),
            "marginMode": self.margin_mode,
            "side": self.side,
            "tax": "0",
            "roe": None,
            "liquidAmount": "0",
            "liquidPrice": str(self.liquid_price),
        }


def pos_key(symbol: str, position_side: str) -> str:
    return symbol if position_side == "BOTH" else f"{symbol}:{position_side}"


@dataclass
class Fill:
    trade_id: str
    order_id: str
    symbol: str
    side: str
    liquidity: str
    price: Decimal
    size: int
    value: Decimal
    fee: Decimal
    fee_rate: Decimal
    trade_type: str
    ts_ms: int
    opening: bool
    position_side: str = "BOTH"

    def to_api(self, *, with_position_side: bool = False) -> dict[str, Any]:
        """Reference §4.5 lists no ``positionSide`` on a fill: only ``with_position_side`` adds it (an account whose
        fills do carry it), so a client must be able to tell a hedge-mode fill's side from its order."""
        out = {
            "symbol": self.symbol,
            "tradeId": self.trade_id,
            "orderId": self.order_id,
            "side": self.side,
            "liquidity": self.liquidity,
            "forceTaker": False,
            "price": str(self.price),
            "size": self.size,
            "value": str(self.value),
            "openFeePay": str(self.fee) if self.opening else "0",
            "closeFeePay": "0" if self.opening else str(self.fee),
            "stop": "",
            "feeRate": str(self.fee_rate),
            "fixFee": "0",
            "feeCurrency": "USDT",
            "fee": str(self.fee),
            "settleCurrency": "USDT",
            "tradeType": self.trade_type,
            "tradeTime": self.ts_ms * 1_000_000,
            "createdAt": self.ts_ms,
            "orderType": "market",
            "displayType": "market",
            "marginMode": "ISOLATED",
        }
        if with_position_side:
            out["positionSide"] = self.position_side
        return out


@dataclass
class FundingRecord:
    id: int
    symbol: str
    time_point: int
    funding_rate: Decimal
    mark_price: Decimal
    position_qty: int
    position_cost: Decimal
    funding: Decimal
    position_side: str = "BOTH"  # in the record's ``context`` (reference §4.6)


Listener = Callable[[str, dict[str, Any]], None]


@dataclass
class Book:
    """Everything the simulated exchange remembers; mutations go through its methods."""

    contracts: dict[str, Contract]
    balance: Decimal
    market_slippage: Decimal = Decimal("0.0002")
    funding_rate: Decimal = Decimal("0.0001")
    prices: dict[str, Prices] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    funding: list[FundingRecord] = field(default_factory=list)
    closed: list[ClosedPosition] = field(default_factory=list)  # history-positions, oldest first
    margin_modes: dict[str, str] = field(default_factory=dict)
    position_mode: int = 0
    # Reference §4.5 lists no positionSide on fills; True: they carry it (newer accounts may), hedge mode's LONG/SHORT.
    fills_position_side: bool = False
    # A stop whose trigger condition already holds at placement: KuCoin's behaviour is not documented (refused or
    # triggered at once). Default: it triggers at once; True: it is refused with 100001.
    reject_triggered_stops: bool = False
    # A stopPrice off the contract's tick grid: the reference states the tick rule for ``price`` only. Default: it
    # is accepted; True: refused with 100001 as an off-tick limit price is.
    reject_off_tick_stops: bool = False
    # Thin book: a taker order fills at most this many lots (the rest of an IOC or market order is cancelled).
    max_taker_lots: int | None = None
    funded_until_ms: int | None = None
    # Reference §4.4.1 / §6.10 step 10: per contract, 100 open limit orders (300001) and 50 stop orders (300004).
    max_open_limits: int = 100
    # Reference §6.1 price band: a limit buy above mark × (1 + band) is 300011, a sell below mark × (1 − band)
    # 300012. None switches it off.
    price_band_pct: Decimal | None = Decimal("0.05")
    max_open_stops: int = 50
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    listeners: list[Listener] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(234125150956625920))

    # ------------------------------------------------------------------ helpers

    def next_id(self) -> str:
        return str(next(self._ids))

    def contract(self, symbol: str) -> Contract:
        c = self.contracts.get(symbol)
        if c is None:
            raise SimError("100003", f"Contract parameter invalid: {symbol}")
        return c

    def price(self, symbol: str) -> Prices:
        p = self.prices.get(symbol)
        if p is None:
            raise SimError("300008", "No market price for this contract yet")
        return p

    def position(self, symbol: str, position_side: str = "BOTH") -> Position:
        return self.positions.setdefault(pos_key(symbol, position_side), Position(symbol, position_side=position_side))

    def symbol_positions(self, symbol: str) -> list[Position]:
        return [p for p in self.positions.values() if p.symbol == symbol]

    def emit(self, topic: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(topic, data)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.status == "open" and (symbol is None or o.symbol == symbol)]

    def by_client_oid(self, client_oid: str) -> Order | None:
        found = [o for o in self.orders.values() if o.client_oid == client_oid]
        return max(found, key=lambda o: (o.created_at, o.id)) if found else None

    def position_margin_total(self) -> Decimal:
        return sum((p.margin for p in self.positions.values() if p.qty), ZERO)

    def order_margin_total(self) -> Decimal:
        total = ZERO
        for o in self.open_orders():
            if o.is_stop_pending or o.reduce_only or o.close_order or o.type != "limit" or o.price is None:
                continue
            c = self.contracts[o.symbol]
            total += (o.size - o.filled_size) * c.multiplier * o.price / o.leverage
        return total

    def unrealised(self, pos: Position) -> Decimal:
        if not pos.qty:
            return ZERO
        c = self.contracts[pos.symbol]
        return self.price(pos.symbol).mark * pos.qty * c.multiplier - pos.cost

    def available(self) -> Decimal:
        return self.balance - self.position_margin_total() - self.order_margin_total()

    def liquidation_price(self, pos: Position) -> Decimal | None:
        """Reference §6.8 with posMaint ≈ |cost| × mmr (fees ignored)."""
        if not pos.qty:
            return None
        c = self.contracts[pos.symbol]
        qty = abs(pos.qty) * c.multiplier
        entry = abs(pos.cost) / qty
        room = (pos.margin - abs(pos.cost) * c.mmr) / qty
        return entry - room if pos.qty > 0 else entry + room

    def price_band(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """(buyLimit, sellLimit): the highest buy and lowest sell price accepted now (reference §6.1: about mark
        ± 5 %, published on the contract). None before the symbol has a price, or with the band switched off."""
        p = self.prices.get(symbol)
        if p is None or self.price_band_pct is None:
            return None
        tick = self.contracts[symbol].tick_size
        return (
            _round(p.mark * (1 + self.price_band_pct), tick, up=False),
            _round(p.mark * (1 - self.price_band_pct), tick, up=True),
        )

    # ------------------------------------------------------------------ orders

    def place(self, body: dict[str, Any], *, validate_only: bool = False, defer: bool = False) -> Order:
        """Validate (reference §6.10) and accept an order; market orders fill at once. ``defer``: accepted and open,
        matched only when ``match_deferred`` is called (KuCoin answers the placement before its matching engine has
        run the order: a query right after it can show the order open with nothing filled)."""
        now = self.clock()
        symbol = str(body.get("symbol", ""))
        c = self.contract(symbol)
        status = str(c.payload.get("status") or "Open")
        if status != "Open":  # reference §6.10 step 2: a paused, settling, cancel-only... contract takes no order
            raise SimError("200003", f"Contract {symbol} is {status}: orders are not accepted")
        client_oid = body.get("clientOid")
        if not client_oid or not isinstance(client_oid, str):
            raise SimError("400100", "validation.createOrder.clientOidIsRequired")
        if not CLIENT_OID.fullmatch(client_oid):  # str.isalnum() also let "é" or "٣" through
            raise SimError("100001", "clientOid must be at most 40 characters of [A-Za-z0-9_-]")
        close_order = _flag(body, "closeOrder")
        reduce_only = _flag(body, "reduceOnly") or close_order
        order_type = str(body.get("type", "limit"))
        if order_type not in ("limit", "market"):
            raise SimError("100001", f"type must be limit or market, got {order_type}")
        position_side = str(body.get("positionSide", "BOTH") or "BOTH")
        if self.position_mode == 1 and position_side not in ("LONG", "SHORT"):
            raise SimError("100001", "hedge mode: positionSide must be LONG or SHORT")
        if self.position_mode == 0 and position_side != "BOTH":
            raise SimError("100001", "one-way mode: positionSide must be BOTH")
        pos = self.position(symbol, position_side)
        side = body.get("side")
        if position_side != "BOTH" and side is not None:
            # Hedge mode: selling a LONG or buying a SHORT closes; it can never open the other side.
            reduce_only = reduce_only or (side == "sell") == (position_side == "LONG")
        if close_order:
            if pos.qty == 0:
                raise SimError("300009", "Current position size: 0, unable to close the position")
            side = "sell" if pos.qty > 0 else "buy"
            size = abs(pos.qty)
        else:
            if side not in ("buy", "sell"):
                raise SimError("100001", "side must be buy or sell")
            raw_size = body.get("size")
            if type(raw_size) is not int:  # §4.4.1: a JSON integer of lots; 1.5 was truncated, "2" accepted
                raise SimError("100001", "size must be an integer number of lots")
            size = raw_size
            if size < c.lot_size or size % c.lot_size:
                raise SimError("100001", f"size must be a positive multiple of lotSize {c.lot_size}")
            max_qty = int(c.payload.get("maxOrderQty") or 0)
            if max_qty and size > max_qty:
                raise SimError("100001", f"size must be at most maxOrderQty {max_qty}")
        price: Decimal | None = None
        if order_type == "limit":
            price = price_field(body, "price")
            if price is None:
                raise SimError("100001", "limit orders need a price")
            if price <= 0 or price % c.tick_size:
                raise SimError("100001", f"price must be a positive multiple of tickSize {c.tick_size}")
            max_price = Decimal(str(c.payload.get("maxPrice") or 0))
            if max_price and price > max_price:
                raise SimError("100001", f"price must be at most maxPrice {max_price}")
            band = self.price_band(symbol)
            if band is not None and body.get("stop") in (None, ""):
                buy_limit, sell_limit = band
                if side == "buy" and price > buy_limit:
                    raise SimError("300011", f"Order price cannot be higher than {buy_limit}")
                if side == "sell" and price < sell_limit:
                    raise SimError("300012", f"Order price cannot be lower than {sell_limit}")
        post_only = _flag(body, "postOnly")
        tif = body.get("timeInForce", "GTC")
        if tif not in ("GTC", "IOC"):  # §4.4.1; "FOK" used to be taken as GTC without a word
            raise SimError("100001", f"timeInForce must be GTC or IOC, got {tif!r}")
        if post_only and tif == "IOC":
            raise SimError("100001", "postOnly cannot be used with IOC")
        stop = str(body.get("stop", "") or "")
        stop_price: Decimal | None = None
        stop_type = str(body.get("stopPriceType", "") or "")
        if stop:
            if stop not in ("up", "down") or "stopPrice" not in body or stop_type not in ("TP", "MP", "IP"):
                raise SimError("100001", "stop orders need stop up/down, stopPrice and stopPriceType TP/MP/IP")
            stop_price = price_field(body, "stopPrice")
            if stop_price is None or stop_price <= 0:
                raise SimError("100001", "stopPrice must be a positive price")
            if self.reject_off_tick_stops and stop_price % c.tick_size:
                raise SimError("100001", f"stopPrice must be a multiple of tickSize {c.tick_size}")
            now_prices = self.prices.get(symbol)
            if self.reject_triggered_stops and now_prices is not None:
                ref = {"TP": now_prices.last, "MP": now_prices.mark, "IP": now_prices.index}[stop_type]
                if ref >= stop_price if stop == "up" else ref <= stop_price:
                    raise SimError("100001", f"stopPrice {stop_price} would trigger at once (reference {ref})")
        if not reduce_only and body.get("leverage") in (None, ""):
            raise SimError("100001", "leverage is required unless the order closes")  # reference §6.10 step 8
        leverage = _leverage(body.get("leverage"), pos.leverage if pos.qty else 1)
        if not reduce_only and not 1 <= leverage <= c.max_leverage:
            raise SimError("300016", f"leverage must be between 1 and {c.max_leverage}")
        mode = str(body.get("marginMode", "ISOLATED"))
        if mode != self.margin_modes.get(symbol, "ISOLATED"):
            raise SimError("330005", "The order's margin mode does not match the selected one.")
        if reduce_only and not stop:
            if pos.qty == 0 or (pos.qty > 0 and side == "buy") or (pos.qty < 0 and side == "sell"):
                raise SimError("300009", "reduce-only order cannot reduce: no opposite position")
        live = self.open_orders(symbol)
        if stop and sum(o.is_stop_pending for o in live) >= self.max_open_stops:
            raise SimError("300004", f"stop order count exceeds the limit of {self.max_open_stops}")
        if not stop and order_type == "limit":
            if sum(o.type == "limit" and not o.is_stop_pending for o in live) >= self.max_open_limits:
                raise SimError("300001", f"active order count exceeds the limit of {self.max_open_limits}")
        active = self.by_client_oid(client_oid)
        if active is not None and active.status == "open":
            raise SimError("300018", "clientOid parameter repeated")
        if not reduce_only and not stop:
            self._check_margin(c, size, price or self.price(symbol).last, leverage)
        order = Order(
            id=self.next_id(),
            client_oid=client_oid,
            symbol=symbol,
            side=str(side),
            type=order_type,
            price=price,
            size=size,
            leverage=leverage,
            margin_mode=mode,
            reduce_only=reduce_only,
            close_order=close_order,
            post_only=post_only,
            time_in_force=tif,
            stop=stop,
            stop_price=stop_price,
            stop_price_type=stop_type,
            created_at=now,
            updated_at=now,
            position_side=position_side,
        )
        if validate_only:
            return order
        self.orders[order.id] = order
        self.emit("order", {"type": "open", "order": order})
        if stop:
            self.check_stops(symbol)
        elif not defer:
            self._work(order)
        return order

    def match_deferred(self, order_id: str) -> None:
        """Run an order accepted with ``defer`` through the matching now (if nobody cancelled it meanwhile)."""
        order = self.orders.get(order_id)
        if order is not None and order.status == "open" and not order.stop:
            self._work(order)

    def _check_margin(self, c: Contract, size: int, price: Decimal, leverage: int) -> None:
        value = size * c.multiplier * price
        need = value / leverage + value * c.taker_fee * 2
        if need > self.available():
            raise SimError("300003", f"Balance not enough, need {need:.4f} USDT, available {self.available():.4f}")

    def _work(self, order: Order) -> None:
        """Try to execute an active, triggered order against the current price."""
        p = self.price(order.symbol)
        c = self.contracts[order.symbol]
        if order.type == "market":
            fill = self._market_fill_price(order, p.last, c.tick_size)
            self._fill(order, fill, self._taker_lots(order), "taker")
            if order.status == "open":
                self._finish(order, cancelled=True)
            return
        if order.price is None:  # pragma: no cover - limit orders always carry a price
            return
        crosses = p.last <= order.price if order.side == "buy" else p.last >= order.price
        if crosses and order.post_only:
            self._finish(order, cancelled=True)
            return
        if crosses:
            # A crossing limit takes liquidity at the market price, never worse than its limit.
            market = self._market_fill_price(order, p.last, c.tick_size)
            price = min(market, order.price) if order.side == "buy" else max(market, order.price)
            self._fill(order, price, self._taker_lots(order), "taker")
            if order.status == "open" and order.time_in_force == "IOC":
                self._finish(order, cancelled=True)  # the book was thinner than the order
        elif order.time_in_force == "IOC":
            self._finish(order, cancelled=True)

    def _taker_lots(self, order: Order) -> int:
        left = order.size - order.filled_size
        return left if self.max_taker_lots is None else min(left, self.max_taker_lots)

    def _market_fill_price(self, order: Order, last: Decimal, tick: Decimal) -> Decimal:
        """The synthetic book: a taker pays the configured slippage from the last price, rounded against it."""
        slip = self.market_slippage
        raw = last * (1 + slip) if order.side == "buy" else last * (1 - slip)
        return _round(raw, tick, up=order.side == "buy")

    def _fill(
        self,
        order: Order,
        price: Decimal,
        lots: int,
        liquidity: str,
        trade_type: str = "trade",
        rate: Decimal | None = None,
    ) -> None:
        c = self.contracts[order.symbol]
        pos = self.position(order.symbol, order.position_side)
        sign = 1 if order.side == "buy" else -1
        if order.reduce_only:
            reducible = -pos.qty if (pos.qty * sign) < 0 else 0
            lots = min(lots, abs(reducible))
            if lots <= 0:
                self._finish(order, cancelled=True)
                return
        if rate is None:
            rate = c.taker_fee if liquidity == "taker" else c.maker_fee
        remaining = lots
        now = self.clock()
        # A fill against the position first reduces it, then (one-way) opens the rest the other way.
        if pos.qty and (pos.qty > 0) != (sign > 0):
            closing = min(remaining, abs(pos.qty))
            self._apply(order, pos, c, price, closing, sign, rate, liquidity, trade_type, now, opening=False)
            remaining -= closing
        if remaining:
            self._apply(order, pos, c, price, remaining, sign, rate, liquidity, trade_type, now, opening=True)
        if order.filled_size >= order.size:
            self._finish(order, cancelled=False)
        elif order.reduce_only and pos.qty == 0:
            self._finish(order, cancelled=True)

    def _apply(
        self,
        order: Order,
        pos: Position,
        c: Contract,
        price: Decimal,
        lots: int,
        sign: int,
        rate: Decimal,
        liquidity: str,
        trade_type: str,
        now: int,
        *,
        opening: bool,
    ) -> None:
        value = price * lots * c.multiplier
        fee = (value * rate).quantize(FEE_Q)
        open_price, closed_side = ZERO, ""
        if opening:
            if pos.qty == 0:
                pos.opened_at, pos.realised_gross, pos.realised_pnl = now, ZERO, ZERO
                pos.fees = pos.funding = pos.closed_value = ZERO
                pos.closed_lots = 0
                pos.leverage = order.leverage
            pos.cost += sign * value
            pos.margin += value / order.leverage
            pos.qty += sign * lots
        else:
            entry_per_lot = pos.cost / pos.qty  # signed cost per signed lot
            open_price = entry_per_lot / c.multiplier  # positive: signed cost over signed lots
            closed_side = "LONG" if pos.qty > 0 else "SHORT"
            pos.closed_value += value
            pos.closed_lots += lots
            closed_cost = entry_per_lot * lots * (1 if pos.qty > 0 else -1)
            gross = (value - abs(closed_cost)) * (1 if pos.qty > 0 else -1)
            share = Decimal(lots) / abs(pos.qty)
            released = pos.margin * share
            pos.cost -= closed_cost
            pos.margin -= released
            pos.qty += sign * lots
            pos.realised_gross += gross
            pos.realised_pnl += gross
            self.balance += gross
        pos.realised_pnl -= fee
        pos.fees += fee
        self.balance -= fee
        if not opening and pos.qty == 0:
            self._record_close(pos, c, closed_side, open_price, price, trade_type, now)
        order.filled_size += lots
        order.filled_value += value
        order.updated_at = now
        fill = Fill(
            self.next_id(),
            order.id,
            order.symbol,
            order.side,
            liquidity,
            price,
            lots,
            value,
            fee,
            rate,
            trade_type,
            now,
            opening,
            order.position_side,
        )
        self.fills.append(fill)
        self.emit("fill", {"order": order, "fill": fill})
        change = {"liquid": "liquidation", "adl": "adl"}.get(trade_type, "positionChange")  # §5.6.3 changeReason
        self.emit("position", {"position": pos, "change": change})

    def _record_close(
        self, pos: Position, c: Contract, side: str, open_price: Decimal, price: Decimal, trade_type: str, now: int
    ) -> None:
        """The position is flat again: its closed-position record, typed by what closed its last lots."""
        self.closed.append(
            ClosedPosition(
                close_id=self.next_id(),
                symbol=pos.symbol,
                side=side,
                kind={"liquid": "LIQUID", "adl": "ADL"}.get(trade_type, "CLOSE"),
                leverage=pos.leverage,
                pnl=pos.realised_pnl,
                gross=pos.realised_gross,
                trade_fee=pos.fees,
                funding_fee=pos.funding,
                open_time=pos.opened_at,
                close_time=now,
                open_price=open_price,
                close_price=pos.closed_value / (pos.closed_lots * c.multiplier),
                margin_mode=self.margin_modes.get(pos.symbol, "ISOLATED"),
                liquid_price=price if trade_type == "liquid" else ZERO,
            )
        )

    def _finish(self, order: Order, *, cancelled: bool) -> None:
        now = self.clock()
        order.status = "done"
        order.cancel_exist = order.cancel_exist or cancelled
        order.updated_at = order.end_at = now
        self.emit("order", {"type": "canceled" if cancelled else "filled", "order": order})
        if not cancelled:
            self._on_done(order)

    def _on_done(self, order: Order) -> None:
        """Reduce-only orders without a position left to reduce are cancelled (reference §6.4)."""
        pos = self.position(order.symbol, order.position_side)
        if pos.qty == 0:
            for other in self.open_orders(order.symbol):
                if other.reduce_only and not other.is_stop_pending and other.position_side == order.position_side:
                    self._finish(other, cancelled=True)

    def cancel(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None or order.status != "open":
            raise SimError("100004", "The order cannot be canceled")
        self._finish(order, cancelled=True)
        return order

    def cancel_all(self, symbol: str, *, stops: bool) -> list[str]:
        ids = [o.id for o in self.open_orders(symbol or None) if o.is_stop_pending == stops]
        for oid in ids:
            self._finish(self.orders[oid], cancelled=True)
        return ids

    # ------------------------------------------------------------------ market moves

    def set_price(
        self,
        symbol: str,
        last: Decimal,
        mark: Decimal | None = None,
        index: Decimal | None = None,
        *,
        ts_ms: int | None = None,
        swept: bool = False,
    ) -> None:
        """Move the market to ``last``. ``swept``: it traded through every price on the way from the previous one
        (a step along a candle's path), so a stop whose trigger lies on the way goes off at its trigger, as in a
        market that moved through it; without it (a gap) it goes off at ``last``. The replay's four-point path
        used to fill a stop at the candle's extreme: an ETH stop at 3122.35 filled at 3107.06, 15 USD past it."""
        prev = self.prices.get(symbol)
        if swept and prev is not None and mark is None and index is None:
            lo, hi = min(prev.last, last), max(prev.last, last)
            on_the_way = {
                o.stop_price
                for o in self.open_orders(symbol)
                if o.is_stop_pending and o.stop_price is not None and lo < o.stop_price < hi
            }
            for level in sorted(on_the_way, reverse=last < prev.last):
                self.set_price(symbol, level, ts_ms=ts_ms)
        self.contract(symbol)
        self.fund_due(ts_ms if ts_ms is not None else self.clock())
        self.prices[symbol] = Prices(last, mark if mark is not None else last, index if index is not None else last)
        self.emit("ticker", {"symbol": symbol, "prices": self.prices[symbol]})
        self.check_stops(symbol)
        for order in sorted(self.open_orders(symbol), key=lambda o: o.created_at):
            if order.status == "open" and not order.stop and order.type == "limit":
                p = self.prices[symbol].last
                if order.price is None:  # pragma: no cover
                    continue
                if (order.side == "buy" and p <= order.price) or (order.side == "sell" and p >= order.price):
                    self._fill(order, order.price, order.size - order.filled_size, "maker")
        self.check_liquidation(symbol)

    def check_stops(self, symbol: str) -> None:
        p = self.prices.get(symbol)
        if p is None:
            return
        for order in sorted(self.open_orders(symbol), key=lambda o: o.created_at):
            if not order.is_stop_pending or order.stop_price is None:
                continue
            ref = {"TP": p.last, "MP": p.mark, "IP": p.index}[order.stop_price_type]
            hit = ref >= order.stop_price if order.stop == "up" else ref <= order.stop_price
            if not hit:
                continue
            order.stop_triggered = True
            order.updated_at = self.clock()
            self.emit("stop", {"type": "triggered", "order": order})
            if order.reduce_only:
                pos = self.position(symbol, order.position_side)
                wrong = pos.qty == 0 or (pos.qty > 0) == (order.side == "buy")
                if wrong:
                    self._finish(order, cancelled=True)
                    continue
            self._work(order)
            if order.bracket_of is not None:
                for sibling in self.open_orders(symbol):
                    if sibling.bracket_of == order.bracket_of and sibling.id != order.id:
                        self._finish(sibling, cancelled=True)

    def check_liquidation(self, symbol: str) -> None:
        for pos in self.symbol_positions(symbol):
            if pos.qty:
                self._liquidate_if_due(pos)

    def _liquidate_if_due(self, pos: Position) -> None:
        symbol = pos.symbol
        liq = self.liquidation_price(pos)
        mark = self.price(symbol).mark
        if liq is None or not ((pos.qty > 0 and mark <= liq) or (pos.qty < 0 and mark >= liq)):
            return
        for order in self.open_orders(symbol):
            if order.position_side == pos.position_side:
                self._finish(order, cancelled=True)
        c = self.contracts[symbol]
        qty = abs(pos.qty) * c.multiplier
        bankrupt = abs(pos.cost) / qty + (-1 if pos.qty > 0 else 1) * pos.margin / qty
        liq_order = self._exchange_order(symbol, pos, abs(pos.qty), "liquidation")
        self._fill(liq_order, _round(bankrupt, c.tick_size, up=pos.qty < 0), abs(pos.qty), "taker", "liquid")

    def _exchange_order(self, symbol: str, pos: Position, lots: int, kind: str) -> Order:
        """The market order the exchange itself sends to take ``lots`` of ``pos`` (a liquidation or an ADL): stored
        like the trader's, so its fills and order queries look as KuCoin's do."""
        order = Order(
            id=self.next_id(),
            client_oid=f"{kind}-{self.next_id()}",
            symbol=symbol,
            side="sell" if pos.qty > 0 else "buy",
            type="market",
            price=None,
            size=lots,
            leverage=pos.leverage,
            margin_mode=self.margin_modes.get(symbol, "ISOLATED"),
            reduce_only=True,
            created_at=self.clock(),
            position_side=pos.position_side,
        )
        self.orders[order.id] = order
        return order

    def force_reduce(
        self, symbol: str, lots: int, price: Decimal, *, trade_type: str = "adl", position_side: str = "BOTH"
    ) -> Order:
        """The exchange takes ``lots`` of a position without an order of the trader's: auto-deleveraging
        (``tradeType: adl``, no fee, position push ``changeReason: adl``) or a partial liquidation (``liquid``,
        taker fee, ``changeReason: liquidation``); reference §4.5 / §5.6.1 / §5.6.3. The trader's orders are left
        as they are (a reduce-only stop for more lots than are left is trimmed when it executes)."""
        pos = self.position(symbol, position_side)
        if pos.qty == 0 or not 0 < lots <= abs(pos.qty):
            raise SimError("300009", f"cannot take {lots} lots of a position of {pos.qty}")
        system = self._exchange_order(symbol, pos, lots, "adl" if trade_type == "adl" else "liquidation")
        rate = ZERO if trade_type == "adl" else None
        self._fill(system, price, lots, "taker", trade_type, rate)
        return system

    # ------------------------------------------------------------------ funding

    def fund_due(self, now_ms: int) -> int:
        """Settle every funding instant (04:00, 12:00, 20:00 UTC) passed since the last call; returns how many."""
        period, offset = 28_800_000, 14_400_000
        if self.funding_clock_start(now_ms):
            return 0
        since = self.funded_until_ms or now_ms
        settled = 0
        nxt = since - (since - offset) % period + period
        while nxt <= now_ms:
            self.settle_funding(nxt)
            settled += 1
            nxt += period
        self.funded_until_ms = now_ms
        return settled

    def funding_clock_start(self, now_ms: int) -> bool:
        if self.funded_until_ms is None or now_ms < self.funded_until_ms:
            self.funded_until_ms = now_ms
            return True
        return False

    def settle_funding(self, ts_ms: int) -> list[FundingRecord]:
        """Reference §6.9: funding = −markValue × rate for every open position (longs pay when positive)."""
        out = []
        for pos in self.positions.values():
            if not pos.qty:
                continue
            c = self.contracts[pos.symbol]
            mark = self.price(pos.symbol).mark
            value = mark * pos.qty * c.multiplier
            amount = (-value * self.funding_rate).quantize(FEE_Q)
            self.balance += amount
            pos.realised_pnl += amount
            pos.funding += amount
            pos.margin += amount
            rec = FundingRecord(
                len(self.funding) + 1,
                pos.symbol,
                ts_ms,
                self.funding_rate,
                mark,
                pos.qty,
                abs(value),
                amount,
                pos.position_side,
            )
            self.funding.append(rec)
            out.append(rec)
            self.emit("funding", {"record": rec})
        return out

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        def conv(x: Any) -> Any:
            if isinstance(x, Decimal):
                return {"$d": str(x)}
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, list):
                return [conv(v) for v in x]
            return x

        snap: dict[str, Any] = conv(
            {
                "balance": self.balance,
                "prices": {s: asdict(p) for s, p in self.prices.items()},
                "orders": [asdict(o) for o in self.orders.values()],
                "positions": [asdict(p) for p in self.positions.values()],
                "fills": [asdict(f) for f in self.fills],
                "funding": [asdict(f) for f in self.funding],
                "closed": [asdict(r) for r in self.closed],
                "margin_modes": self.margin_modes,
                "position_mode": self.position_mode,
                "next_id": int(self.next_id()),
            }
        )
        return snap

    def restore(self, data: dict[str, Any]) -> None:
        def conv(x: Any) -> Any:
            if isinstance(x, dict):
                if set(x) == {"$d"}:
                    return Decimal(x["$d"])
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, list):
                return [conv(v) for v in x]
            return x

        d = conv(data)
        self.balance = d["balance"]
        self.prices = {s: Prices(**p) for s, p in d["prices"].items()}
        self.orders = {o["id"]: Order(**o) for o in d["orders"]}
        self.positions = {pos_key(p["symbol"], p.get("position_side", "BOTH")): Position(**p) for p in d["positions"]}
        self.fills = [Fill(**f) for f in d["fills"]]
        self.funding = [FundingRecord(**f) for f in d["funding"]]
        self.closed = [ClosedPosition(**r) for r in d.get("closed", [])]
        self.margin_modes = d["margin_modes"]
        self.position_mode = int(d.get("position_mode", 0))
        self._ids = itertools.count(d["next_id"])


CLIENT_OID = re.compile(r"[A-Za-z0-9_-]{1,40}", re.ASCII)  # reference §4.4.1
PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)


def _flag(body: dict[str, Any], name: str) -> bool:
    """A boolean field (reference §4.4.1). ``bool("false")`` is True: a string flag was taken as set."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise SimError("100001", f"{name} must be a JSON boolean, got {value!r}")
    return value


def price_field(body: dict[str, Any], name: str) -> Decimal | None:
    """A price field: a string in plain decimal notation (reference §4.4.1, §6.12 — prices are strings), so a
    number or an exponent form like "2.06E+3" is refused rather than guessed at. None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not PLAIN_DECIMAL.fullmatch(value):
        raise SimError("100001", f'{name} must be a decimal string such as "2000.50", got {value!r}')
    return Decimal(value)


def _leverage(value: Any, default: int) -> int:
    """``leverage``: an integer, or its decimal string (reference §4.4.1: both seen); 5.5 was truncated to 5."""
    if value is None or value == "":
        return default
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise SimError("100001", f"leverage must be an integer, got {value!r}")


def _round(price: Decimal, tick: Decimal, *, up: bool) -> Decimal:
    steps = (price / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return (steps * tick).quantize(tick)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True)
