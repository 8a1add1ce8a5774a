"""One candle close across the whole KuCoin perpetual universe: 542 symbols × 2 timeframes of indicators,
scoring and gates, fed with the shared series (the four real symbols' data cycled), and the memory it holds.

    .venv/bin/python -m bench.universe [--json FILE]
"""

from __future__ import annotations

import json
import resource
import time

from bench.common import emit, parse
from engine.config import default_strategy_config
from engine.heap import settle_long_lived
from engine.marketdata.aggregate import CandleAggregator
from engine.marketdata.candle_files import load_candles
from engine.scoring.pipeline import SymbolPipeline

SOURCES = ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM")
PRIMARY_WARMUP = 300  # 5min bars (≥ the 200 the spec needs)
CLOSES = 30  # measured candle closes after the warm-up


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    args = parse(__doc__ or "")
    cfg = default_strategy_config()
    symbols = json.loads((args.data_dir / "perp_symbols.json").read_text())["symbols"]
    series = {s: load_candles(args.data_dir, s, "5min") for s in SOURCES}
    confirm = {s: load_candles(args.data_dir, s, "30min") for s in SOURCES}
    # Start the primary warm-up on a 30min boundary after ≥ 200 closed 30min candles of history.
    first = {
        s: next(
            i
            for i, c in enumerate(series[s])
            if c.ts % 1_800_000 == 0 and sum(1 for k in confirm[s] if k.ts + 1_800_000 <= c.ts) >= 200
        )
        for s in SOURCES
    }
    before = rss_mb()
    t0 = time.perf_counter()
    pipes = []
    for i, sym in enumerate(symbols):
        src = SOURCES[i % 4]
        pipe = SymbolPipeline(cfg, sym)
        start = series[src][first[src]].ts
        for bar in confirm[src]:
            if bar.ts + 1_800_000 <= start:
                pipe.on_confirmation_candle(bar)
        pipes.append((pipe, CandleAggregator("5min", "30min"), series[src][first[src] :]))

    def close_bar(k: int) -> None:
        for pipe, agg, candles in pipes:
            bar = candles[k]
            conf = agg.update(bar)
            if conf is not None:
                pipe.on_confirmation_candle(conf)
            pipe.on_primary_candle(bar, drawdown_pct=0.0)

    for k in range(PRIMARY_WARMUP):
        close_bar(k)
    warm_s = time.perf_counter() - t0
    settle_long_lived()  # as the runtime does after its warm-up
    held = rss_mb() - before
    times = []
    for k in range(PRIMARY_WARMUP, PRIMARY_WARMUP + CLOSES):
        t = time.perf_counter()
        close_bar(k)
        times.append(time.perf_counter() - t)
    times.sort()
    median_ms, p95_ms = times[len(times) // 2] * 1e3, times[int(len(times) * 0.95)] * 1e3
    mb = held
    rows = [
        ("symbols × timeframes", f"{len(symbols)} × 2"),
        ("one candle close, median", f"{median_ms:8.1f} ms (target < 100 ms)"),
        ("one candle close, p95", f"{p95_ms:8.1f} ms"),
        ("memory held by the universe (RSS)", f"{mb:8.1f} MB (target < 200 MB)"),
        ("warm-up (200 × 30min + 300 × 5min)", f"{warm_s:8.1f} s"),
    ]
    figures = {"symbols": len(symbols), "close_ms_median": median_ms, "close_ms_p95": p95_ms, "memory_mb": mb}
    ratios = {"vs_target_100ms": 100 / median_ms, "vs_target_200mb": 200 / mb}
    emit("Universe: indicators + scoring + gates at one candle close", rows, figures, ratios, args.json)


if __name__ == "__main__":
    main()
