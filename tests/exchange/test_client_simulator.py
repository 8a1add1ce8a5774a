"""The real client against the simulator over loopback: auth, order types, reduce-only, stops, faults."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D

import pytest

from exchange.errors import (
    AuthError,
    InsufficientFundsError,
    InvalidRequestError,
    OrderNotFoundError,
    PermissionRefusedError,
    PositionEmptyError,
    RateLimitedError,
    RetryableError,
    TimestampError,
)
from exchange.models import OrderRequest, OrderSide, OrderStatus, OrderType, StopDirection
from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from exchange.simulator import SimulatorServer
from tests.exchange.conftest import KEY, PASSPHRASE, SECRET

BUY, SELL = OrderSide.BUY, OrderSide.SELL


async def test_signing_accepted_and_each_rejection_code(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    assert (await client.account_overview()).equity == D("10000")
    cases = [
        (Credentials(KEY, "wrong-secret", PASSPHRASE), "400004"),  # passphrase signed with the wrong secret
        (Credentials("nope", SECRET, PASSPHRASE), "400003"),
        (Credentials(KEY, SECRET, "wrong-pass"), "400004"),
    ]
    for creds, code in cases:
        async with KucoinFuturesClient(sim.rest_url, creds, max_attempts=1) as bad:
            with pytest.raises(AuthError) as info:
                await bad.account_overview()
            assert info.value.code == code
    v1 = Credentials(KEY, SECRET, PASSPHRASE, version=9)
    async with KucoinFuturesClient(sim.rest_url, v1, max_attempts=1) as bad:
        with pytest.raises(AuthError, match="400009"):
            await bad.positions()
    assert len(sim.requests) >= 5


async def test_skewed_clock_is_resynced_from_server_time(sim: SimulatorServer) -> None:
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), clock=lambda: __import__("time").time() - 60
    ) as skewed:
        # First call fails with 400002, the client resyncs its offset once and succeeds.
        assert (await skewed.account_overview()).available > 0
        assert abs(skewed.offset_ms - 60_000) < 2_000
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), max_attempts=1, clock=lambda: __import__("time").time() - 60
    ) as skewed:
        with pytest.raises(TimestampError):
            await skewed._send("GET", "/api/v1/positions")


async def test_market_order_fills_with_exact_fee_and_position(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    order = await client.place_order(OrderRequest("ETHUSDTM", BUY, 180, leverage=18))
    assert order.status is OrderStatus.DONE and order.filled_lots == 180
    # 2000 × (1 + 0.0002) rounded up to the tick: 2000.40; 180 lots × 0.01 ETH.
    assert order.filled_value == D("3600.7200")
    fills = await client.fills(order_id=order.id)
    assert [(f.price, f.lots, f.fee) for f in fills] == [(D("2000.40"), 180, D("2.16043200"))]
    pos = await client.position("ETHUSDTM")
    assert (pos.lots, pos.avg_entry) == (180, D("2000.4"))
    acct = await client.account_overview()
    assert acct.position_margin == D("200.04")
    assert acct.equity == D("10000") - D("2.160432") + D("1.8") * (D("2000") - D("2000.40"))


async def test_limit_rests_then_fills_as_maker_and_post_only_crossing_is_cancelled(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    resting = await client.place_order(OrderRequest("ETHUSDTM", BUY, 10, OrderType.LIMIT, D("1990.00"), leverage=10))
    assert resting.is_active
    assert [o.id for o in await client.open_orders("ETHUSDTM")] == [resting.id]
    sim.set_price("ETHUSDTM", D("1989.50"))
    done = await client.order_by_id(resting.id)
    assert done.status is OrderStatus.DONE and done.filled_lots == 10
    assert (await client.fills(order_id=resting.id))[0].fee == D("0.03980000")  # maker 0.02 %
    crossing = await client.place_order(
        OrderRequest("ETHUSDTM", BUY, 1, OrderType.LIMIT, D("2000.00"), leverage=10, post_only=True)
    )
    assert crossing.status is OrderStatus.DONE and crossing.cancel_exist and crossing.filled_lots == 0


async def test_reduce_only_never_increases_a_position(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    with pytest.raises(PositionEmptyError):
        await client.place_order(OrderRequest("ETHUSDTM", SELL, 5, reduce_only=True))
    await client.place_order(OrderRequest("ETHUSDTM", BUY, 10, leverage=10))
    with pytest.raises(PositionEmptyError):
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 5, reduce_only=True))  # same side
    trimmed = await client.place_order(OrderRequest("ETHUSDTM", SELL, 25, reduce_only=True))
    assert trimmed.filled_lots == 10 and trimmed.cancel_exist  # trimmed to the position, never flipped
    assert (await client.position("ETHUSDTM")).lots == 0


async def test_stop_market_triggers_on_mark_not_last(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    await client.place_order(OrderRequest("ETHUSDTM", BUY, 10, leverage=10))
    stop = await client.place_order(
        OrderRequest("ETHUSDTM", SELL, 10, reduce_only=True, stop=StopDirection.DOWN, stop_price=D("1980.00"))
    )
    assert [o.id for o in await client.open_stop_orders("ETHUSDTM")] == [stop.id]
    sim.set_price("ETHUSDTM", D("1970.00"), mark=D("1985.00"))  # last through the stop, mark not
    assert (await client.order_by_id(stop.id)).is_active
    sim.set_price("ETHUSDTM", D("1979.00"), mark=D("1979.50"))
    hit = await client.order_by_id(stop.id)
    assert hit.stop_triggered and hit.status is OrderStatus.DONE and hit.filled_lots == 10
    assert (await client.position("ETHUSDTM")).lots == 0
    assert await client.open_stop_orders("ETHUSDTM") == []


async def test_a_stop_swept_by_a_price_step_fills_at_its_trigger_and_one_gapped_past_at_the_price(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """A replay moves the price along a candle's path in steps (open, extremes, close). Inside a candle the market
    traded through every price of a step, so a stop on the way goes off at its trigger (filled 0.02 % worse, on the
    tick); it used to go off at the far end of the step, the candle's extreme (an ETH stop at 3122.35 filled at
    3107.06). Only a price that gaps (``swept`` False: a candle's open) fills a stop where it landed."""
    fills = []
    for swept in (True, False):
        sim.set_price("ETHUSDTM", D("2000.00"))
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 10, leverage=10))
        stop = await client.place_order(
            OrderRequest("ETHUSDTM", SELL, 10, reduce_only=True, stop=StopDirection.DOWN, stop_price=D("1990.00"))
        )
        sim.set_price("ETHUSDTM", D("1980.00"), swept=swept)
        assert (await client.position("ETHUSDTM")).lots == 0
        fills.append([f.price for f in await client.fills(order_id=stop.id)])
    assert fills == [[D("1989.60")], [D("1979.60")]]  # 1990.00 x 0.9998 = 1989.602; 1980.00 x 0.9998 = 1979.604


async def test_bracket_legs_one_cancels_the_other(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    entry = await client.place_bracket(
        OrderRequest("ETHUSDTM", BUY, 10, leverage=10), take_profit=D("2060.00"), stop_loss=D("1980.00")
    )
    assert entry.filled_lots == 10
    legs = await client.open_stop_orders("ETHUSDTM")
    assert sorted((o.stop, o.stop_price) for o in legs) == [
        (StopDirection.DOWN, D("1980.00")),
        (StopDirection.UP, D("2060.00")),
    ]
    sim.set_price("ETHUSDTM", D("2061.00"))
    assert (await client.position("ETHUSDTM")).lots == 0
    assert await client.open_stop_orders("ETHUSDTM") == []


async def test_close_order_cancel_all_and_cancel_by_client_oid(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    with pytest.raises(PositionEmptyError):
        await client.place_order(OrderRequest("ETHUSDTM", SELL, 0, close_order=True))
    await client.place_order(OrderRequest("ETHUSDTM", SELL, 7, leverage=5))
    a = await client.place_order(OrderRequest("ETHUSDTM", BUY, 1, OrderType.LIMIT, D("1900.00"), leverage=5))
    b = await client.place_order(OrderRequest("ETHUSDTM", BUY, 1, OrderType.LIMIT, D("1901.00"), leverage=5))
    s = await client.place_order(
        OrderRequest("ETHUSDTM", BUY, 7, reduce_only=True, stop=StopDirection.UP, stop_price=D("2100.00"))
    )
    assert await client.cancel_by_client_oid("ETHUSDTM", a.client_oid) == a.client_oid
    assert await client.cancel_all_orders("ETHUSDTM") == [b.id]
    assert await client.open_stop_orders("ETHUSDTM") != []  # cancel-all leaves stops alone
    assert await client.cancel_all_stop_orders("ETHUSDTM") == [s.id]
    closed = await client.place_order(OrderRequest("ETHUSDTM", BUY, 0, close_order=True))
    assert closed.filled_lots == 7 and (await client.position("ETHUSDTM")).lots == 0


async def test_margin_and_position_mode(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    assert await client.margin_mode("ETHUSDTM") == "ISOLATED"
    await client.set_margin_mode("ETHUSDTM", "CROSS")
    assert await client.margin_mode("ETHUSDTM") == "CROSS"
    with pytest.raises(InvalidRequestError, match="330005"):
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 1, leverage=5))  # still says ISOLATED
    await client.place_order(OrderRequest("ETHUSDTM", BUY, 1, leverage=5, margin_mode="CROSS"))
    with pytest.raises(InvalidRequestError, match="50002"):
        await client.set_margin_mode("ETHUSDTM", "ISOLATED")
    assert await client.position_mode() == 0
    with pytest.raises(InvalidRequestError):
        await client.set_position_mode(hedge=True)  # refused while a position is open
    await client.set_cross_leverage("ETHUSDTM", 8)
    assert await client.cross_leverage("ETHUSDTM") == 8
    with pytest.raises(InvalidRequestError, match="300016"):
        await client.set_cross_leverage("ETHUSDTM", 500)
    assert client.last_signed_ok_ms > 0


async def test_insufficient_balance_and_bad_parameters(client: KucoinFuturesClient) -> None:
    with pytest.raises(InsufficientFundsError):
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 100_000, leverage=5))
    with pytest.raises(InvalidRequestError, match="100003"):
        await client.place_order(OrderRequest("NOPEUSDTM", BUY, 1, leverage=5))
    with pytest.raises(InvalidRequestError, match="tickSize"):
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 1, OrderType.LIMIT, D("1999.999"), leverage=5))


async def test_rate_limit_storm_is_retried_with_backoff_then_succeeds(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    sim.faults.rate_limit_next(3)
    assert len(await client.positions()) == 0
    assert client.retries == 3
    sim.faults.rate_limit_next(10)
    with pytest.raises(RateLimitedError):
        await client.positions()  # bounded: five attempts, then the error surfaces


async def test_server_errors_on_reads_retry_and_on_writes_reconcile(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    sim.faults.server_error_next(2)
    assert (await client.account_overview()).equity == D("10000")
    sim.faults.server_error_next(1)  # the POST is refused before executing: the client finds nothing, re-sends
    order = await client.place_order(OrderRequest("ETHUSDTM", BUY, 3, leverage=5))
    assert order.filled_lots == 3
    assert (await client.position("ETHUSDTM")).lots == 3


async def test_lost_reply_never_produces_a_second_order(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    sim.faults.lose_reply_next(1, "/api/v1/orders")
    req = OrderRequest("ETHUSDTM", BUY, 4, leverage=5)
    order = await client.place_order(req)
    assert order.client_oid == req.client_oid and order.filled_lots == 4
    same = [o for o in sim.state.orders.values() if o.client_oid == req.client_oid]
    assert len(same) == 1
    assert (await client.position("ETHUSDTM")).lots == 4
    posts = [r for r in sim.requests if r[0] == "POST" and r[1] == "/api/v1/orders"]
    assert len(posts) == 1  # executed once; the retry asked by clientOid instead of re-posting


async def test_timeout_on_write_then_recovered(sim: SimulatorServer) -> None:
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), timeout_s=0.2, backoff_base_s=0.01
    ) as slow:
        sim.faults.latency_ms = 400
        task = asyncio.create_task(slow.place_order(OrderRequest("ETHUSDTM", BUY, 2, leverage=5)))
        await asyncio.sleep(0.5)
        sim.faults.latency_ms = 0
        order = await task
    assert order.filled_lots == 2
    assert (await asyncio.wait_for(asyncio.sleep(0, result=len(sim.state.fills)), 1)) == 1


async def test_api_key_with_withdrawal_is_refused(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    assert await client.check_key_permissions() == ["General", "Futures"]
    sim.keys[KEY] = sim.keys[KEY].__class__(KEY, SECRET, PASSPHRASE, ("General", "Futures", "Transfer"))
    with pytest.raises(PermissionRefusedError, match="Transfer"):
        await client.check_key_permissions()
    sim.keys[KEY] = sim.keys[KEY].__class__(KEY, SECRET, PASSPHRASE, ("General",))
    with pytest.raises(PermissionRefusedError, match="Futures"):
        await client.check_key_permissions()
    with pytest.raises(AuthError, match="400007"):
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 1, leverage=5))


async def test_shadow_mode_orders_test_places_nothing(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    checked = await client.place_order(OrderRequest("ETHUSDTM", BUY, 5, leverage=5), test=True)
    assert checked.client_oid and sim.state.orders == {}
    with pytest.raises(InsufficientFundsError):
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 100_000, leverage=5), test=True)


async def test_funding_and_liquidation(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    await client.place_order(OrderRequest("ETHUSDTM", BUY, 100, leverage=10))
    sim.set_price("ETHUSDTM", D("2000.00"), mark=D("2010.00"))
    sim.run_funding(1_766_030_400_000)
    hist = await client.funding_history("ETHUSDTM")
    assert hist[0]["funding"] == pytest.approx(-0.201)  # −(2010 × 100 × 0.01) × 0.0001: longs pay
    pos = await client.position("ETHUSDTM")
    assert pos.liquidation_price is not None and pos.liquidation_price < D("1900")
    sim.set_price("ETHUSDTM", D("1700.00"))
    assert (await client.position("ETHUSDTM")).lots == 0
    assert sim.state.fills[-1].trade_type == "liquid"


async def test_auto_deleverage_and_partial_liquidation_take_lots_without_an_order(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """Reference §4.5 / §5.6.3: the exchange takes lots itself; the fills say ``adl`` (no fee) or ``liquid`` (taker
    fee), the position push says why, and the trader's stop stays as it was."""
    pushes: list[str] = []
    sim.state.listeners.append(lambda kind, d: pushes.append(d["change"]) if kind == "position" else None)
    await client.place_order(OrderRequest("ETHUSDTM", BUY, 100, leverage=10))
    stop = await client.place_order(
        OrderRequest("ETHUSDTM", SELL, 100, reduce_only=True, stop=StopDirection.DOWN, stop_price=D("1900"))
    )
    sim.state.force_reduce("ETHUSDTM", 30, D("2001.50"), trade_type="adl")
    sim.state.force_reduce("ETHUSDTM", 20, D("1999.00"), trade_type="liquid")
    assert (await client.position("ETHUSDTM")).lots == 50
    adl, liquid = (await client.fills(symbol="ETHUSDTM"))[:2][::-1]
    assert (adl.trade_type, adl.lots, adl.price, adl.fee, adl.side) == ("adl", 30, D("2001.50"), D(0), SELL)
    assert (liquid.trade_type, liquid.lots, liquid.fee) == ("liquid", 20, D("0.23988000"))  # 399.80 × 0.0006
    assert pushes[-2:] == ["adl", "liquidation"]
    assert [(o.id, o.lots) for o in await client.open_stop_orders("ETHUSDTM")] == [(stop.id, 100)]


async def test_an_order_matched_after_the_answer_reads_open_until_it_is(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    sim.faults.match_lag_next(1, 200)
    order = await client.place_order(OrderRequest("ETHUSDTM", BUY, 5, leverage=5))
    assert order.is_active and order.filled_lots == 0 and (await client.position("ETHUSDTM")).lots == 0
    await asyncio.sleep(0.3)
    done = await client.order_by_id(order.id)
    assert not done.is_active and done.filled_lots == 5 and (await client.position("ETHUSDTM")).lots == 5


async def test_klines_page_by_time(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    from engine.models import Candle

    for i in range(1200):
        sim.push_candle("ETHUSDTM", "5min", Candle(i * 300_000, 1, 2, 0.5, 1.5, 10))
    rows = await client.klines("ETHUSDTM", 5, 0, 1199 * 300_000)
    assert len(rows) == 1200 and rows[0][0] == 0 and rows[-1][0] == 1199 * 300_000


async def test_connection_refused_is_retryable() -> None:
    async with KucoinFuturesClient("http://127.0.0.1:9", None, max_attempts=2, backoff_base_s=0.01) as dead:
        with pytest.raises(RetryableError):
            await dead.server_time()


async def test_funding_settles_by_itself_at_0400_1200_2000_utc(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    day = 1_766_016_000_000  # 2025-12-18 00:00 UTC
    sim.set_price("ETHUSDTM", D("2000.00"), ts_ms=day + 3_600_000)  # 01:00
    await client.place_order(OrderRequest("ETHUSDTM", SELL, 10, leverage=5))
    sim.set_price("ETHUSDTM", D("2000.00"), ts_ms=day + 4 * 3_600_000 - 1)  # 03:59:59.999: not yet
    assert await client.funding_history("ETHUSDTM") == []
    sim.set_price("ETHUSDTM", D("2000.00"), ts_ms=day + 21 * 3_600_000)  # 21:00: 04:00, 12:00, 20:00 passed
    hist = await client.funding_history("ETHUSDTM")
    assert [h["timePoint"] - day for h in hist] == [4 * 3_600_000, 12 * 3_600_000, 20 * 3_600_000]
    assert all(h["funding"] == pytest.approx(0.02) for h in hist)  # shorts receive 2000 × 10 × 0.01 × 0.0001


async def test_hedge_mode_keeps_long_and_short_apart(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    await client.set_position_mode(hedge=True)
    assert await client.position_mode() == 1
    with pytest.raises(InvalidRequestError, match="positionSide"):
        await client.place_order(OrderRequest("ETHUSDTM", BUY, 1, leverage=5))
    await client.place_order(OrderRequest("ETHUSDTM", BUY, 10, leverage=5, position_side="LONG"))
    await client.place_order(OrderRequest("ETHUSDTM", SELL, 4, leverage=5, position_side="SHORT"))
    both = {p.position_side: p.lots for p in await client.symbol_positions("ETHUSDTM")}
    assert both == {"LONG": 10, "SHORT": -4}  # not netted
    # Selling the LONG side closes it and can never open a short beyond it.
    closing = await client.place_order(OrderRequest("ETHUSDTM", SELL, 25, position_side="LONG"))
    assert closing.filled_lots == 10 and closing.cancel_exist
    assert {p.position_side: p.lots for p in await client.symbol_positions("ETHUSDTM")} == {"SHORT": -4}
    with pytest.raises(InvalidRequestError):
        await client.set_position_mode(hedge=False)  # refused while the short is open


async def test_hedge_mode_orders_funding_and_optionally_fills_name_their_position_side(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """Reference §4.4.6 (orders: positionSide on newer accounts and in hedge mode), §4.6 (a funding record's
    ``context`` names its positionSide), §4.5 (fills list no positionSide: only an account whose fills carry it)."""
    day = 1_766_016_000_000
    sim.set_price("ETHUSDTM", D("2000.00"), ts_ms=day + 3_600_000)
    await client.set_position_mode(hedge=True)
    long = await client.place_order(OrderRequest("ETHUSDTM", BUY, 10, leverage=5, position_side="LONG"))
    short = await client.place_order(OrderRequest("ETHUSDTM", SELL, 4, leverage=5, position_side="SHORT"))
    assert (long.position_side, short.position_side) == ("LONG", "SHORT")
    assert (await client.order_by_id(short.id)).position_side == "SHORT"
    assert {f.position_side for f in await client.fills(symbol="ETHUSDTM")} == {None}  # as §4.5 lists them
    sim.state.fills_position_side = True
    sides = {f.order_id: f.position_side for f in await client.fills(symbol="ETHUSDTM")}
    assert sides == {long.id: "LONG", short.id: "SHORT"}
    sim.set_price("ETHUSDTM", D("2000.00"), ts_ms=day + 5 * 3_600_000)  # 04:00 settles both sides
    records = await client.funding_history("ETHUSDTM")
    assert sorted((json.loads(r["context"])["positionSide"], r["positionQty"], r["funding"]) for r in records) == [
        ("LONG", 10, pytest.approx(-0.02)),
        ("SHORT", -4, pytest.approx(0.008)),
    ]


async def test_server_errors_can_be_aimed_at_one_endpoint(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    """A 503 storm on the funding history alone: the other reads go through, that one fails past the retries."""
    sim.faults.server_error_next(50, "/api/v1/funding-history")
    assert (await client.account_overview()).equity == D("10000")
    with pytest.raises(RetryableError):
        await client.funding_history("ETHUSDTM")
    assert sim.faults.server_error_remaining == 45  # five attempts, each refused


async def test_duplicate_client_oid_returns_the_existing_order(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    req = OrderRequest("ETHUSDTM", BUY, 2, OrderType.LIMIT, D("1990.00"), leverage=5, client_oid="dup-0001")
    first = await client.place_order(req)
    again = await client.place_order(req)  # the same intent sent twice: 300018, answered with the known order
    assert again.id == first.id
    assert len([o for o in sim.state.orders.values() if o.client_oid == "dup-0001"]) == 1
    await client.cancel_order(first.id)
    reused = await client.place_order(req)  # once the first is done, the id may be reused (reference §6.11)
    assert reused.id != first.id and reused.is_active


@pytest.mark.parametrize("kind", ["no_data", "truncated"])
async def test_a_garbled_success_reply_to_an_order_is_resolved_by_client_oid(
    sim: SimulatorServer, client: KucoinFuturesClient, kind: str
) -> None:
    """The order executed, but the answer is a success envelope without ``data`` (reference §3.1, seen in the
    wild) or JSON cut short: the client asks for the clientOid and returns that order; never a crash (the
    engine would not know its position) and never a second order."""
    sim.faults.garble_reply_next(1, "/api/v1/orders", kind)
    req = OrderRequest("ETHUSDTM", BUY, 3, leverage=5)
    order = await client.place_order(req)
    assert order.client_oid == req.client_oid and order.filled_lots == 3
    assert len([o for o in sim.state.orders.values() if o.client_oid == req.client_oid]) == 1
    assert (await client.position("ETHUSDTM")).lots == 3


@pytest.mark.parametrize("kind", ["no_data", "truncated"])
async def test_a_garbled_reply_whose_order_the_query_side_does_not_show_yet_is_not_sent_twice(
    sim: SimulatorServer, kind: str
) -> None:
    """Found by the fault soak (tests/chaos/test_soak.py): the entry executed, its reply came back garbled, and
    the lookup by clientOid right after it answered 100004 (the query side lagging, as right after a placement).
    The client re-sent the entry at once; the first, a filled order, no longer blocks its clientOid: two orders,
    a doubled position. A garbled reply is an unanswered request: an order that can add exposure waits out the
    grace and looks again before it is re-sent."""
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), timeout_s=0.3, backoff_base_s=0.01, backoff_cap_s=0.02
    ) as c:
        sim.faults.garble_reply_next(1, "/api/v1/orders", kind)
        sim.faults.order_lag_next(1)
        req = OrderRequest("ETHUSDTM", BUY, 3, leverage=5)
        order = await c.place_order(req)
        assert order.client_oid == req.client_oid and order.filled_lots == 3
        assert len([o for o in sim.state.orders.values() if o.client_oid == req.client_oid]) == 1
        assert (await c.position("ETHUSDTM")).lots == 3


async def test_an_entry_still_in_flight_after_the_timeout_is_never_sent_twice(sim: SimulatorServer) -> None:
    """The POST times out while the exchange still holds it; the lookup by clientOid finds nothing yet. Sent again
    at once (even with the same clientOid: the first, a filled market order, is no longer active, so 300018 does
    not stop it), the entry would double the position when the first lands. An order that can add exposure is
    re-sent only after a grace (3 × the request timeout) and one more look, which finds the first."""
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), timeout_s=0.3, backoff_base_s=0.01, backoff_cap_s=0.02
    ) as c:
        sim.faults.delay_next(1, 700, "/api/v1/orders")  # only the POST itself is slow
        req = OrderRequest("ETHUSDTM", BUY, 3, leverage=5)
        order = await c.place_order(req)
        assert order.client_oid == req.client_oid and order.filled_lots == 3
        await asyncio.sleep(0.8)  # whatever was still on its way has landed by now
        assert len([o for o in sim.state.orders.values() if o.client_oid == req.client_oid]) == 1
        assert (await c.position("ETHUSDTM")).lots == 3
        # A reduce-only close is re-sent without the grace: it can never add exposure, a missing close is worse.
        sim.faults.delay_next(1, 700, "/api/v1/orders")
        close = await c.place_order(OrderRequest("ETHUSDTM", SELL, 3, reduce_only=True))
        assert close.filled_lots == 3
        await asyncio.sleep(0.7)
        assert (await c.position("ETHUSDTM")).lots == 0


async def test_the_per_endpoint_limit_200002_is_waited_out_not_a_rejected_order(sim: SimulatorServer) -> None:
    """200002 (HTTP 200: too many requests to this endpoint, blocked 10 s; reference §3.2) is a rate limit: the
    client waits the block out and sends again, instead of reporting the order as refused."""
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), backoff_base_s=0.01, endpoint_block_s=0.2
    ) as c:
        sim.faults.rate_limit_next(1, code="200002")
        loop = asyncio.get_running_loop()
        started = loop.time()
        order = await c.place_order(OrderRequest("ETHUSDTM", BUY, 2, leverage=5))
        assert order.filled_lots == 2 and loop.time() - started >= 0.2
        sim.faults.rate_limit_next(1, code="200002")
        assert (await c.position("ETHUSDTM")).lots == 2  # reads wait it out too
    assert len([o for o in sim.state.orders.values() if o.side == "buy"]) == 1


async def test_an_accepted_order_the_query_side_does_not_show_yet_is_not_reported_as_failed(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """The POST answers with an orderId, but the order query right after says 100004 (not there yet; reported for
    KuCoin in ccxt#23324). The order exists: the client asks again instead of raising "not found", which made
    the engine record a filled entry as failed and a placed stop as missing."""
    sim.faults.order_lag_next(2)
    req = OrderRequest("ETHUSDTM", BUY, 3, leverage=5)
    order = await client.place_order(req)
    assert order.client_oid == req.client_oid and order.filled_lots == 3
    assert len([o for o in sim.state.orders.values() if o.client_oid == req.client_oid]) == 1
    sim.faults.order_lag_next(50)  # never visible while we ask: answered with what was accepted, its id
    req2 = OrderRequest("ETHUSDTM", BUY, 1, leverage=5)
    accepted = await client.place_order(req2)
    sim.faults.reset()
    assert accepted.id == sim.state.by_client_oid(req2.client_oid).id  # type: ignore[union-attr]
    assert accepted.is_active and accepted.filled_lots == 0


async def test_a_gateway_timeout_on_an_entry_is_not_a_refusal(sim: SimulatorServer) -> None:
    """HTTP 504 from the gateway: it gave up waiting, the exchange behind it may still execute the order. Like an
    unanswered request, an order that can add exposure is re-sent only after the grace and one more lookup (it
    was re-sent at once, and both executed)."""
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), timeout_s=0.3, backoff_base_s=0.01, backoff_cap_s=0.02
    ) as c:
        sim.faults.gateway_timeout_next(1, 400, "/api/v1/orders")
        req = OrderRequest("ETHUSDTM", BUY, 3, leverage=5)
        order = await c.place_order(req)
        assert order.client_oid == req.client_oid and order.filled_lots == 3
        await asyncio.sleep(0.6)  # whatever was still on its way has landed by now
        assert len([o for o in sim.state.orders.values() if o.client_oid == req.client_oid]) == 1
        assert (await c.position("ETHUSDTM")).lots == 3


async def test_an_unknown_client_oid_answered_with_null_data_is_not_found(
    sim: SimulatorServer, client: KucoinFuturesClient
) -> None:
    """KuCoin has been seen to answer an unknown clientOid with success and ``"data": null`` instead of 100004. Read
    as an order it raised a TypeError from the lost-reply check, so a POST refused by a 503 was never re-sent."""
    sim.unknown_order_as_null = True
    with pytest.raises(OrderNotFoundError):
        await client.order_by_client_oid("en-never-placed")
    sim.faults.server_error_next(1)  # the POST is refused before executing: the lookup says null, the client re-sends
    order = await client.place_order(OrderRequest("ETHUSDTM", BUY, 3, leverage=5))
    assert order.filled_lots == 3 and (await client.position("ETHUSDTM")).lots == 3
    assert len([o for o in sim.state.orders.values() if o.client_oid == order.client_oid]) == 1
