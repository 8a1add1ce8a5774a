"""Load the KuCoin futures candle files from ``shared/data/kucoin-futures``."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from engine.models import Candle, checked_candle, timeframe_ms


class CandleFileError(ValueError):
    """A candle file is missing, malformed or not sorted."""


@dataclass(frozen=True, slots=True)
class CandleFile:
    symbol: str
    interval: str
    candles: list[Candle]


def candle_file_path(data_dir: Path, symbol: str, interval: str) -> Path:
    """Path of the shared file for ``symbol`` and ``interval`` (the files are named ``SYM_INTERVAL_30d.json``)."""
    matches = sorted(data_dir.glob(f"{symbol}_{interval}_*.json"))
    if not matches:
        raise CandleFileError(f"no candle file for {symbol} {interval} in {data_dir}")
    return matches[0]


def load_candle_file(path: Path) -> CandleFile:
    """Parse one candle file, checking order and the interval; gaps are kept, not filled."""
    try:
        raw = json.loads(path.read_text())
        symbol = str(raw["symbol"])
        interval = str(raw["interval"])
        candles = [
            checked_candle(
                int(c["ts"]), float(c["open"]), float(c["high"]), float(c["low"]), float(c["close"]), float(c["volume"])
            )
            for c in raw["candles"]
        ]
    except FileNotFoundError:
        raise CandleFileError(f"candle file not found: {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CandleFileError(f"malformed candle file {path}: {exc}") from exc
    step = timeframe_ms(interval)
    for prev, cur in itertools.pairwise(candles):
        if cur.ts <= prev.ts or (cur.ts - prev.ts) % step:
            raise CandleFileError(f"{path}: candle at {cur.ts} is not on the {interval} grid after {prev.ts}")
    return CandleFile(symbol=symbol, interval=interval, candles=candles)


def load_candles(data_dir: Path, symbol: str, interval: str) -> list[Candle]:
    """Candles of ``symbol`` at ``interval`` from ``data_dir``."""
    return load_candle_file(candle_file_path(data_dir, symbol, interval)).candles
