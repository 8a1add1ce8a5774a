"""Client-side request budget per KuCoin pool (reference §3.3): spend each endpoint's weight, slow down before
the pool is exhausted, and follow the ``gw-ratelimit-*`` headers the exchange sends back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

# (method, path or path prefix ending in "/") → (pool, weight); reference §4.8.
WEIGHTS: dict[tuple[str, str], tuple[str, int]] = {
    ("GET", "/api/v1/contracts/active"): ("public", 3),
    ("GET", "/api/v1/contracts/"): ("public", 3),
    ("GET", "/api/v1/ticker"): ("public", 2),
    ("GET", "/api/v1/kline/query"): ("public", 3),
    ("GET", "/api/v1/timestamp"): ("public", 2),
    ("GET", "/api/v1/status"): ("public", 4),
    ("GET", "/api/v1/mark-price/"): ("public", 3),
    ("GET", "/api/v1/trade/history"): ("public", 5),
    ("GET", "/api/v1/level2/snapshot"): ("public", 3),
    ("GET", "/api/v1/level2/depth20"): ("public", 5),
    ("GET", "/api/v1/level2/depth100"): ("public", 5),
    ("GET", "/api/v1/funding-rate/"): ("public", 2),
    ("POST", "/api/v1/bullet-public"): ("public", 10),
    ("POST", "/api/v1/bullet-private"): ("futures", 10),
    ("GET", "/api/v1/account-overview"): ("futures", 5),
    ("GET", "/api/v1/position"): ("futures", 2),
    ("GET", "/api/v1/positions"): ("futures", 2),
    ("GET", "/api/v2/position"): ("futures", 2),
    ("POST", "/api/v1/orders"): ("futures", 2),
    ("POST", "/api/v1/orders/test"): ("futures", 2),
    ("POST", "/api/v1/st-orders"): ("futures", 2),
    ("DELETE", "/api/v1/orders/"): ("futures", 1),
    ("DELETE", "/api/v3/orders"): ("futures", 10),
    ("DELETE", "/api/v1/stopOrders"): ("futures", 15),
    ("GET", "/api/v1/orders/byClientOid"): ("futures", 5),
    ("GET", "/api/v1/orders/"): ("futures", 5),
    ("GET", "/api/v1/orders"): ("futures", 2),
    ("GET", "/api/v1/stopOrders"): ("futures", 6),
    ("GET", "/api/v1/fills"): ("futures", 5),
    ("GET", "/api/v1/funding-history"): ("futures", 5),
    ("GET", "/api/v1/user/api-key"): ("management", 20),
    ("GET", "/api/v2/getCrossUserLeverage"): ("futures", 2),
    ("POST", "/api/v2/changeCrossUserLeverage"): ("futures", 2),
}


def weight_for(method: str, path: str, *, signed: bool) -> tuple[str, int]:
    """The pool and weight of one call (exact path first, then the longest matching prefix)."""
    exact = WEIGHTS.get((method, path))
    if exact is not None:
        return exact
    best: tuple[str, int] | None = None
    best_len = -1
    for (m, p), value in WEIGHTS.items():
        if m == method and p.endswith("/") and path.startswith(p) and len(p) > best_len:
            best, best_len = value, len(p)
    if best is not None:
        return best
    return ("futures", 2) if signed else ("public", 2)


@dataclass
class _Pool:
    window_start: float
    used: int = 0
    remaining_hint: int | None = None
    reset_at: float = 0.0


class RateBudget:
    """Spends weights per 30 s window; waits (never fails) when the next call would exceed the quota."""

    def __init__(
        self,
        quota: int = 2000,
        window_s: float = 30.0,
        *,
        headroom: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quota = quota
        self.window_s = window_s
        self.reserve = int(quota * headroom)
        self.clock = clock
        self.pools: dict[str, _Pool] = {}
        self.waited_s = 0.0
        self._locks: dict[str, asyncio.Lock] = {}  # one per pool: a wait for one pool never holds up another

    def delay_for(self, pool: str, weight: int) -> float:
        """Seconds to wait before spending ``weight`` in ``pool`` (0 when it fits)."""
        now = self.clock()
        p = self.pools.setdefault(pool, _Pool(now))
        if now - p.window_start >= self.window_s:
            p.window_start, p.used, p.remaining_hint = now, 0, None
        if p.remaining_hint is not None and p.remaining_hint < weight + self.reserve and now < p.reset_at:
            return p.reset_at - now
        if p.used + weight > self.quota - self.reserve:
            return p.window_start + self.window_s - now
        return 0.0

    async def acquire(self, pool: str, weight: int) -> None:
        """Spend ``weight`` in ``pool``, first waiting for the window if it would not fit. Calls to the same pool
        queue behind each other; a stop order (futures pool) never waits behind a spent public pool."""
        lock = self._locks.get(pool)
        if lock is None:
            lock = self._locks[pool] = asyncio.Lock()
        async with lock:
            delay = self.delay_for(pool, weight)
            if delay > 0:
                self.waited_s += delay
                await asyncio.sleep(delay)
                p = self.pools[pool]
                p.window_start, p.used, p.remaining_hint = self.clock(), 0, None
            self.pools[pool].used += weight

    def observe(self, pool: str, remaining: str | None, reset_ms: str | None) -> None:
        """Follow the exchange's own count from the ``gw-ratelimit-*`` headers."""
        if remaining is None or not remaining.isdigit():
            return
        p = self.pools.setdefault(pool, _Pool(self.clock()))
        p.remaining_hint = int(remaining)
        if reset_ms is not None and reset_ms.isdigit():
            p.reset_at = self.clock() + int(reset_ms) / 1000
