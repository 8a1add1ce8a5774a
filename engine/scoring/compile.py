"""Compile (or load from numba's cache) every entry point of the strategy core before anything is timed or traded.

The first start after an install compiles the core, ~30 s on a small VPS; later starts load it in about a second.
``python -m engine.scoring.compile`` does it ahead of time: ``./start.sh test`` runs it before the test suite, the
systemd unit before the bot (ExecStartPre) and the Dockerfile at build time. The bot calls it too, in a thread
before its warm-up, so a first start that has to compile keeps answering meanwhile.
"""

from __future__ import annotations

import sys
import time

from engine.config import default_strategy_config
from engine.config.strategy import StrategyConfig
from engine.jit import CACHE_DIR, prune_old_caches
from engine.models import Candle, timeframe_ms
from engine.scoring.pipeline import SymbolPipeline
from engine.scoring.series import decide_series

_BARS = 60  # a few confirmation buckets; the compile covers every branch whatever the data


def compile_strategy_core(cfg: StrategyConfig) -> float:
    """Run each compiled entry point once (the backtest's loop, the live per-candle path); the seconds it took."""
    start = time.perf_counter()
    step = timeframe_ms(cfg.timeframes.primary)
    first = 1_700_000_000_000 - 1_700_000_000_000 % timeframe_ms(cfg.timeframes.confirmation)
    candles = [Candle(first + i * step, 100.0, 101.0 + i % 3, 99.0, 100.0 + i % 7, 10.0 + i) for i in range(_BARS)]
    decide_series(cfg, "COMPILE", candles)
    pipe = SymbolPipeline(cfg, "COMPILE")
    pipe.on_confirmation_candle(candles[0])
    for c in candles:
        pipe.on_primary_candle(c, drawdown_pct=0.0)
    pipe.primary.update(Candle(candles[-1].ts + step, 100.0, 101.0, 99.0, 100.0, 1.0))
    pipe.primary.not_ready_reason()
    pipe.primary.net_move()
    pipe.reset()
    return time.perf_counter() - start


def main() -> int:
    print("strategy core: compiling (the first run after an install takes ~30 s; later ones load the cache)")
    seconds = compile_strategy_core(default_strategy_config())
    print(f"strategy core: ready in {seconds:.1f} s ({CACHE_DIR})")
    for old in prune_old_caches(CACHE_DIR):  # run at each install and upgrade: the sources' older caches go
        print(f"strategy core: removed the cache of other sources {old}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
