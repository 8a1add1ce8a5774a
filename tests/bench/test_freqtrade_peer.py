"""bench.freqtrade_peer: the candles and markets it hands freqtrade, and how it reports a failed install or run.

freqtrade itself is never installed or run here: the install and the backtest go through a stand-in
``bin/python`` (a shell script) in a throwaway venv folder, so the real subprocess handling is what is tested.
"""

from __future__ import annotations

import itertools
import json
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from bench import freqtrade_peer as ft
from engine.marketdata.candle_files import load_candles
from engine.models import Candle
from engine.risk.contract import load_contract_specs

T0 = 1_766_030_100_000  # 2025-12-18 03:55 UTC, the first ETHUSDTM 5min candle in the shared file


def test_pairs_and_file_names() -> None:
    assert ft.freqtrade_pair("ETHUSDTM") == "ETH/USDT:USDT"
    assert ft.freqtrade_pair("XBTUSDTM") == "BTC/USDT:USDT"
    assert ft.pair_file_stem("BTC/USDT:USDT") == "BTC_USDT_USDT"
    for bad in ("ETHUSDT", "USDTM", "XBTUSDM"):
        with pytest.raises(ValueError, match="not a KuCoin USDT-M perpetual"):
            ft.freqtrade_pair(bad)


def test_rows_and_hours_across_an_hour_boundary_and_a_gap() -> None:
    candles = [
        Candle(T0, 10.0, 12.0, 9.0, 11.0, 5.0),  # 03:55
        Candle(T0 + 300_000, 11.0, 15.0, 10.5, 14.0, 1.0),  # 04:00, a new hour
        Candle(T0 + 600_000, 14.0, 14.5, 8.0, 9.5, 2.5),  # 04:05
        Candle(T0 + 2 * 3_600_000, 9.5, 9.6, 9.4, 9.45, 7.0),  # 05:55, 04:10-05:50 missing: no 05:00 invented
    ]
    assert ft.ohlcv_rows(candles[:1]) == [[T0, 10.0, 12.0, 9.0, 11.0, 5.0]]
    h3, h4, h5 = T0 - 55 * 60_000, T0 + 5 * 60_000, T0 + 65 * 60_000
    assert ft.hourly_rows(candles) == [
        [h3, 10.0, 12.0, 9.0, 11.0, 5.0],
        [h4, 11.0, 15.0, 8.0, 9.5, 3.5],
        [h5, 9.5, 9.6, 9.4, 9.45, 7.0],
    ]


def test_workdir_from_the_shared_files(data_dir: Path, tmp_path: Path) -> None:
    symbols = ("ETHUSDTM", "XBTUSDTM")
    data = {s: load_candles(data_dir, s, "5min") for s in symbols}
    specs = load_contract_specs(data_dir / "contracts.json")
    assert ft.write_workdir(tmp_path, data, specs) == ["ETH/USDT:USDT", "BTC/USDT:USDT"]

    eth = json.loads((tmp_path / "data/futures/ETH_USDT_USDT-5m-futures.json").read_text())
    assert len(eth) == 8640
    first = data["ETHUSDTM"][0]
    assert eth[0] == [T0, 2829.61, 2832.99, 2829.61, 2831.86, 47115.0] == ft.ohlcv_rows([first])[0]
    mark = json.loads((tmp_path / "data/futures/BTC_USDT_USDT-1h-mark.json").read_text())
    assert len(mark) == 721  # 30 days of hours, the first and last partial
    assert all(b[0] - a[0] == 3_600_000 for a, b in itertools.pairwise(mark))

    markets = {m["symbol"]: m for m in json.loads((tmp_path / "markets.json").read_text())}
    btc = markets["BTC/USDT:USDT"]
    assert (btc["id"], btc["contractSize"], btc["precision"], btc["limits"]["leverage"]["max"]) == (
        "XBTUSDTM",
        0.001,
        {"amount": 1.0, "price": 0.1},
        125,
    )
    assert Decimal(str(btc["taker"])) == specs["XBTUSDTM"].taker_fee == Decimal("0.0006")

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["trading_mode"] == "futures"
    assert config["exchange"]["pair_whitelist"] == ["ETH/USDT:USDT", "BTC/USDT:USDT"]
    assert (config["max_open_trades"], config["fee"], config["futures_funding_rate"]) == (2, 0.0006, 0)
    assert Path(config["strategy_path"], "sma_cross.py").is_file()


def _fake_venv(tmp_path: Path, script: str) -> Path:
    """A venv folder whose ``bin/python`` is ``script`` (sh), standing in for pip or the driver."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n" + script)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return venv


def test_install_reports_pip_failure_in_one_line(tmp_path: Path) -> None:
    venv = _fake_venv(
        tmp_path,
        'case "$1" in -c) exit 1;; esac\n'
        "echo 'WARNING: Retrying after connection broken' >&2\n"
        "echo 'ERROR: Could not find a version that satisfies the requirement freqtrade==2026.9' >&2\n"
        "echo 'ERROR: No matching distribution found for freqtrade==2026.9' >&2\n"
        "exit 1\n",
    )
    assert ft.installed_version(venv) is None
    assert ft.install(venv) == (
        "pip install freqtrade==2026.9 failed: ERROR: No matching distribution found for freqtrade==2026.9"
    )


def test_install_skips_when_the_pinned_version_is_there(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    venv = _fake_venv(tmp_path, f'echo "$@" >> {calls}\necho {ft.FREQTRADE_VERSION}\n')
    assert ft.install(venv) is None
    assert calls.read_text().count("pip") == 0


def test_peer_keeps_the_best_of_two_runs(data_dir: Path, tmp_path: Path) -> None:
    # The stand-in driver answers 9.5 s (7.0 s CPU) then 8.25 s (7.5 s CPU), as freqtrade_driver.py prints it.
    runs = tmp_path / "runs"
    venv = _fake_venv(
        tmp_path,
        f'echo run >> {runs}\ntest -f "$2/config.json" || exit 3\necho "freqtrade says hello"\n'
        f"if [ $(wc -l < {runs}) -eq 1 ]; then s=9.5 c=7.0; else s=8.25 c=7.5; fi\n"
        'echo "{\\"setup_s\\": 0.2, \\"load_s\\": 1.5, \\"backtest_s\\": $s, \\"backtest_cpu_s\\": $c, '
        '\\"candles\\": 17280, \\"trades\\": 729, \\"shorts\\": 364}"\n',
    )
    data = {s: load_candles(data_dir, s, "5min") for s in ("ETHUSDTM", "XBTUSDTM")}
    specs = load_contract_specs(data_dir / "contracts.json")
    with ft.Peer(data, specs, venv=venv) as peer:
        workdir = peer.workdir
        peer.run()
        peer.run()
    assert workdir is not None
    assert not workdir.exists()  # the converted candles go with the peer
    run = peer.result()
    assert isinstance(run, ft.FreqtradeRun)
    assert (run.backtest_s, run.cpu_s, run.candles, run.trades, run.shorts) == (8.25, 7.0, 17280, 729, 364)
    assert 0 < run.wall_s < 30
    assert runs.read_text() == "run\nrun\n"


def test_peer_reports_a_failed_backtest_and_runs_no_more(data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    venv = _fake_venv(
        tmp_path,
        f"echo run >> {runs}\n"
        "echo 'Traceback (most recent call last):' >&2\n"
        "echo 'freqtrade.exceptions.OperationalException: No data found. Terminating.' >&2\nexit 2\n",
    )
    data = {"ETHUSDTM": load_candles(data_dir, "ETHUSDTM", "5min")}
    specs = load_contract_specs(data_dir / "contracts.json")
    with ft.Peer(data, specs, venv=venv) as peer:
        peer.run()
        peer.run()
    assert peer.result() == (
        "freqtrade backtest failed (exit 2): freqtrade.exceptions.OperationalException: No data found. Terminating."
    )
    assert runs.read_text() == "run\n"
