"""The client's per-pool budget: weights from the reference, waits before exhaustion, follows the headers."""

from __future__ import annotations

from exchange.ratelimit import RateBudget, weight_for
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer


def test_weights_follow_the_reference() -> None:
    assert weight_for("DELETE", "/api/v1/stopOrders", signed=True) == ("futures", 15)
    assert weight_for("DELETE", "/api/v1/orders/123", signed=True) == ("futures", 1)
    assert weight_for("GET", "/api/v1/orders/byClientOid", signed=True) == ("futures", 5)
    assert weight_for("GET", "/api/v1/contracts/ETHUSDTM", signed=False) == ("public", 3)
    assert weight_for("GET", "/api/v2/unknown", signed=True) == ("futures", 2)


def test_budget_waits_before_the_pool_is_exhausted() -> None:
    now = [0.0]
    budget = RateBudget(quota=100, window_s=30, headroom=0.1, clock=lambda: now[0])
    budget.delay_for("futures", 1)  # opens the window at t = 0
    budget.pools["futures"].used = 85
    assert budget.delay_for("futures", 5) == 0.0
    assert budget.delay_for("futures", 6) == 30.0  # 85 + 6 > 100 − 10 reserve: wait for the window
    now[0] = 31.0
    assert budget.delay_for("futures", 50) == 0.0  # a new window
    budget.observe("futures", "3", "2000")
    assert budget.delay_for("futures", 1) == 2.0  # the exchange says 3 left: wait for its reset


async def test_client_reads_the_exchange_headers(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    await client.positions()
    pool = client.budget.pools["futures"]
    assert pool.used == 2 and pool.remaining_hint is not None and pool.remaining_hint <= 2000


async def test_a_wait_in_one_pool_never_holds_up_another(sim: SimulatorServer) -> None:
    """The public pool is spent (a kline backfill, say) and its next call must wait for the window; a stop order
    on the futures pool, with its quota untouched, goes out at once instead of queueing behind that wait."""
    import asyncio
    import time
    from decimal import Decimal

    from exchange.models import OrderRequest, OrderSide, StopDirection
    from exchange.signing import Credentials
    from tests.exchange.conftest import KEY, PASSPHRASE, SECRET

    budget = RateBudget(quota=100, window_s=5.0)
    async with KucoinFuturesClient(sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), budget=budget) as c:
        await c.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 5, leverage=5))
        budget.delay_for("public", 1)
        budget.pools["public"].used = 90  # the public pool is at its reserve
        waiting = asyncio.create_task(c.server_time())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # it waits for the public window, as it should
        started = time.monotonic()
        stop = OrderRequest(
            "ETHUSDTM", OrderSide.SELL, 5, reduce_only=True, stop=StopDirection.DOWN, stop_price=Decimal("1900.00")
        )
        placed = await asyncio.wait_for(c.place_order(stop), timeout=4.0)
        assert placed.is_active and time.monotonic() - started < 1.0
        waiting.cancel()
