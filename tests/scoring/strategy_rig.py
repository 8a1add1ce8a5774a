"""Shared by the strategy tests: the configs they run and the live engine's way of feeding a history."""

from __future__ import annotations

from engine.config import default_strategy_config
from engine.config.strategy import StrategyConfig
from engine.marketdata.aggregate import CandleAggregator
from engine.models import Candle
from engine.scoring.pipeline import Decision, SymbolPipeline

CFG = default_strategy_config()
CANON = CFG.with_strict(False)
RSI_ON = CANON.model_copy(
    update={
        "indicators": CANON.indicators.model_copy(
            update={"rsi": CANON.indicators.rsi.model_copy(update={"enabled": True})}
        )
    }
)
SYMBOLS = ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM")


def per_candle(cfg: StrategyConfig, symbol: str, candles: list[Candle]) -> list[Decision]:
    """Every candle through a fresh ``SymbolPipeline`` as the live engine feeds it (the confirmation candle it
    completes first, drawdown 0 %, as the backtest decides a history up front): each bar's explained decision."""
    pipe = SymbolPipeline(cfg, symbol)
    agg = CandleAggregator(cfg.timeframes.primary, cfg.timeframes.confirmation)
    out: list[Decision] = []
    for bar in candles:
        confirmation = agg.update(bar)
        if confirmation is not None:
            pipe.on_confirmation_candle(confirmation)
        out.append(pipe.on_primary_candle(bar, drawdown_pct=0.0))
    return out
