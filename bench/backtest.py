"""Candles per second of the full ENYGMA backtest (indicators, scoring, gates, risk, fills) over the four
shared 5min files, in the same run as backtesting.py on a simple SMA-cross strategy over the same data, and,
with --freqtrade, freqtrade's own backtest of the same strategy on the same data.

    .venv/bin/python -m bench.backtest [--json FILE] [--freqtrade]

--freqtrade installs freqtrade (exact pin, wheels only) into the git-ignored bench/.venv-freqtrade on first use,
never into the project's .venv, and runs it there as a subprocess (see bench/freqtrade_peer.py). Without it, or
when the install fails, the ratio falls back to freqtrade's published ~4,000 candles/s and says so.
"""

from __future__ import annotations

import argparse
import os
import warnings

from bench import freqtrade_peer
from bench.common import emit, parse, timed
from engine.backtest.runner import Backtester
from engine.config import default_strategy_config
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from engine.risk.contract import load_contract_specs

SYMBOLS = ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM")
FREQTRADE_PUBLISHED_CPS = 4000.0  # freqtrade's own published backtest speed, used when it is not measured here


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


def _add_freqtrade_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--freqtrade",
        action="store_true",
        help=f"install freqtrade=={freqtrade_peer.FREQTRADE_VERSION} into bench/.venv-freqtrade if needed and "
        "measure its backtest on the same data (best of two runs)",
    )


def main() -> None:
    args = parse(__doc__ or "", _add_freqtrade_flag)
    cfg = default_strategy_config()
    data = {s: load_candles(args.data_dir, s, "5min") for s in SYMBOLS}
    specs = load_contract_specs(args.data_dir / "contracts.json")
    candles = sum(len(v) for v in data.values())
    # Installed before anything is timed, so pip's work never overlaps a measurement.
    no_freqtrade = (
        freqtrade_peer.install()
        if args.freqtrade
        else f"not measured (add --freqtrade to install freqtrade=={freqtrade_peer.FREQTRADE_VERSION} into "
        "bench/.venv-freqtrade and measure it)"
    )
    t_ours = min(timed(lambda: Backtester(cfg, data, specs).run()) for _ in range(2))
    t_btpy = min(backtesting_py(data) for _ in range(2))
    ours_cps, btpy_cps = candles / t_ours, candles / t_btpy
    freqtrade = no_freqtrade or freqtrade_peer.measure(data, specs)
    rows = [
        ("candles", f"{candles} (4 symbols × 8,640 5min bars)"),
        ("ENYGMA full backtest", f"{ours_cps:10.0f} candles/s"),
        ("backtesting.py, SMA cross", f"{btpy_cps:10.0f} candles/s"),
    ]
    figures: dict[str, object] = {"candles": candles, "candles_per_s": {"enygma": ours_cps, "backtesting_py": btpy_cps}}
    if isinstance(freqtrade, freqtrade_peer.FreqtradeRun):
        ft_cps = freqtrade.candles / freqtrade.backtest_s
        rows.append(
            (
                f"freqtrade {freqtrade_peer.FREQTRADE_VERSION}, SMA cross",
                f"{ft_cps:10.0f} candles/s (its backtest {freqtrade.backtest_s:.2f} s of a {freqtrade.wall_s:.1f} s "
                f"process; {freqtrade.trades} trades, {freqtrade.shorts} short; futures)",
            )
        )
        figures["candles_per_s"] = {"enygma": ours_cps, "backtesting_py": btpy_cps, "freqtrade": ft_cps}
        figures["freqtrade"] = {
            "measured": True,
            "version": freqtrade_peer.FREQTRADE_VERSION,
            "mode": "futures, isolated, leverage 1, funding 0",
            "timed": "Backtesting.backtest_one_strategy (indicators, signals, trade loop; data already loaded)",
            "backtest_s": freqtrade.backtest_s,
            "process_wall_s": freqtrade.wall_s,
            "candles": freqtrade.candles,
            "trades": freqtrade.trades,
        }
    else:
        ft_cps = FREQTRADE_PUBLISHED_CPS
        rows.append(("freqtrade", f"{freqtrade}; its published ~4,000 candles/s used for the ratio"))
        figures["freqtrade"] = {"measured": False, "note": f"{freqtrade}; ratio uses the published ~4,000 candles/s"}
    ratios = {"vs_backtesting_py": ours_cps / btpy_cps, "vs_freqtrade": ours_cps / ft_cps}
    emit("Backtest throughput (higher is better)", rows, figures, ratios, args.json)


if __name__ == "__main__":
    main()
