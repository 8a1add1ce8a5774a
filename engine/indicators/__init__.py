"""Incremental indicators: one closed candle updates each in O(1) time and bounded memory."""

from engine.indicators.indicator_set import RECOMMENDED_WARMUP_CANDLES, IndicatorSet
from engine.indicators.params import IndicatorParams
from engine.indicators.snapshot import IndicatorSnapshot

__all__ = ["RECOMMENDED_WARMUP_CANDLES", "IndicatorParams", "IndicatorSet", "IndicatorSnapshot"]
