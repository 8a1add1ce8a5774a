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
