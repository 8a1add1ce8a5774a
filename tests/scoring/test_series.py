"""One code path: the backtest's compiled loop over a whole history (``decide_series`` → ``run_series``) and the
live engine's per-candle ``SymbolPipeline`` (the same ``confirmation_bar`` / ``primary_bar`` called from Python) give
the same verdict on every bar of every shared series, bit for bit, gaps and the 30min aggregation included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import StrategyConfig
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from engine.scoring.pipeline import CandleOrderError
from engine.scoring.series import SeriesDecisions, decide_series, drawdown_allows
from tests.scoring.strategy_rig import CANON, CFG, RSI_ON, SYMBOLS, per_candle


def per_candle_series(cfg: StrategyConfig, symbol: str, candles: list[Candle]) -> SeriesDecisions:
    """What the live engine decides, one candle at a time, as the backtest's arrays."""
    out = SeriesDecisions.empty(len(candles))
    for i, d in enumerate(per_candle(cfg, symbol, candles)):
        out.passed[i] = d.passed
        out.final_score[i] = d.final_score
        out.direction[i] = int(d.direction)
        out.atr_pct[i] = np.nan if d.atr_pct is None else d.atr_pct
    return out


def assert_same(got: SeriesDecisions, want: SeriesDecisions) -> None:
    for name in SeriesDecisions._fields:
        a, b = getattr(got, name), getattr(want, name)
        assert a.tobytes() == b.tobytes(), (name, np.flatnonzero(a != b)[:5])


@pytest.mark.parametrize("cfg", [CFG, CANON, RSI_ON], ids=["strict", "canonical", "rsi"])
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_the_compiled_loop_decides_every_bar_as_the_live_pipeline(
    data_dir: Path, symbol: str, cfg: StrategyConfig
) -> None:
    candles = load_candles(data_dir, symbol, "5min")
    # Two gaps: one inside a 30min bucket (that confirmation candle is dropped) and one of a whole day.
    candles = candles[:2003] + candles[2005:5000] + candles[5288:]
    got, want = decide_series(cfg, symbol, candles), per_candle_series(cfg, symbol, candles)
    assert_same(got, want)
    assert want.passed.any() and (want.direction == 1).any() and (want.direction == -1).any()


def test_the_series_starts_over_after_a_gap_exactly_as_a_fresh_start(data_dir: Path) -> None:
    """Bars after a gap are decided as if the history began there: nothing is bridged."""
    candles = load_candles(data_dir, "ETHUSDTM", "5min")
    after = candles[3000:]
    whole = decide_series(CFG, "ETHUSDTM", candles[:2000] + after)
    fresh = decide_series(CFG, "ETHUSDTM", after)
    assert whole.final_score[2000:].tobytes() == fresh.final_score.tobytes()
    assert whole.passed[2000:].tobytes() == fresh.passed.tobytes()
    assert whole.final_score[2000:2200].tolist() == [0.0] * 200  # warming up again for min_candles


def test_a_candle_out_of_order_is_refused_with_its_time(data_dir: Path) -> None:
    candles = load_candles(data_dir, "ETHUSDTM", "5min")[:50]
    with pytest.raises(CandleOrderError, match=rf"ETHUSDTM: candle {candles[10].ts} is not after the one before it"):
        decide_series(CFG, "ETHUSDTM", [*candles[:20], candles[10], *candles[20:]])


def test_an_empty_history_decides_nothing() -> None:
    got = decide_series(CFG, "ETHUSDTM", [])
    assert [len(a) for a in got] == [0, 0, 0, 0]


def test_the_drawdown_gate_is_the_configs_inclusive_limit() -> None:
    limit = CFG.gates.max_drawdown_pct
    assert drawdown_allows(CFG, limit) and not drawdown_allows(CFG, limit + 1e-9)
