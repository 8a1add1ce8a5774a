"""Conformance of the client and the simulator with the KuCoin reference (shared/spec/KUCOIN_FUTURES_API.md),
over real sockets: each test names the section it checks and fails on the divergence it was written for."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Callable
from decimal import Decimal as D

import aiohttp
import pytest

from exchange import rest
from exchange.errors import InvalidRequestError
from exchange.models import OrderRequest, OrderSide, OrderType, StopDirection
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from exchange.ws import KucoinStream, StreamMessage, connect_url


async def test_ws_token_is_percent_encoded_in_the_connect_url(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§5.1: connect to ``{endpoint}?token={token}&connectId={id}`` with the token URL-encoded. KuCoin's tokens end
    in ``=`` padding (§4.7, the simulator now issues that shape); the client pasted the token raw, which the
    simulator (strict, like a form-decoding gateway) refuses with 401, so the stream never came up."""
    got: list[StreamMessage] = []
    stream = KucoinStream(client, got.append, private=True, backoff_base_s=0.02, backoff_cap_s=0.05)
    await stream.subscribe("/contract/instrument:ETHUSDTM")
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.wait_for(stream.connected.wait(), 5)
    finally:
        await stream.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    raw = sim.ws_connect_queries[0]
    token_part = raw.split("&")[0]
    assert token_part.startswith("token=") and "=" not in token_part[len("token=") :]
    assert "%3D" in token_part  # the padding went over the wire encoded
    issued = urllib.parse.unquote(token_part[len("token=") :])
    assert issued in sim.tokens and issued.endswith("==")
    assert stream.stats.connects == 1


async def test_unencoded_token_is_refused_with_401(sim: SimulatorServer) -> None:
    """The strictness the test above relies on: the same token sent raw gets ``401`` before any welcome."""
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.rest_url + "/api/v1/bullet-public") as resp:
            bullet = (await resp.json())["data"]
        endpoint, token = bullet["instanceServers"][0]["endpoint"], bullet["token"]
        assert "=" in token and "." in token  # §4.7 shape
        async with http.ws_connect(f"{endpoint}?token={token}&connectId=7") as ws:
            first = await ws.receive_json()
            assert (first["type"], first["code"], first["id"]) == ("error", 401, "7")
        async with http.ws_connect(connect_url(endpoint, token, "8")) as ws:
            assert await ws.receive_json() == {"id": "8", "type": "welcome"}


def test_connect_url_encodes_plus_and_slash_and_keeps_an_existing_query() -> None:
    url = connect_url("wss://ws-api-futures.kucoin.com/?v=1", "a+b/c=.d==", "17")
    assert url == "wss://ws-api-futures.kucoin.com/?v=1&token=a%2Bb%2Fc%3D.d%3D%3D&connectId=17"


async def test_every_rest_response_carries_the_three_ratelimit_headers(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§3.3: ``gw-ratelimit-limit``, ``-remaining`` and ``-reset`` (ms until the window resets) on every response.
    The simulator sent ``-reset`` only with a 429, so the client's budget never learnt when a window ends."""
    await client.server_time()
    await client.account_overview()
    for pool, spent in (("public", 2), ("futures", 5)):
        p = client.budget.pools[pool]
        assert p.remaining_hint == 2000 - spent
        assert 0 < p.reset_at - client.budget.clock() <= 30.0
    async with aiohttp.ClientSession() as http:
        async with http.get(sim.rest_url + "/api/v1/contracts/NOPE") as r:  # a business error: still there
            assert (await r.json())["code"] == "100003"
            limit, remaining = r.headers["gw-ratelimit-limit"], r.headers["gw-ratelimit-remaining"]
            assert (limit, remaining) == ("2000", str(2000 - 2 - 3))
            assert 0 < int(r.headers["gw-ratelimit-reset"]) <= 30_000
        async with http.get(sim.rest_url + "/api/v1/positions") as r:  # unsigned: 400001, headers of its pool
            assert r.status == 401 and r.headers["gw-ratelimit-remaining"] == str(2000 - 5)


def _stop(symbol: str, price: str) -> OrderRequest:
    return OrderRequest(symbol, OrderSide.SELL, 1, reduce_only=True, stop=StopDirection.DOWN, stop_price=D(price))


async def test_open_orders_and_stops_are_read_past_the_first_page(
    sim: SimulatorServer, client: KucoinFuturesClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§4.4.6: ``/api/v1/orders`` and ``/api/v1/stopOrders`` answer a page object, 50 items unless ``pageSize``
    says more. The client read the first page only (the simulator served all on one): 60 stops across two
    symbols came back as 50 on the strict simulator. §4.4.1: at most 50 stops (300004) and 100 open limit orders
    (300001) per contract, which the simulator did not enforce."""
    for n in range(50):
        await client._send("POST", "/api/v1/orders", body=_stop("ETHUSDTM", f"{1500 + n}.00").body())
    for n in range(10):
        await client._send("POST", "/api/v1/orders", body=_stop("XBTUSDTM", f"{80000 + n}.0").body())
    with pytest.raises(InvalidRequestError) as refused:
        await client._send("POST", "/api/v1/orders", body=_stop("ETHUSDTM", "1400.00").body())
    assert refused.value.code == "300004"
    assert len(await client.open_stop_orders()) == 60
    assert len(await client.open_stop_orders("ETHUSDTM")) == 50
    monkeypatch.setattr(rest, "LIST_PAGE_SIZE", 7)  # nine pages: the loop, not one big page, finds them all
    assert len({o.id for o in await client.open_stop_orders()}) == 60
    monkeypatch.undo()

    for n in range(100):
        req = OrderRequest("ETHUSDTM", OrderSide.BUY, 1, OrderType.LIMIT, price=D(f"{1000 + n}.00"), leverage=10)
        await client._send("POST", "/api/v1/orders", body=req.body())
    over = OrderRequest("ETHUSDTM", OrderSide.BUY, 1, OrderType.LIMIT, price=D("999.00"), leverage=10)
    with pytest.raises(InvalidRequestError) as refused:
        await client._send("POST", "/api/v1/orders", body=over.body())
    assert refused.value.code == "300001"
    open_limits = await client.open_orders("ETHUSDTM")
    assert len(open_limits) == 100 and all(o.stop is None for o in open_limits)


async def test_order_fields_with_the_wrong_wire_type_are_refused(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§4.4.1 wire types: ``size`` a JSON integer of lots, prices decimal strings, flags booleans, ``timeInForce``
    GTC/IOC, ``clientOid`` ≤ 40 of [A-Za-z0-9_-]. The simulator took ``size`` 1.5 as 1, ``"reduceOnly":"false"``
    as true, ``"FOK"`` as GTC, leverage 5.5 as 5, ``"ordé"`` (str.isalnum) and numeric prices: a client bug of
    that kind passed every test here. Each is now 100001 and places nothing."""
    good = OrderRequest("ETHUSDTM", OrderSide.BUY, 1, OrderType.LIMIT, price=D("1900.00"), leverage=5).body()
    bad = {
        "size 1.5": good | {"size": 1.5},
        "size string": good | {"size": "2"},
        "size over maxOrderQty": good | {"size": 1_000_001},
        "numeric price": good | {"price": 1900.5},
        "exponent price": good | {"price": "1.9E+3"},
        "price over maxPrice": good | {"price": "1000000.01"},
        "string flag": good | {"postOnly": "false"},
        "FOK": good | {"timeInForce": "FOK"},
        "leverage 5.5": good | {"leverage": 5.5},
        "non-ASCII clientOid": good | {"clientOid": "ordé-1"},
        "41-char clientOid": good | {"clientOid": "a" * 41},
        "numeric stopPrice": good | {"stop": "down", "stopPrice": 1800, "stopPriceType": "MP"},
    }
    for label, body in bad.items():
        with pytest.raises(InvalidRequestError) as refused:
            await client._send("POST", "/api/v1/orders", body=body)
        assert refused.value.code == "100001", label
    bracket = good | {"triggerStopUpPrice": 2100, "triggerStopDownPrice": "1800.00", "stopPriceType": "MP"}
    with pytest.raises(InvalidRequestError):
        await client._send("POST", "/api/v1/st-orders", body=bracket)
    assert sim.state.orders == {}
    await client._send("POST", "/api/v1/orders", body=good | {"leverage": "5"})  # a leverage string is accepted
    assert len(sim.state.orders) == 1


def test_order_request_refuses_a_client_oid_kucoin_would_refuse() -> None:
    """§4.4.1 on the client side: a caller-supplied clientOid is checked before anything is sent. The old check
    (``re.match`` with ``$``) passed ``"abc\\n"``; nothing checked an explicit ``client_oid`` at all."""
    for oid in ("ordé-1", "a" * 41, "abc\n", "a b", ""):
        with pytest.raises(ValueError, match="clientOid"):
            OrderRequest("ETHUSDTM", OrderSide.BUY, 1, leverage=5, client_oid=oid)
    assert OrderRequest("ETHUSDTM", OrderSide.BUY, 1, leverage=5, client_oid="A_z-9" * 8).client_oid == "A_z-9" * 8
    with pytest.raises(ValueError, match="lots"):
        OrderRequest("ETHUSDTM", OrderSide.BUY, 1.5, leverage=5)  # type: ignore[arg-type]


async def test_bracket_trigger_prices_are_sent_in_plain_notation(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§4.4.3: ``triggerStopUpPrice``/``triggerStopDownPrice`` are price strings. ``str(Decimal)`` wrote
    ``"2.06E+3"`` for a Decimal held in exponent form (the order body already used plain notation)."""
    entry = await client.place_bracket(
        OrderRequest("ETHUSDTM", OrderSide.BUY, 10, leverage=10), take_profit=D("2.06E+3"), stop_loss=D("1.98E+3")
    )
    assert entry.filled_lots == 10
    legs = sorted((o.stop, o.stop_price) for o in await client.open_stop_orders("ETHUSDTM"))
    assert legs == [(StopDirection.DOWN, D("1980")), (StopDirection.UP, D("2060"))]


async def test_account_overview_needs_currency_usdt(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    """§4.2.1: the default currency is XBT. The simulator answered the USDT account to a bare request, so a
    client that forgot ``currency=USDT`` (and saw 0 equity on KuCoin) would have passed here."""
    bare = await client._call("GET", "/api/v1/account-overview")
    assert (bare["currency"], bare["accountEquity"]) == ("XBT", 0.0)
    overview = await client.account_overview()
    assert overview.equity == D("10000") and overview.available == D("10000")


async def test_kline_granularity_outside_the_documented_set_is_refused(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§4.1.3: granularity ∈ {1, 5, …, 10080} minutes (no 3, no month). The simulator answered ``[]`` to 3."""
    for bad in (3, 43200):
        with pytest.raises(InvalidRequestError) as refused:
            await client.klines("ETHUSDTM", bad, 0, 10_000_000)
        assert refused.value.code == "100001"
    assert await client.klines("ETHUSDTM", 5, 0, 10_000_000) == []


async def test_a_query_value_that_needs_encoding_is_refused_before_sending(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§2.2: the query is signed un-encoded and sent exactly as signed, so only values needing no encoding are
    safe. A raw space or ``&`` went out as is (a broken or different request); now nothing is sent."""
    before = len(sim.requests)
    for symbol in ("ETH USDTM", "ETHUSDTM&status=done", "ETHUSDTM#"):
        with pytest.raises(InvalidRequestError, match="percent-encoding"):
            await client.open_orders(symbol)
    with pytest.raises(InvalidRequestError, match="percent-encoding"):
        await client.cancel_order("1/../2 3")
    assert len(sim.requests) == before
    assert await client.open_orders("ETHUSDTM") == []


async def _collecting(client: KucoinFuturesClient, topics: list[str]) -> tuple[KucoinStream, asyncio.Task[None]]:
    got: list[StreamMessage] = []
    stream = KucoinStream(client, got.append, private=True, backoff_base_s=0.02, backoff_cap_s=0.05)
    stream.got = got  # type: ignore[attr-defined]
    for t in topics:
        await stream.subscribe(t, private=True)
    task = asyncio.create_task(stream.run())
    await asyncio.wait_for(stream.connected.wait(), 5)
    return stream, task


async def _until(cond: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not cond():
            await asyncio.sleep(0.01)


async def test_private_pushes_have_the_documented_subjects_and_fields(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§5.6.1–5.6.3 over a real socket. Before: a cancelled untriggered stop went out as an orderChange
    "canceled" (KuCoin: stopOrder "cancel"), a stop push carried ``size`` as a string and ``orderType`` "market"
    (KuCoin: a number and "stop"), a taker fill said status "open" (KuCoin: "match"), position.change carried 5
    fields (KuCoin: the whole position) and funding went out as position.change (KuCoin: position.settlement)."""
    stream, task = await _collecting(
        client, ["/contractMarket/advancedOrders", "/contractMarket/tradeOrders", "/contract/position:ETHUSDTM"]
    )
    got: list[StreamMessage] = stream.got  # type: ignore[attr-defined]
    try:
        await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 10, leverage=10))
        first = await client.place_order(_stop("ETHUSDTM", "1900.00"))
        await client.cancel_order(first.id)
        second = await client.place_order(_stop("ETHUSDTM", "1950.00"))
        sim.set_price("ETHUSDTM", D("1940.00"))
        sim.run_funding(1_700_006_400_000)
        await _until(lambda: any(m.subject == "position.settlement" for m in got))
        await _until(lambda: sum(m.data.get("type") == "filled" for m in got) >= 2)
    finally:
        await stream.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stops = [(m.data["orderId"], m.data["type"]) for m in got if m.subject == "stopOrder"]
    assert stops == [(first.id, "open"), (first.id, "cancel"), (second.id, "open"), (second.id, "triggered")]
    push = next(m.data for m in got if m.subject == "stopOrder")
    assert (push["size"], push["orderType"], push["stop"], push["stopPrice"], push["stopPriceType"]) == (
        1,
        "stop",
        "down",
        "1900.00",
        "MP",
    )
    orders = [m.data for m in got if m.subject == "orderChange"]
    assert first.id not in {o["orderId"] for o in orders}  # an untriggered stop never shows on the orders topic
    entry_fill = next(o for o in orders if o["type"] == "match")
    assert (entry_fill["status"], entry_fill["liquidity"], entry_fill["feeType"]) == ("match", "taker", "takerFee")
    assert all(isinstance(o["size"], str) and isinstance(o["filledSize"], str) for o in orders)
    assert any(o["orderId"] == second.id and o["type"] == "filled" for o in orders)  # triggered: orders topic
    change = next(m.data for m in got if m.subject == "position.change")
    assert change["changeReason"] == "positionChange" and change["currentQty"] == 10
    for name in ("avgEntryPrice", "markPrice", "posMargin", "liquidationPrice", "leverage", "realisedPnl"):
        assert name in change, name
    settlement = next(m.data for m in got if m.subject == "position.settlement")
    assert settlement["qty"] == 9 and settlement["fundingTime"] == 1_700_006_400_000
    assert settlement["fundingFee"] < 0 and settlement["settleCurrency"] == "USDT"


async def test_a_body_without_json_content_type_is_415(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    """§2.1/§3.2: a request with a body needs ``Content-Type: application/json`` (else HTTP 415, 415000); the
    simulator ignored the header. The client's own signed POST passes; the same bytes as text/plain do not."""
    from exchange.signing import compact_json, sign_headers

    assert client.credentials is not None
    body = compact_json({"symbol": "ETHUSDTM", "marginMode": "ISOLATED"})
    headers = sign_headers(
        client.credentials, "POST", "/api/v2/position/changeMarginMode", body, sim.config.clock()
    ) | {"Content-Type": "text/plain"}
    url = sim.rest_url + "/api/v2/position/changeMarginMode"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        assert (r.status, (await r.json())["code"]) == (415, "415000")
    await client.set_margin_mode("ETHUSDTM", "ISOLATED")


async def test_price_band_is_enforced_and_guarded_entries_stay_inside_it(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§6.1 / §3.2: a limit buy above ``buyLimit`` (≈ mark × 1.05) is 300011, a sell below ``sellLimit`` 300012;
    the simulator accepted any price. The guarded market entry (limit IOC at best ± slippage, settings allow up
    to 5 %) put a buy at 2100.01 with the mark at 2000: refused on KuCoin. It is now clamped to the band."""
    contract = await client.contract("ETHUSDTM")
    assert (contract["buyLimit"], contract["sellLimit"]) == (2100.0, 1900.0)
    for side, price, code in ((OrderSide.BUY, "2100.01", "300011"), (OrderSide.SELL, "1899.99", "300012")):
        req = OrderRequest("ETHUSDTM", side, 1, OrderType.LIMIT, price=D(price), leverage=5)
        with pytest.raises(InvalidRequestError) as refused:
            await client._send("POST", "/api/v1/orders", body=req.body())
        assert refused.value.code == code
    tick = D("0.01")
    bought = await client.market_entry_guarded("ETHUSDTM", OrderSide.BUY, 3, 5, D("5"), tick)
    assert bought.price == D("2100.00") and bought.filled_lots == 3
    sold = await client.market_entry_guarded("ETHUSDTM", OrderSide.SELL, 3, 5, D("5"), tick)
    assert sold.price == D("1900.00") and sold.filled_lots == 3
    narrow = await client.market_entry_guarded("ETHUSDTM", OrderSide.BUY, 1, 5, D("0.3"), tick)
    assert narrow.price == D("2006.01")  # inside the band: the slippage setting alone decides


async def test_a_symbol_left_in_cross_is_switched_to_the_mode_orders_carry(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§4.3.3: an order whose ``marginMode`` differs from the symbol's is refused (330005). The runtime never
    looked at the symbol's mode: a symbol switched to CROSS in KuCoin's app refused every ISOLATED entry and stop.
    Start-up now calls ``ensure_margin_mode`` for each symbol; with a position open the switch is refused."""
    sim.state.margin_modes["ETHUSDTM"] = "CROSS"
    with pytest.raises(InvalidRequestError) as refused:
        await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 1, leverage=5))
    assert refused.value.code == "330005"
    assert await client.ensure_margin_mode("ETHUSDTM", "ISOLATED") is True
    assert await client.ensure_margin_mode("ETHUSDTM", "ISOLATED") is False
    assert (await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 1, leverage=5))).filled_lots == 1
    with pytest.raises(InvalidRequestError) as busy:
        await client.ensure_margin_mode("ETHUSDTM", "CROSS")
    assert busy.value.code == "50002" and sim.state.margin_modes["ETHUSDTM"] == "ISOLATED"


async def test_a_key_version_other_than_the_one_sent_is_warned_about(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """§2.1: ``KC-API-KEY-VERSION`` is the version KuCoin shows for the key (``apiVersion`` of
    ``/api/v1/user/api-key``). The client sent its configured version without ever comparing; what KuCoin does
    with a mismatch is not documented, so the start-up check now warns (it does not refuse)."""
    from structlog.testing import capture_logs

    with capture_logs() as same:
        await client.check_key_permissions()
    sim.config.key_version = 3  # the key is a v3 key; the client is configured for 2
    with capture_logs() as other:
        assert await client.check_key_permissions() == ["General", "Futures"]
    assert [e["event"] for e in same if e["log_level"] == "warning"] == []
    warned = [e for e in other if e["log_level"] == "warning"]
    assert [(e["event"], e["key_version"], e["sent"]) for e in warned] == [("api_key.version_mismatch", "3", "2")]
