"""/orders from the phone against the simulator over loopback: what it costs the exchange's rate limit, which the
stop moves share."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any, cast

from engine.runtime.control import EngineControl
from exchange.models import OrderRequest, OrderSide, OrderType, StopDirection
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer


async def test_orders_asks_the_exchange_twice_whatever_the_universe(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """Two listings per configured symbol: with 542 symbols one /orders was 1,084 signed calls out of the budget a
    stop replacement needs, and an order on a symbol outside the universe was not shown. Now one listing of each
    kind, every symbol."""
    await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 10, leverage=10))
    await client.place_order(
        OrderRequest("ETHUSDTM", OrderSide.SELL, 10, reduce_only=True, stop=StopDirection.DOWN, stop_price=D("1980.00"))
    )
    await client.place_order(OrderRequest("XBTUSDTM", OrderSide.BUY, 1, OrderType.LIMIT, D("80000.0"), leverage=5))
    specs = {f"S{i:03d}USDTM": None for i in range(100)} | {"ETHUSDTM": None}  # XBTUSDTM outside the universe
    control = EngineControl(cast(Any, SimpleNamespace(client=client, specs=specs)), cast(Any, None))
    before = len(sim.requests)
    lines = await control.orders()
    listings = [p for _, p in sim.requests[before:] if p.startswith(("/api/v1/orders", "/api/v1/stopOrders"))]
    assert len(listings) == 2, len(listings)
    assert lines == [
        "ETHUSDTM stop sell 10 lots at 1980.00 reduce-only",
        "XBTUSDTM buy 1 lots @ 80000.0 (limit)",
    ]
