"""``./start.sh fetch-candles``: recent KuCoin futures candles and contract specs, written in the shape of
``shared/data/kucoin-futures`` so the backtest and the paper replay can run on a fresh server that has no recorded
data. Public endpoints only: no API key is needed or read.

    ./start.sh fetch-candles --symbols ETHUSDTM,XBTUSDTM --days 30 --out data/candles
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.marketdata.candle_files import load_candle_file
from engine.marketdata.klines import closed_candles
from engine.models import Candle, timeframe_ms
from engine.risk.limits import DAY_MS
from exchange.errors import ExchangeError
from exchange.rest import KucoinFuturesClient

KUCOIN_FUTURES = "https://api-futures.kucoin.com"


class FetchError(Exception):
    """A request the exchange cannot answer (an unknown symbol, say): one line, nothing half-written."""


@dataclass(frozen=True, slots=True)
class Fetched:
    path: Path
    symbol: str
    interval: str
    candles: int
    missing: int  # bars absent inside the range (kept as gaps, never filled)
    first_ts: int | None
    last_ts: int | None

    def line(self) -> str:
        if self.first_ts is None or self.last_ts is None:
            return f"{self.symbol} {self.interval}: no candles in the range -> {self.path}"
        span = f"{_utc(self.first_ts)} -> {_utc(self.last_ts)} UTC"
        return f"{self.symbol} {self.interval}: {self.candles} candles, {span}, {self.missing} missing -> {self.path}"


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ms // 1000))


def closed_range(now_ms: int, interval: str, days: int) -> tuple[int, int]:
    """Open times of the first and the last CLOSED candle of the ``days`` before ``now_ms``."""
    step = timeframe_ms(interval)
    last = now_ms - now_ms % step - step
    return last - days * DAY_MS + step, last


def candle_document(symbol: str, interval: str, days: int, candles: list[Candle]) -> dict[str, object]:
    """The shared data's file shape (see shared/data/README.md)."""
    return {
        "symbol": symbol,
        "interval": interval,
        "days": days,
        "source": "kucoin_futures",
        "candleCount": len(candles),
        "startTime": None if not candles else _utc(candles[0].ts),
        "endTime": None if not candles else _utc(candles[-1].ts),
        "candles": [
            {"ts": c.ts, "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume}
            for c in candles
        ],
    }


def _write(path: Path, document: object) -> None:
    """Whole file or nothing: a fetch cut short never leaves a truncated file for the backtest to choke on."""
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(document, separators=(",", ":")))
    tmp.replace(path)


def _save_contracts(out_dir: Path, contracts: dict[str, object], now_ms: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    about = f"GET /api/v1/contracts/active on {_utc(now_ms)} UTC (./start.sh fetch-candles)"
    _write(out_dir / "contracts.json", {"_about": about, "contracts": contracts})


def _save_candles(out_dir: Path, symbol: str, interval: str, days: int, candles: list[Candle]) -> Path:
    path = out_dir / f"{symbol}_{interval}_{days}d.json"
    for older in out_dir.glob(f"{symbol}_{interval}_*.json"):
        if older != path:  # another span of the same series would be read instead of this one
            older.unlink()
    _write(path, candle_document(symbol, interval, days, candles))
    load_candle_file(path)  # what the backtest and the replay will read must load
    return path


async def fetch(
    client: KucoinFuturesClient,
    symbols: Sequence[str],
    *,
    days: int,
    intervals: Sequence[str],
    out_dir: Path,
    now_ms: int,
) -> list[Fetched]:
    """Write ``contracts.json`` and one candle file per symbol and interval into ``out_dir``."""
    contracts = {str(c.get("symbol")): c for c in await client.contracts()}
    unknown = [s for s in symbols if s not in contracts]
    if unknown:
        raise FetchError(f"not an active KuCoin futures contract: {', '.join(unknown)}")
    _save_contracts(out_dir, {s: contracts[s] for s in symbols}, now_ms)
    done = []
    for symbol in symbols:
        for interval in intervals:
            step = timeframe_ms(interval)
            start, end = closed_range(now_ms, interval, days)
            rows = await client.klines(symbol, step // 60_000, start, end)
            candles = closed_candles(rows, symbol)  # a malformed row is left out (logged): a gap in the file
            path = _save_candles(out_dir, symbol, interval, days, candles)
            missing = 0 if not candles else (candles[-1].ts - candles[0].ts) // step + 1 - len(candles)
            done.append(
                Fetched(
                    path,
                    symbol,
                    interval,
                    len(candles),
                    missing,
                    candles[0].ts if candles else None,
                    candles[-1].ts if candles else None,
                )
            )
    return done


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="./start.sh fetch-candles",
        description="Download recent KuCoin futures candles and contract specs for backtests and paper replays.",
    )
    p.add_argument("--symbols", required=True, help="comma-separated contracts, e.g. ETHUSDTM,XBTUSDTM")
    p.add_argument("--days", type=int, default=30, help="how many days back from the last closed candle (1-365)")
    p.add_argument("--intervals", default="5min", help="comma-separated, e.g. 5min,30min (default 5min)")
    p.add_argument("--out", type=Path, default=Path("data/candles"), help="directory to write (default data/candles)")
    p.add_argument("--base-url", default=KUCOIN_FUTURES, help=argparse.SUPPRESS)  # the simulator, in tests
    args = p.parse_args(argv)
    args.symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    args.intervals = [s.strip() for s in args.intervals.split(",") if s.strip()]
    if not args.symbols:
        p.error("--symbols names no contract")
    if not 1 <= args.days <= 365:
        p.error(f"--days {args.days} is outside 1-365")
    for interval in args.intervals:
        try:
            timeframe_ms(interval)
        except ValueError as exc:
            p.error(str(exc))
    return args


async def _main(args: argparse.Namespace) -> list[Fetched]:
    async with KucoinFuturesClient(args.base_url, max_attempts=4) as client:
        offset = await client.sync_time()  # the exchange's clock decides which candle has closed
        now = int(time.time() * 1000) + offset
        return await fetch(client, args.symbols, days=args.days, intervals=args.intervals, out_dir=args.out, now_ms=now)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        fetched = asyncio.run(_main(args))
    except FetchError as exc:
        print(f"fetch-candles: error: {exc}", file=sys.stderr)
        return 2
    except (ExchangeError, OSError) as exc:
        print(f"fetch-candles: error: {args.base_url} did not answer: {exc}", file=sys.stderr)
        return 1
    for f in fetched:
        print(f.line())
    print(f"backtest: ./start.sh backtest --all --data-dir {args.out}")
    print(f"paper:    ./start.sh --replay {args.out} --speed max")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
