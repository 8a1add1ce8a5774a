"""The simulator side of ``bench.latency``, in its own process (as the real exchange is): the KuCoin-compatible
simulator with every symbol of the plan, plus two loopback-only bench routes that move the market in a burst and
return, per symbol, the monotonic instant just before its message was handed to the server.

    python -m bench.latency_sim PLAN_DIR   (prints ``READY <url>`` once listening)

``time.CLOCK_MONOTONIC`` is system-wide on Linux, so these instants compare with the client process's own.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.models import Candle
from exchange.simulator import SimulatorConfig, SimulatorServer

KEY, SECRET, PASSPHRASE = "bench-key", "bench-secret", "bench-pass"


def mono() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class BenchSimulator(SimulatorServer):
    def __init__(self, plan_dir: Path) -> None:
        plan = json.loads((plan_dir / "plan.json").read_text())
        super().__init__(
            SimulatorConfig(
                api_key=KEY,
                api_secret=SECRET,
                api_passphrase=PASSPHRASE,
                contracts_file=plan_dir / "contracts.json",
                symbols=tuple(plan["symbols"]),
            )
        )
        self.rounds: dict[str, list[Candle]] = {s: [Candle(*r) for r in rows] for s, rows in plan["rounds"].items()}
        for sym, price in plan["prices"].items():
            self.set_price(sym, Decimal(price))

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/sim/bench/prices", self._bench_prices)
        app.router.add_post("/sim/bench/candles", self._bench_candles)
        return app

    async def _bench_prices(self, request: web.Request) -> web.Response:
        """Mark (and last) price ticks for the given symbols, one after another as the exchange would push them."""
        body = await request.json()
        prices: dict[str, Any] = body["prices"]
        sent = {}
        async for sym in spread_out(list(prices), float(body.get("spread_s", 0)), seed=len(prices)):
            sent[sym] = mono()
            self.set_price(sym, Decimal(str(prices[sym])))
        return web.json_response({"sent": sent})

    async def _bench_candles(self, request: web.Request) -> web.Response:
        """Every symbol's candle number ``round`` on the limitCandle topic: the push that closes the one before."""
        body = await request.json()
        k = int(body["round"])
        sent = {}
        async for sym in spread_out(list(self.rounds), float(body.get("spread_s", 0)), seed=k):
            sent[sym] = mono()
            self.push_candle(sym, "5min", self.rounds[sym][k])
        return web.json_response({"sent": sent})


async def spread_out(symbols: list[str], spread_s: float, seed: int) -> AsyncIterator[str]:
    """Yield the symbols at once (spread 0: every push in one burst, the worst case) or, as KuCoin's ~1 push/s
    per topic does with unsynchronised phases, in a seeded random order evenly over ``spread_s`` seconds."""
    if spread_s <= 0:
        for sym in symbols:
            yield sym
        return
    order = symbols[:]
    random.Random(seed).shuffle(order)
    t0 = mono()
    for i, sym in enumerate(order):
        delay = t0 + spread_s * i / len(order) - mono()
        if delay > 0:
            await asyncio.sleep(delay)
        yield sym


async def serve(plan_dir: Path) -> None:
    sim = BenchSimulator(plan_dir)
    await sim.start("127.0.0.1", 0)
    print(f"READY {sim.rest_url}", flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def stdin_closed() -> None:  # the parent closed stdin: time to stop
        if not done.done():
            done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), stdin_closed)
    await done
    await sim.stop()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
