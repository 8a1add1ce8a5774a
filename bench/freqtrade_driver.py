"""Run freqtrade's own backtest once and print how long it took, as one JSON line on stdout.

Runs inside bench/.venv-freqtrade (never the project's .venv), started by bench.freqtrade_peer:

    bench/.venv-freqtrade/bin/python bench/freqtrade_driver.py WORKDIR

WORKDIR holds config.json, markets.json and the candle files written by bench.freqtrade_peer. The one thing
changed in freqtrade is where the exchange's market list comes from: markets.json (KuCoin's contract specs in
ccxt's shape) instead of a download, since this machine reaches no exchange. What is timed is
``Backtesting.backtest_one_strategy``, the span freqtrade itself reports as the backtest: indicators, signals
and the trade loop over all pairs, with the data already loaded (as the other engines are timed); in wall
seconds and in CPU seconds of the process.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def main(workdir: Path) -> None:
    from freqtrade.commands.optimize_commands import setup_optimize_configuration
    from freqtrade.enums import RunMode
    from freqtrade.exchange import Exchange
    from freqtrade.optimize.backtesting import Backtesting

    markets: list[dict[str, Any]] = json.loads((workdir / "markets.json").read_text())

    def offline_markets(self: Exchange, reload: bool = False) -> None:
        self._api_async.set_markets(markets)

    Exchange._load_async_markets = offline_markets
    logging.disable(logging.WARNING)  # freqtrade's info/warning chatter; errors still reach stderr
    t0 = time.perf_counter()
    args = {"config": [str(workdir / "config.json")], "datadir": str(workdir / "data")}  # datadir: only as an arg
    config = setup_optimize_configuration(args, RunMode.BACKTEST)
    backtesting = Backtesting(config)
    t_setup = time.perf_counter()
    data, timerange = backtesting.load_bt_data()
    strategy = backtesting.strategylist[0]
    t_load, c_load = time.perf_counter(), time.process_time()
    backtesting.backtest_one_strategy(strategy, data, timerange)
    t_backtest, c_backtest = time.perf_counter(), time.process_time()
    trades = backtesting.all_bt_content[strategy.get_strategy_name()]["results"]
    print(
        json.dumps(
            {
                "setup_s": t_setup - t0,
                "load_s": t_load - t_setup,
                "backtest_s": t_backtest - t_load,
                "backtest_cpu_s": c_backtest - c_load,  # all of the process's threads
                "candles": sum(len(df) for df in data.values()),
                "trades": len(trades),
                "shorts": int(trades["is_short"].sum()) if len(trades) else 0,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
