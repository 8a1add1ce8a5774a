"""timeframes.*RequiredIndicators named as the strategy JSON names its indicators (camelCase: ``emaTrend``,
``stochRsi``, ``williamsR``) mean the same detectors as the snake_case names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.config.strategy import DEFAULT_STRATEGY_CONFIG_PATH, StrategyConfig, validate_strategy_config
from engine.marketdata.aggregate import CandleAggregator
from engine.marketdata.candle_files import load_candles
from engine.scoring.pipeline import SymbolPipeline
from engine.scoring.series import decide_series


def _cfg(required: str) -> StrategyConfig:
    raw: dict[str, Any] = json.loads(DEFAULT_STRATEGY_CONFIG_PATH.read_text())
    raw["timeframes"]["primaryRequiredIndicators"] = required
    raw["timeframes"]["confirmationRequiredIndicators"] = required
    return validate_strategy_config(raw)  # the config accepts both spellings as the same indicators


def test_camel_case_required_indicators_are_the_same_detectors(data_dir: Path) -> None:
    """With requireAoWhenEnabled on (the default), "ao,emaTrend" was accepted by the config but matched no detector
    name: neither timeframe was ever ready, and the bot never traded ("indicators not ready: emaTrend" on every
    bar of the month: 0 bars decided, against 7,436 decided and 4 passed with "ao,ema_trend")."""
    candles = load_candles(data_dir, "ETHUSDTM", "5min")
    camel, snake = _cfg("ao,emaTrend,stochRsi,williamsR"), _cfg("ao,ema_trend,stoch_rsi,williams_r")
    assert camel.gates.require_ao_when_enabled
    want, got = decide_series(snake, "ETHUSDTM", candles), decide_series(camel, "ETHUSDTM", candles)
    assert int(want.passed.sum()) > 0
    assert got.passed.tobytes() == want.passed.tobytes()
    assert got.final_score.tobytes() == want.final_score.tobytes()
    pipe = SymbolPipeline(camel, "ETHUSDTM")
    agg = CandleAggregator(camel.timeframes.primary, camel.timeframes.confirmation)
    failing: set[str] = set()
    for bar in candles[:3000]:
        bucket = agg.update(bar)
        if bucket is not None:
            pipe.on_confirmation_candle(bucket)
        failing.update(pipe.on_primary_candle(bar, drawdown_pct=0.0).failing)
    assert failing != {"data_not_ready"}  # decided, not warming up for ever
