"""Drive the simulator's prices from recorded candles with a realistic intrabar path."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from engine.marketdata.candle_files import load_candles
from engine.models import Candle, timeframe_ms
from exchange.simulator.server import SimulatorServer


def intrabar_path(c: Candle) -> list[float]:
    """open → nearer extreme → farther extreme → close, as a price would plausibly travel."""
    if abs(c.open - c.low) <= abs(c.high - c.open):
        return [c.open, c.low, c.high, c.close]
    return [c.open, c.high, c.low, c.close]


def opening_candle(c: Candle) -> Candle:
    """The candle as KuCoin first pushes it, at its first trade: the open, no range yet."""
    return Candle(c.ts, c.open, c.open, c.open, c.open, 0.0)


async def replay_files(
    sim: SimulatorServer,
    data_dir: Path,
    symbols: tuple[str, ...],
    speed: str,
    interval: str = "5min",
    *,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Replay each symbol's candles; ``speed`` is N × real time or ``max``.

    At ``max`` the market does not wait for anyone, so a bot in the same process would place its stop several
    simulated bars after its entry had filled, and a paper result would show trades no real bot could have
    had. ``settle`` (given by a bot that shares the loop) is awaited after every price step and candle push
    and returns once the bot has handled all of it: at ``max`` the replay runs as fast as the bot keeps up.
    """
    series = {s: load_candles(data_dir, s, interval) for s in symbols}
    step_s = timeframe_ms(interval) / 1000
    delay = 0.0 if speed == "max" else step_s / float(speed) / 4

    paced = delay == 0.0 and settle is not None

    async def pause() -> None:
        if paced and settle is not None:
            await settle()
        else:
            await asyncio.sleep(delay)

    for bars in zip(*series.values(), strict=False):
        for k in range(4):
            for sym, bar in zip(series, bars, strict=True):
                # Inside the bar the price moves through every level on its way (k > 0); the open may gap.
                price = Decimal(repr(intrabar_path(bar)[k]))
                sim.set_price(sym, price, ts_ms=bar.ts + k * int(step_s * 250), swept=k > 0)
                if k == 0:  # the bar's first trade: KuCoin's first push of the new candle closes the one before
                    sim.push_candle(sym, interval, opening_candle(bar), final=False)
                elif k == 3:
                    sim.push_candle(sym, interval, bar)
            await pause()
