"""Open orders and untriggered stop orders come in pages of 50 (KuCoin: ``currentPage``, ``pageSize``, ``totalNum``,
``totalPage``); the simulator pages them as the reference says and the client reads every page. Reading the first
only, the reconciliation, the orphan-stop sweep, the kill switch and the retention job saw at most 50."""

from __future__ import annotations

from decimal import Decimal as D

from exchange.models import OrderRequest, OrderSide, OrderType, StopDirection, StopPriceType
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer


def resting_buy(symbol: str, price: D, client_oid: str) -> OrderRequest:
    return OrderRequest(symbol, OrderSide.BUY, 1, leverage=5, type=OrderType.LIMIT, price=price, client_oid=client_oid)


def stop_sell(symbol: str, price: D, client_oid: str) -> OrderRequest:
    return OrderRequest(
        symbol,
        OrderSide.SELL,
        1,
        leverage=5,
        stop=StopDirection.DOWN,
        stop_price=price,
        stop_price_type=StopPriceType.MARK,
        client_oid=client_oid,
    )


async def test_the_simulator_pages_open_and_stop_orders_as_the_reference_says(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    # KuCoin caps a contract at 100 open limit orders and 50 stops: the account-wide listings hold more.
    for n in range(120):
        await client.place_order(resting_buy("ETHUSDTM" if n % 2 else "XBTUSDTM", D(1000 + n), f"lim-{n}"))
    for n in range(60):
        await client.place_order(stop_sell("ETHUSDTM" if n % 2 else "XBTUSDTM", D(1500 + n), f"stp-{n}"))
    first = await client._call("GET", "/api/v1/orders", params={"status": "active"})
    assert (first["currentPage"], first["pageSize"], first["totalNum"], first["totalPage"]) == (1, 50, 120, 3)
    assert len(first["items"]) == 50  # the default page, not all 120
    last = await client._call("GET", "/api/v1/orders", params={"status": "active", "currentPage": 3, "pageSize": 50})
    assert (last["currentPage"], last["totalPage"], len(last["items"])) == (3, 3, 20)
    big = await client._call("GET", "/api/v1/orders", params={"status": "active", "pageSize": 5000})
    assert (big["pageSize"], big["totalPage"], len(big["items"])) == (1000, 1, 120)  # at most 1000 a page
    stops = await client._call("GET", "/api/v1/stopOrders", params={"currentPage": 2})
    assert (stops["currentPage"], stops["pageSize"], stops["totalNum"], stops["totalPage"]) == (2, 50, 60, 2)
    assert len(stops["items"]) == 10
    beyond = await client._call("GET", "/api/v1/stopOrders", params={"currentPage": 9})
    assert beyond["items"] == [] and beyond["totalNum"] == 60


async def test_the_client_reads_every_page_of_open_and_stop_orders(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    for n in range(120):
        await client.place_order(resting_buy("ETHUSDTM" if n % 2 else "XBTUSDTM", D(1000 + n), f"lim-{n}"))
    for n in range(60):
        await client.place_order(stop_sell("ETHUSDTM" if n % 2 else "XBTUSDTM", D(1500 + n), f"stp-{n}"))
    orders = await client.open_orders()
    assert len(orders) == 120 and len({o.id for o in orders}) == 120  # was 50
    assert {o.client_oid for o in orders} == {f"lim-{n}" for n in range(120)}
    assert len(await client.open_orders("ETHUSDTM")) == 60  # one symbol's, also beyond the first page
    stops = await client.open_stop_orders()
    assert sorted(o.client_oid for o in stops) == sorted(f"stp-{n}" for n in range(60))  # was 50
    assert all(o.stop is StopDirection.DOWN for o in stops)
    pages = [q for m, q in sim.requests if q.startswith("/api/v1/stopOrders?")]
    assert pages[-1].endswith("currentPage=2&pageSize=50")  # two pages, no more
    assert len(await client.open_stop_orders("ETHUSDTM")) == 30
    assert await client.open_stop_orders("SOLUSDTM") == []  # an empty listing: one request
