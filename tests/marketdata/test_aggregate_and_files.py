"""Candle files and the 5min → 30min aggregator against the exchange's own 30min candles."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.marketdata.aggregate import CandleAggregator
from engine.marketdata.candle_files import CandleFileError, load_candle_file, load_candles
from engine.models import Candle, timeframe_ms


@pytest.mark.parametrize("symbol", ["ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM"])
def test_aggregated_5min_equals_the_exchange_30min_candles(data_dir: Path, symbol: str) -> None:
    agg = CandleAggregator("5min", "30min")
    built = [c for c in (agg.update(x) for x in load_candles(data_dir, symbol, "5min")) if c is not None]
    official = {c.ts: c for c in load_candles(data_dir, symbol, "30min")}
    # The 30min file's last candle was recorded while still open; every earlier overlapping candle is identical.
    last_official = max(official)
    compared = [c for c in built if c.ts in official and c.ts < last_official - 1_800_000]
    assert len(compared) > 1400
    assert all(official[c.ts] == c for c in compared)


def test_a_gap_inside_a_bucket_is_never_emitted_as_complete() -> None:
    agg = CandleAggregator("5min", "30min")
    base = 1_800_000 * 1000
    bars = [Candle(base + i * 300_000, 1, 2, 0.5, 1.5, 10) for i in range(6) if i != 3]
    assert [agg.update(b) for b in bars] == [None] * 5
    full = [Candle(base + 1_800_000 + i * 300_000, 1, 2, 0.5, 1.5 + i, 10) for i in range(6)]
    out = [agg.update(b) for b in full]
    assert out[:5] == [None] * 5
    assert out[5] == Candle(base + 1_800_000, 1, 2, 0.5, 6.5, 60)


def test_aggregator_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        CandleAggregator("30min", "1hour".replace("1hour", "15min"))
    with pytest.raises(ValueError, match="unknown timeframe"):
        timeframe_ms("7min")
    bad = tmp_path / "X_5min_1d.json"
    bad.write_text('{"symbol": "X", "interval": "5min", "candles": [{"ts": 600000, "open": 1}]}')
    with pytest.raises(CandleFileError, match="malformed"):
        load_candle_file(bad)
    bad.write_text(
        '{"symbol": "X", "interval": "5min", "candles": ['
        '{"ts": 600000, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1},'
        '{"ts": 600000, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}]}'
    )
    with pytest.raises(CandleFileError, match="not on the 5min grid"):
        load_candle_file(bad)
    with pytest.raises(CandleFileError, match="no candle file"):
        load_candles(tmp_path, "Y", "5min")
