"""Candles per second of the full ENYGMA backtest (indicators, scoring, gates, risk, fills) over the four
shared 5min files, in the same run as backtesting.py on a simple SMA-cross strategy over the same data, and,
with --freqtrade, freqtrade's own backtest of the same strategy on the same data. A further row runs the backtester with
the strategy replaced by a free "no entry": the account loop's own cost, the floor under any strategy.

    .venv/bin/python -m bench.backtest [--json FILE] [--freqtrade]

--freqtrade installs freqtrade (exact pin, wheels only) into the git-ignored bench/.venv-freqtrade on first use,
never into the project's .venv, and runs it there as a subprocess (see bench/freqtrade_peer.py). Without it, or
when the install fails, the ratio falls back to freqtrade's published ~4,000 candles/s and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings

from bench import freqtrade_peer
from bench.common import Timing, emit, parse, timed_cpu
from engine.backtest.runner import Backtester
from engine.config import default_strategy_config
from engine.config.strategy import StrategyConfig
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from engine.risk.contract import ContractSpec, load_contract_specs
from engine.scoring.series import SeriesDecisions

SYMBOLS = ("ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM")
FREQTRADE_PUBLISHED_CPS = 4000.0  # freqtrade's own published backtest speed, used when it is not measured here


def backtesting_py(data: dict[str, list[Candle]]) -> Timing:
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

    return timed_cpu(run)


def _never_enter(cfg: StrategyConfig, symbol: str, candles: list[Candle]) -> SeriesDecisions:
    """The strategy replaced by "no entry" on every bar, decided for free: what the backtester's account loop alone
    costs (bar loop, marks, risk state) — the floor under any strategy run through it."""
    return SeriesDecisions.empty(len(candles))


def account_loop_only(cfg: StrategyConfig, data: dict[str, list[Candle]], specs: dict[str, ContractSpec]) -> None:
    Backtester(cfg, data, specs, decide=_never_enter).run()


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
    t_ours: list[Timing] = []
    t_btpy: list[Timing] = []
    t_loop: list[Timing] = []
    with contextlib.ExitStack() as stack:
        peer = None if no_freqtrade else stack.enter_context(freqtrade_peer.Peer(data, specs))
        for _ in range(2):  # best of two, the engines alternated so that a busy spell hits each of them alike
            t_ours.append(timed_cpu(lambda: Backtester(cfg, data, specs).run()))
            t_btpy.append(backtesting_py(data))
            t_loop.append(timed_cpu(lambda: account_loop_only(cfg, data, specs)))
            if peer is not None:
                peer.run()
        freqtrade = peer.result() if peer is not None else str(no_freqtrade)
    runs = {"enygma": t_ours, "backtesting_py": t_btpy, "enygma_account_loop_only": t_loop}
    wall = {name: min(t.wall_s for t in ts) for name, ts in runs.items()}
    cpu = {name: min(t.cpu_s for t in ts) for name, ts in runs.items()}
    figures: dict[str, object] = {"candles": candles}
    if isinstance(freqtrade, freqtrade_peer.FreqtradeRun):
        wall["freqtrade"], cpu["freqtrade"] = freqtrade.backtest_s, freqtrade.cpu_s
        figures["freqtrade"] = {
            "measured": True,
            "version": freqtrade_peer.FREQTRADE_VERSION,
            "mode": "futures, isolated, leverage 1, funding 0",
            "timed": "Backtesting.backtest_one_strategy (indicators, signals, trade loop; data already loaded)",
            "backtest_s": freqtrade.backtest_s,
            "backtest_cpu_s": freqtrade.cpu_s,
            "process_wall_s": freqtrade.wall_s,
            "candles": freqtrade.candles,
            "trades": freqtrade.trades,
        }
    else:
        figures["freqtrade"] = {"measured": False, "note": f"{freqtrade}; ratio uses the published ~4,000 candles/s"}
    cps = {name: candles / s for name, s in wall.items()}
    cpu_cps = {name: candles / s for name, s in cpu.items()}
    figures |= {"candles_per_s": cps, "candles_per_cpu_s": cpu_cps}

    def rate(name: str) -> str:
        return f"{cps[name]:10.0f} candles/s, {cpu_cps[name]:7.0f} per CPU-second"

    rows = [
        ("candles", f"{candles} (4 symbols × 8,640 5min bars)"),
        ("ENYGMA full backtest", rate("enygma")),
        ("backtesting.py, SMA cross", rate("backtesting_py")),
        ("ENYGMA account loop alone (no strategy)", rate("enygma_account_loop_only") + " — the floor"),
    ]
    ratios = {"vs_backtesting_py": cps["enygma"] / cps["backtesting_py"]}
    if isinstance(freqtrade, freqtrade_peer.FreqtradeRun):
        rows.append(
            (
                f"freqtrade {freqtrade_peer.FREQTRADE_VERSION}, SMA cross",
                f"{rate('freqtrade')} (its backtest {freqtrade.backtest_s:.2f} s of a {freqtrade.wall_s:.1f} s "
                f"process; {freqtrade.trades} trades, {freqtrade.shorts} short; futures)",
            )
        )
        ratios["vs_freqtrade"] = cps["enygma"] / cps["freqtrade"]
        ratios["vs_freqtrade_cpu"] = cpu_cps["enygma"] / cpu_cps["freqtrade"]
    else:
        rows.append(("freqtrade", f"{freqtrade}; its published ~4,000 candles/s used for the ratio"))
        ratios["vs_freqtrade"] = cps["enygma"] / FREQTRADE_PUBLISHED_CPS
    emit("Backtest throughput (higher is better)", rows, figures, ratios, args.json)


if __name__ == "__main__":
    main()
