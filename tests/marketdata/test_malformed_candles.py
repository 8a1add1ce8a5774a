"""A candle whose numbers cannot be a candle is refused where it enters (file, REST, stream) with what is wrong.
One NaN reaching the indicators poisoned them for good: every later decision of the symbol raised, in a lane
that logged it and went on, so the symbol silently never traded again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from engine.marketdata.candle_files import CandleFileError, load_candle_file
from engine.marketdata.klines import closed_candles
from engine.models import Candle, MalformedCandleError, checked_candle
from exchange.ws import CandleCloser

GOOD = (1_766_017_800_000, 2834.31, 2837.58, 2831.61, 2832.94, 83585.0)


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (2, math.nan, "not a finite number"),
        (1, math.inf, "not a finite number"),
        (3, 0.0, "prices must be positive"),
        (5, -1.0, "volume not negative"),
        (3, 2833.0, "open and close must lie between low and high"),  # low above the close
        (2, 2834.0, "open and close must lie between low and high"),  # high below the open
    ],
)
def test_impossible_numbers_are_refused(index: int, value: float, message: str) -> None:
    row = list(GOOD)
    row[index] = value
    with pytest.raises(MalformedCandleError, match=message):
        checked_candle(int(row[0]), *row[1:])
    assert checked_candle(int(GOOD[0]), *GOOD[1:]) == Candle(int(GOOD[0]), *GOOD[1:])


def test_a_candle_file_with_a_nan_names_the_candle(tmp_path: Path, data_dir: Path) -> None:
    raw = json.loads((data_dir / "ETHUSDTM_5min_30d.json").read_text())
    raw["candles"][10]["high"] = "NaN"
    path = tmp_path / "ETHUSDTM_5min_30d.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CandleFileError, match=rf"candle {raw['candles'][10]['ts']}: a value is not a finite number"):
        load_candle_file(path)


def test_a_malformed_rest_row_is_left_out_and_logged() -> None:
    rows = [list(GOOD), [GOOD[0] + 300_000, 2832.94, "NaN", 2830.0, 2831.0, 10], [GOOD[0] + 600_000, 1.0]]
    with capture_logs() as logs:
        got = closed_candles(rows, "ETHUSDTM")
    assert got == [Candle(int(GOOD[0]), *GOOD[1:])]
    assert [e["event"] for e in logs] == ["candles.malformed_row", "candles.malformed_row"]


def test_a_stream_candle_that_cannot_be_one_is_refused() -> None:
    closer = CandleCloser()
    start = GOOD[0] // 1000
    # Wire order: start (s), open, close, high, low, x5, x6.
    assert closer.push({"candles": [str(start), "2834.31", "2832.94", "2837.58", "2831.61", "0", "83585"]}) is None
    with pytest.raises(MalformedCandleError):
        closer.push({"candles": [str(start + 300), "2832.94", "2833.5", "2833.0", "2835.0", "0", "10"]})
    assert closer.current is not None and closer.current.ts == GOOD[0]  # the good one is kept, not replaced
