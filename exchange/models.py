"""Typed exchange objects. Venue strings are parsed into enums here, once; prices are Decimal, sizes int lots."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from exchange.ids import is_valid_client_oid, new_client_oid


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class OrderStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


class StopDirection(StrEnum):
    UP = "up"
    DOWN = "down"


class StopPriceType(StrEnum):
    LAST = "TP"
    MARK = "MP"
    INDEX = "IP"


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order intent. The clientOid is fixed at creation, so every retry of this intent carries it."""

    symbol: str
    side: OrderSide
    lots: int
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    leverage: int | None = None
    reduce_only: bool = False
    close_order: bool = False
    post_only: bool = False
    time_in_force: str = "GTC"
    stop: StopDirection | None = None
    stop_price: Decimal | None = None
    stop_price_type: StopPriceType = StopPriceType.MARK
    margin_mode: str = "ISOLATED"
    position_side: str | None = None  # LONG / SHORT in hedge mode
    client_oid: str = field(default_factory=new_client_oid)

    def __post_init__(self) -> None:
        if not is_valid_client_oid(self.client_oid):  # KuCoin: ≤ 40 of [A-Za-z0-9_-] (reference §4.4.1)
            raise ValueError(f"clientOid {self.client_oid!r} is not 1-40 characters of [A-Za-z0-9_-]")
        if type(self.lots) is not int:  # sent as the JSON integer ``size``: 1.5 or "2" would be refused
            raise ValueError(f"lots must be an int, got {self.lots!r}")
        if not self.close_order and self.lots < 1:
            raise ValueError(f"an order needs at least one lot, got {self.lots}")
        if self.type is OrderType.LIMIT and self.price is None:
            raise ValueError("a limit order needs a price")
        if self.stop is not None and self.stop_price is None:
            raise ValueError("a stop order needs a stop price")

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/orders`` (key order fixed, so the signed bytes are stable)."""
        out: dict[str, Any] = {"clientOid": self.client_oid, "symbol": self.symbol, "type": self.type.value}
        if self.close_order:
            out["closeOrder"] = True
        else:
            out["side"] = self.side.value
            out["size"] = self.lots
        if self.price is not None:
            out["price"] = format(self.price, "f")  # never "1.2E-7": a meme contract's price is that small
        if self.leverage is not None and not (self.reduce_only or self.close_order):
            out["leverage"] = self.leverage
        if self.reduce_only:
            out["reduceOnly"] = True
        if self.post_only:
            out["postOnly"] = True
        if self.type is OrderType.LIMIT:
            out["timeInForce"] = self.time_in_force
        if self.stop is not None:
            out["stop"] = self.stop.value
            out["stopPrice"] = format(self.stop_price, "f")
            out["stopPriceType"] = self.stop_price_type.value
        out["marginMode"] = self.margin_mode
        if self.position_side is not None:
            out["positionSide"] = self.position_side
        return out


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    client_oid: str
    symbol: str
    side: OrderSide
    type: OrderType
    price: Decimal | None
    lots: int
    filled_lots: int
    filled_value: Decimal
    status: OrderStatus
    reduce_only: bool
    stop: StopDirection | None
    stop_price: Decimal | None
    stop_triggered: bool
    cancel_exist: bool
    created_at: int
    position_side: str | None = None  # hedge mode's LONG / SHORT when the exchange says (reference §4.4.6)
    leverage: int | None = None  # the leverage the order was placed with (a string on KuCoin: "5"), when given

    @property
    def is_active(self) -> bool:
        return self.status is OrderStatus.OPEN

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Order:
        stop = d.get("stop") or None
        return cls(
            id=str(d["id"]),
            client_oid=str(d.get("clientOid") or ""),
            symbol=str(d["symbol"]),
            side=OrderSide(d["side"]),
            type=OrderType(d.get("type", "limit")),
            price=_dec(d.get("price")),
            lots=int(d.get("size", 0)),
            filled_lots=int(d.get("filledSize", d.get("dealSize", 0)) or 0),
            filled_value=_dec(d.get("filledValue", d.get("dealValue", "0"))) or Decimal(0),
            status=OrderStatus(d.get("status", "open")),
            reduce_only=bool(d.get("reduceOnly", False)),
            stop=StopDirection(stop) if stop else None,
            stop_price=_dec(d.get("stopPrice")),
            stop_triggered=bool(d.get("stopTriggered", False)),
            cancel_exist=bool(d.get("cancelExist", False)),
            created_at=int(d.get("createdAt", 0) or 0),
            position_side=str(d["positionSide"]) if d.get("positionSide") else None,
            leverage=_whole(d.get("leverage")),
        )


def _whole(value: Any) -> int | None:
    """A positive whole leverage ("5", 5, "5.0"), else None: a fraction or garbage is not an order's leverage."""
    try:
        lev = _dec(value)
        if lev is None or lev <= 0 or lev != lev.to_integral_value():
            return None
        return int(lev)
    except (ArithmeticError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    lots: int  # signed: long positive
    avg_entry: Decimal
    leverage: Decimal
    liquidation_price: Decimal | None
    mark_price: Decimal | None
    unrealised_pnl: Decimal
    realised_pnl: Decimal
    margin_mode: str
    position_side: str = "BOTH"
    opened_ms: int | None = None  # the exchange's openingTimestamp

    @property
    def is_open(self) -> bool:
        return self.lots != 0

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Position:
        return cls(
            symbol=str(d["symbol"]),
            lots=int(d.get("currentQty", 0) or 0),
            avg_entry=_dec(d.get("avgEntryPrice")) or Decimal(0),
            leverage=_dec(d.get("leverage")) or Decimal(0),
            liquidation_price=_dec(d.get("liquidationPrice")),
            mark_price=_dec(d.get("markPrice")),
            unrealised_pnl=_dec(d.get("unrealisedPnl")) or Decimal(0),
            realised_pnl=_dec(d.get("realisedPnl")) or Decimal(0),
            margin_mode=str(d.get("marginMode", "ISOLATED")),
            position_side=str(d.get("positionSide", "BOTH") or "BOTH"),
            opened_ms=int(d["openingTimestamp"]) if d.get("openingTimestamp") else None,
        )


@dataclass(frozen=True, slots=True)
class ClosedPosition:
    """One ``GET /api/v1/history-positions`` record (reference §4.3.1): how KuCoin booked a position that
    returned to 0. ``kind`` is what closed its last lots: ``close`` (an order), ``liquid`` or ``adl``."""

    close_id: str
    symbol: str
    side: str  # LONG | SHORT
    kind: str  # close | liquid | adl
    pnl: Decimal  # net of trading fees and funding
    gross: Decimal  # price PnL (−realisedGrossCost)
    trade_fee: Decimal
    open_ms: int
    close_ms: int
    open_price: Decimal
    close_price: Decimal

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ClosedPosition:
        kind, _, side = str(d["type"]).partition("_")  # CLOSE_LONG | LIQUID_SHORT | ADL_LONG ...
        return cls(
            close_id=str(d.get("closeId", "")),
            symbol=str(d["symbol"]),
            side=str(d.get("side") or side).upper(),
            kind=kind.lower(),
            pnl=Decimal(str(d["pnl"])),
            gross=-Decimal(str(d["realisedGrossCost"])),
            trade_fee=Decimal(str(d["tradeFee"])),
            open_ms=int(d.get("openTime") or 0),
            close_ms=int(d["closeTime"]),
            open_price=Decimal(str(d["openPrice"])),
            close_price=Decimal(str(d["closePrice"])),
        )


@dataclass(frozen=True, slots=True)
class AccountOverview:
    equity: Decimal
    available: Decimal
    unrealised_pnl: Decimal
    position_margin: Decimal
    order_margin: Decimal

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> AccountOverview:
        return cls(
            equity=_dec(d.get("accountEquity")) or Decimal(0),
            available=_dec(d.get("availableBalance")) or Decimal(0),
            unrealised_pnl=_dec(d.get("unrealisedPNL")) or Decimal(0),
            position_margin=_dec(d.get("positionMargin")) or Decimal(0),
            order_margin=_dec(d.get("orderMargin")) or Decimal(0),
        )


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: str
    order_id: str
    symbol: str
    side: OrderSide
    price: Decimal
    lots: int
    fee: Decimal
    liquidity: str
    ts_ms: int
    trade_type: str = "trade"  # trade | liquid | adl | settlement
    position_side: str | None = None  # hedge mode's LONG / SHORT, when the fill says (§4.5 does not list it)

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Fill:
        return cls(
            trade_id=str(d["tradeId"]),
            order_id=str(d["orderId"]),
            symbol=str(d["symbol"]),
            side=OrderSide(d["side"]),
            price=Decimal(str(d["price"])),
            lots=int(d["size"]),
            fee=Decimal(str(d.get("fee", "0"))),
            liquidity=str(d.get("liquidity", "")),
            ts_ms=int(d.get("createdAt", 0)),
            trade_type=str(d.get("tradeType") or "trade"),
            position_side=str(d["positionSide"]) if d.get("positionSide") else None,
        )
