"""freqtrade as a measured peer of bench.backtest, in its own virtualenv and process.

freqtrade pins a large stack (its own pandas, numpy, ccxt, TA-Lib), so it is never a dependency of the project:
``install()`` puts one exact version into ``bench/.venv-freqtrade`` (git-ignored) on demand, from wheels only,
and ``Peer`` runs freqtrade's own backtest there (bench/freqtrade_driver.py) on the same candles as the
other engines, converted to freqtrade's JSON data format in a temporary folder. Futures mode, isolated margin,
leverage 1, funding 0: freqtrade has no KuCoin futures support, so it backtests as its Binance futures class with
the markets taken from KuCoin's contract specs (lot multiplier, tick size), not downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT
from engine.models import Candle
from engine.risk.contract import ContractSpec

FREQTRADE_VERSION = "2026.9"  # the newest on PyPI in 2026-11; Python 3.12 wheels for all of its stack
VENV = ROOT / "bench" / ".venv-freqtrade"
DRIVER = ROOT / "bench" / "freqtrade_driver.py"
STRATEGY_DIR = ROOT / "bench" / "freqtrade_strategy"
HOUR_MS = 3_600_000
# KuCoin names bitcoin XBT; freqtrade (and the Binance leverage tiers it backtests futures with) say BTC.
_BASE_NAMES = {"XBT": "BTC"}
# sdnotify (a freqtrade dependency) ships only as a source archive; it is pure Python, so building it compiles
# nothing. Everything else must come as a wheel.
PIP_INSTALL = ("-m", "pip", "install", "-q", "--disable-pip-version-check", "--retries", "1")
PIP_WHEELS_ONLY = ("--only-binary", ":all:", "--no-binary", "sdnotify")


@dataclass(frozen=True, slots=True)
class FreqtradeRun:
    """Best of the runs: ``backtest_s`` is freqtrade's backtest span (``cpu_s`` its CPU seconds), ``wall_s`` the
    whole process."""

    backtest_s: float
    cpu_s: float
    wall_s: float
    candles: int
    trades: int
    shorts: int


def freqtrade_pair(symbol: str) -> str:
    """freqtrade's name for a KuCoin USDT-M perpetual: ``XBTUSDTM`` -> ``BTC/USDT:USDT``."""
    if not symbol.endswith("USDTM") or len(symbol) == len("USDTM"):
        raise ValueError(f"{symbol} is not a KuCoin USDT-M perpetual symbol")
    base = symbol.removesuffix("USDTM")
    return f"{_BASE_NAMES.get(base, base)}/USDT:USDT"


def pair_file_stem(pair: str) -> str:
    """File-name form of a pair, as freqtrade's ``misc.pair_to_filename`` makes it."""
    for ch in "/ .@$+:":
        pair = pair.replace(ch, "_")
    return pair


def ohlcv_rows(candles: Sequence[Candle]) -> list[list[float]]:
    """freqtrade's JSON candle rows: ``[open time ms, open, high, low, close, volume]``, oldest first."""
    return [[c.ts, c.open, c.high, c.low, c.close, c.volume] for c in candles]


def hourly_rows(candles: Sequence[Candle]) -> list[list[float]]:
    """The candles folded into UTC hours, same row shape. freqtrade's futures backtest insists on hourly mark
    candles for funding; with funding set to 0 their prices change nothing, so they come from the same data."""
    rows: list[list[float]] = []
    for c in candles:
        hour = c.ts - c.ts % HOUR_MS
        if rows and rows[-1][0] == hour:
            row = rows[-1]
            row[2], row[3], row[4] = max(row[2], c.high), min(row[3], c.low), c.close
            row[5] += c.volume
        else:
            rows.append([hour, c.open, c.high, c.low, c.close, c.volume])
    return rows


def ccxt_market(symbol: str, spec: ContractSpec) -> dict[str, Any]:
    """A KuCoin contract spec in ccxt's unified market shape (amounts in contracts, ``contractSize`` the lot)."""
    pair = freqtrade_pair(symbol)
    base = pair.split("/", 1)[0]
    return {
        "id": symbol,
        "symbol": pair,
        "base": base,
        "quote": "USDT",
        "settle": "USDT",
        "baseId": base,
        "quoteId": "USDT",
        "settleId": "USDT",
        "type": "swap",
        "spot": False,
        "margin": False,
        "swap": True,
        "future": False,
        "option": False,
        "active": True,
        "contract": True,
        "linear": True,
        "inverse": False,
        "contractSize": float(spec.multiplier),
        "taker": float(spec.taker_fee),
        "maker": float(spec.maker_fee),
        "precision": {"amount": float(spec.lot_size), "price": float(spec.tick_size)},
        "limits": {
            "amount": {"min": float(spec.lot_size), "max": None},
            "price": {"min": float(spec.tick_size), "max": None},
            "cost": {"min": None, "max": None},
            "leverage": {"min": 1, "max": spec.max_leverage},
        },
        "info": {},
    }


def freqtrade_config(pairs: list[str], workdir: Path) -> dict[str, Any]:
    """Backtest config: futures, one slot per pair sharing a 10,000,000 USDT wallet, 0.06 % taker fee as the
    backtesting.py peer, no ROI/trailing (the strategy exits on crosses), no caching of earlier results."""
    return {
        "trading_mode": "futures",
        "margin_mode": "isolated",
        "max_open_trades": len(pairs),
        "stake_currency": "USDT",
        "stake_amount": "unlimited",
        "tradable_balance_ratio": 1.0,
        "dry_run": True,
        "dry_run_wallet": 10_000_000,
        "fee": 0.0006,
        "futures_funding_rate": 0,
        "timeframe": "5m",
        "exchange": {"name": "binance", "pair_whitelist": pairs, "pair_blacklist": []},
        "pairlists": [{"method": "StaticPairList"}],
        # Live pricing only; Binance futures tickers carry no price, so freqtrade wants the order book named.
        "entry_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "exit_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "strategy": "SmaCross",
        "strategy_path": str(STRATEGY_DIR),
        "user_data_dir": str(workdir / "user_data"),
        "dataformat_ohlcv": "json",
        "export": "none",
        "backtest_cache": "none",
    }


def write_workdir(workdir: Path, data: dict[str, list[Candle]], specs: dict[str, ContractSpec]) -> list[str]:
    """Everything the driver reads: candles (5m futures, 1h mark), markets.json, config.json. Returns the pairs."""
    futures = workdir / "data" / "futures"
    futures.mkdir(parents=True)
    (workdir / "user_data").mkdir()
    pairs = []
    for symbol, candles in data.items():
        pair = freqtrade_pair(symbol)
        pairs.append(pair)
        stem = pair_file_stem(pair)
        (futures / f"{stem}-5m-futures.json").write_text(json.dumps(ohlcv_rows(candles)))
        (futures / f"{stem}-1h-mark.json").write_text(json.dumps(hourly_rows(candles)))
    (workdir / "markets.json").write_text(json.dumps([ccxt_market(s, specs[s]) for s in data]))
    (workdir / "config.json").write_text(json.dumps(freqtrade_config(pairs, workdir), indent=2))
    return pairs


def _last_line(text: str, prefix: str = "") -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(prefix) and ln.strip()]
    return lines[-1] if lines else "(no output)"


def installed_version(venv: Path = VENV) -> str | None:
    """The freqtrade version importable in ``venv``, or None."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('freqtrade'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def install(venv: Path = VENV) -> str | None:
    """Make freqtrade FREQTRADE_VERSION ready in ``venv`` (created with this interpreter); None when it is, else
    one line saying why not (typically no network)."""
    if installed_version(venv) == FREQTRADE_VERSION:
        return None
    print(f"installing freqtrade=={FREQTRADE_VERSION} into {venv} (about 750 MB, a minute or more) ...", flush=True)
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, check=True, timeout=300)
        done = subprocess.run(
            [str(venv / "bin" / "python"), *PIP_INSTALL, *PIP_WHEELS_ONLY, f"freqtrade=={FREQTRADE_VERSION}"],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create {venv}: {exc}"
    if done.returncode != 0:
        return f"pip install freqtrade=={FREQTRADE_VERSION} failed: {_last_line(done.stderr, 'ERROR')}"
    return None


class Peer:
    """freqtrade as a peer whose runs the caller interleaves with the other engines' (``run()`` once per round),
    so a busy spell on the shared machine falls on all of them alike. The candles are written once, on enter."""

    def __init__(self, data: dict[str, list[Candle]], specs: dict[str, ContractSpec], venv: Path = VENV) -> None:
        self._data, self._specs, self._venv = data, specs, venv
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.runs: list[FreqtradeRun] = []
        self.error: str | None = None

    def __enter__(self) -> Peer:
        self._tmp = tempfile.TemporaryDirectory(prefix="enygma-freqtrade-")
        write_workdir(Path(self._tmp.name), self._data, self._specs)
        return self

    @property
    def workdir(self) -> Path | None:
        """The temporary folder with the converted candles, markets and config while the peer is entered."""
        return Path(self._tmp.name) if self._tmp is not None else None

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def run(self) -> None:
        """One freqtrade backtest in a fresh process; after a failure, nothing more is run."""
        if self.error is not None or self._tmp is None:
            return
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(self._venv / "bin" / "python"), str(DRIVER), self._tmp.name],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            cwd=self._tmp.name,
        )
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            self.error = f"freqtrade backtest failed (exit {done.returncode}): {_last_line(done.stderr)}"
            return
        out = json.loads(_last_line(done.stdout, "{"))
        self.runs.append(
            FreqtradeRun(out["backtest_s"], out["backtest_cpu_s"], wall, out["candles"], out["trades"], out["shorts"])
        )

    def result(self) -> FreqtradeRun | str:
        """The best of the runs (each time its own minimum), or why there is none."""
        if self.error is not None or not self.runs:
            return self.error or "freqtrade was not run"
        best = min(self.runs, key=lambda r: r.backtest_s)
        return FreqtradeRun(
            best.backtest_s,
            min(r.cpu_s for r in self.runs),
            min(r.wall_s for r in self.runs),
            best.candles,
            best.trades,
            best.shorts,
        )
