"""``./start.sh fetch-candles`` against the simulator's public endpoints: files the backtest reads as it reads
the shared data, gaps kept as gaps, and clear errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.backtest.__main__ import main as backtest_main
from engine.marketdata.candle_files import load_candles
from engine.marketdata.fetch import DAY_MS, FetchError, closed_range, fetch, main, parse_args
from engine.risk.contract import load_contract_specs
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from tests.exchange.conftest import sim

__all__ = ["sim"]  # the simulator fixture
STEP = 300_000


def test_closed_range_ends_on_the_last_closed_candle() -> None:
    now = 1_766_017_800_000 + 2 * STEP + 17_000  # 17 s into a candle
    assert closed_range(now, "5min", 1) == (now - 17_000 - STEP - DAY_MS + STEP, now - 17_000 - STEP)


async def test_fetched_files_load_like_the_shared_data_and_backtest(
    sim: SimulatorServer, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time() * 1000)
    series = load_candles(data_dir, "ETHUSDTM", "5min")
    shift = (now - now % STEP - STEP) - series[-1].ts  # the recorded month, ending at the last closed candle
    rows = [[c.ts + shift, c.open, c.high, c.low, c.close, c.volume] for c in series]
    del rows[5000:5003]  # three bars the exchange does not have
    rows.append([now - now % STEP, 1.0, 1.0, 1.0, 1.0, 1.0])  # the candle still forming: not fetched
    sim.candles[("ETHUSDTM", 5)] = rows
    out = tmp_path / "candles"
    (out).mkdir()
    (out / "ETHUSDTM_5min_7d.json").write_text("{}")  # an older download of another span: replaced
    async with KucoinFuturesClient(sim.rest_url) as client:
        done = await fetch(client, ["ETHUSDTM"], days=30, intervals=["5min"], out_dir=out, now_ms=now)
    assert [(f.candles, f.missing) for f in done] == [(8637, 3)]
    assert sorted(p.name for p in out.iterdir()) == ["ETHUSDTM_5min_30d.json", "contracts.json"]
    got = load_candles(out, "ETHUSDTM", "5min")
    want = [c for i, c in enumerate(series) if not 5000 <= i < 5003]
    assert [(c.ts - shift, c.open, c.high, c.low, c.close, c.volume) for c in got] == [
        (c.ts, c.open, c.high, c.low, c.close, c.volume) for c in want
    ]
    assert (
        load_contract_specs(out / "contracts.json")["ETHUSDTM"]
        == load_contract_specs(data_dir / "contracts.json")["ETHUSDTM"]
    )
    report = tmp_path / "r.json"
    assert backtest_main(["--symbol", "ETHUSDTM", "--data-dir", str(out), "--json", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["metrics"]["trades"] >= 1


async def test_an_unknown_symbol_writes_nothing(sim: SimulatorServer, tmp_path: Path) -> None:
    async with KucoinFuturesClient(sim.rest_url) as client:
        with pytest.raises(FetchError, match="not an active KuCoin futures contract: NOPEUSDTM"):
            await fetch(client, ["ETHUSDTM", "NOPEUSDTM"], days=1, intervals=["5min"], out_dir=tmp_path / "o", now_ms=0)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--symbols", ",", "--days", "3"], "--symbols names no contract"),
        (["--symbols", "ETHUSDTM", "--days", "0"], "--days 0 is outside 1-365"),
        (["--symbols", "ETHUSDTM", "--intervals", "7min"], "unknown timeframe '7min'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_an_unreachable_exchange_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # bound, not listening: refused, and held so nobody else can listen there meanwhile
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code = main(["--symbols", "ETHUSDTM", "--out", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("fetch-candles: error: http://127.0.0.1:") and err.count("\n") == 1
