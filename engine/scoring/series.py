"""A whole symbol's history decided in one call, for the backtest: what each primary bar's decision says.

The backtest needs, per bar, only whether the strategy passed and what sizing reads (side, score, ATR%); the
trader's explanation of a decision is built by ``SymbolPipeline`` for the bars someone looks at. Decisions do not
depend on the account except through the §9.3 max-drawdown gate, which the runner applies at the bar with the
drawdown then in force (``drawdown_allows``): a conjunction of gates, so the verdict is the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from engine.config.strategy import StrategyConfig
from engine.gates.gate_kernel import new_gates_out
from engine.models import Candle
from engine.scoring.params import score_params
from engine.scoring.pipeline import CandleOrderError
from engine.scoring.score_kernel import new_decision_row
from engine.scoring.signals import Direction
from engine.scoring.strategy_kernel import N_AGG, N_CARRY, run_series, strategy_params, timeframe_arrays


class EntryIntent(Protocol):
    """What an entry reads from the decision that asked for it (a ``Decision`` is one)."""

    @property
    def ts(self) -> int: ...

    @property
    def side(self) -> str | None: ...

    @property
    def final_score(self) -> float: ...

    @property
    def atr_pct(self) -> float | None: ...


class EntrySignal(NamedTuple):
    """A passed decision, reduced to what the entry reads."""

    ts: int
    side: str | None
    final_score: float
    atr_pct: float | None


class SeriesDecisions(NamedTuple):
    """Per primary candle, in the candles' order: passed (every gate but max-drawdown), score, direction, ATR%."""

    passed: npt.NDArray[np.bool_]
    final_score: npt.NDArray[np.float64]
    direction: npt.NDArray[np.int64]
    atr_pct: npt.NDArray[np.float64]  # NaN where the ATR is not defined yet

    def entry(self, i: int, ts: int) -> EntrySignal:
        """The entry the passed decision at ``i`` (bar ``ts``) asks for."""
        atr = float(self.atr_pct[i])
        side = "long" if self.direction[i] == Direction.BULLISH else "short"
        return EntrySignal(ts, side, float(self.final_score[i]), None if math.isnan(atr) else atr)

    @classmethod
    def empty(cls, n: int) -> SeriesDecisions:
        """``n`` bars on which nothing passes."""
        return cls(np.zeros(n, np.bool_), np.zeros(n), np.zeros(n, np.int64), np.full(n, np.nan))


def drawdown_allows(cfg: StrategyConfig, drawdown_pct: float) -> bool:
    """§9.3 max-drawdown gate, the one gate that reads the account (the comparison ``eval_gates`` makes)."""
    return drawdown_pct <= cfg.gates.max_drawdown_pct


def decide_series(cfg: StrategyConfig, symbol: str, candles: Sequence[Candle]) -> SeriesDecisions:
    """Every primary candle of ``candles`` (in time order) through a fresh strategy, with its confirmation
    candles built as the runner and the live engine build them: one compiled loop (``run_series``) over the same
    per-bar functions ``SymbolPipeline`` calls."""
    n = len(candles)
    out = SeriesDecisions.empty(n)
    ts = np.fromiter((c.ts for c in candles), np.int64, n)
    ohlcv = np.array([(c.open, c.high, c.low, c.close, c.volume) for c in candles], np.float64).reshape(n, 5)
    sp_ip, sp_fp = score_params(cfg)
    bad = run_series(
        strategy_params(cfg),
        sp_ip,
        sp_fp,
        *timeframe_arrays(cfg),
        *timeframe_arrays(cfg),
        np.zeros(N_CARRY),
        np.zeros(N_AGG),
        new_decision_row(),
        new_gates_out(),
        ts,
        ohlcv,
        out.passed,
        out.final_score,
        out.direction,
        out.atr_pct,
    )
    if bad >= 0:
        raise CandleOrderError(f"{symbol}: candle {int(ts[bad])} is not after the one before it")
    return out
