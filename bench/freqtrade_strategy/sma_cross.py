"""The freqtrade peer of bench.backtest's backtesting.py strategy: SMA 10/30 cross, long and short.

Loaded by freqtrade (in bench/.venv-freqtrade) from this folder, never by the project. A cross up closes a short
and opens a long, a cross down the reverse; no ROI table, no trailing, a stop far enough (-99 %) never to fire,
so exits are the crosses alone, as in the backtesting.py peer.
"""

from __future__ import annotations

from typing import Any

import talib.abstract as ta
from freqtrade.strategy import IStrategy
from pandas import DataFrame
from technical import qtpylib


class SmaCross(IStrategy):  # type: ignore[misc]  # freqtrade is untyped here (another venv)
    INTERFACE_VERSION = 3
    timeframe = "5m"
    can_short = True
    minimal_roi = {"0": 100.0}  # noqa: RUF012 (freqtrade reads a class attribute) never reached: crosses exit
    stoploss = -0.99
    trailing_stop = False
    use_exit_signal = True
    process_only_new_candles = True
    startup_candle_count = 0  # every candle is backtested, as in the other two engines

    def populate_indicators(self, dataframe: DataFrame, metadata: dict[str, Any]) -> DataFrame:
        dataframe["fast"] = ta.SMA(dataframe, timeperiod=10)
        dataframe["slow"] = ta.SMA(dataframe, timeperiod=30)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict[str, Any]) -> DataFrame:
        dataframe.loc[qtpylib.crossed_above(dataframe["fast"], dataframe["slow"]), "enter_long"] = 1
        dataframe.loc[qtpylib.crossed_below(dataframe["fast"], dataframe["slow"]), "enter_short"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict[str, Any]) -> DataFrame:
        dataframe.loc[qtpylib.crossed_below(dataframe["fast"], dataframe["slow"]), "exit_long"] = 1
        dataframe.loc[qtpylib.crossed_above(dataframe["fast"], dataframe["slow"]), "exit_short"] = 1
        return dataframe
