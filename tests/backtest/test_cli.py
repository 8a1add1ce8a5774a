"""``./start.sh backtest`` on the real shared data: report shape, determinism, trade arithmetic, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from engine.backtest.__main__ import main
from tests.conftest import ROOT

ALLOWED_EXITS = {"stop_loss", "take_profit", "break_even", "profit_lock", "trailing_stop", "kill_switch", "liquidation"}


@pytest.fixture(scope="module")
def reports(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("bt")
    first, second = out / "a.json", out / "b.json"
    for path in (first, second):
        assert main(["--all", "--data-dir", str(data_dir), "--json", str(path), "--quiet"]) == 0
    return first, second


def test_report_is_deterministic_and_has_the_promised_shape(reports: tuple[Path, Path]) -> None:
    first, second = reports
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep: dict[str, Any] = json.loads(first.read_text())
    m = rep["metrics"]
    for key in ("trades", "win_rate", "profit_factor", "net_pnl", "fees", "max_drawdown_pct", "sharpe"):
        assert key in m
    assert m["trades"] == len(rep["trades"]) > 0
    assert sum(m["exits_by_reason"].values()) == m["trades"]
    assert rep["meta"]["symbols"] == ["ETHUSDTM", "SOLUSDTM", "XBTUSDTM", "XRPUSDTM"]
    net = sum(D(t["net_pnl"]) for t in rep["trades"])
    assert abs(D(m["net_pnl"]) - net) <= D("0.00000001") * len(rep["trades"])  # per-trade rounding
    assert D(m["final_equity"]) - D(m["initial_equity"]) == D(m["net_pnl"])  # flat at the end
    assert m["open_at_end"] == []


def test_every_trade_recomputes_independently(reports: tuple[Path, Path]) -> None:
    rep = json.loads(reports[0].read_text())
    for t in rep["trades"]:
        assert t["side"] in ("long", "short") and t["exit_reason"] in ALLOWED_EXITS
        assert t["entry_time"].endswith("Z") and t["entry_time"] <= t["exit_time"]
        s = 1 if t["side"] == "long" else -1
        qty = D(t["contracts"]) * D(t["multiplier"])
        entry, exit_ = D(t["entry_price"]), D(t["exit_price"])
        gross = s * qty * (exit_ - entry)
        fees = D("0.0006") * qty * (entry + exit_)
        assert abs(D(t["net_pnl"]) - (gross - fees)) <= D("0.00000002")
        assert abs(D(t["fees"]) - fees) <= D("0.00000001")
        assert 5 <= t["leverage"] <= 18
        stops = [D(t["initial_stop"])] + [D(m["price"]) for m in t["stop_moves"]]
        assert stops == (sorted(stops) if s == 1 else sorted(stops, reverse=True))  # never untrails
        initial_roi = s * (D(t["initial_stop"]) - entry) / entry * t["leverage"] * 100
        assert D("-10.2") < initial_roi <= D("-9.8")
        if t["exit_reason"] == "stop_loss":
            assert not t["stop_moves"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbol", "ETHUSDTM", "--data-dir", "/nonexistent"], "data directory not found"),
        (["--data-dir", "{data}"], "name at least one --symbol"),
        (["--symbol", "NOPEUSDTM", "--data-dir", "{data}"], "no contract spec for NOPEUSDTM"),
        (
            ["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--from", "2026-01-10", "--to", "2026-01-01"],
            "--from must be before --to",
        ),
        (["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--from", "yesterday"], "is not a date"),
        (["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--equity", "-5"], "--equity must be positive"),
        (["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--equity", "nan"], "--equity 'nan' is not a number"),
        (["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--equity", "inf"], "--equity 'inf' is not a number"),
        (["--all", "--data-dir", "{empty}"], "--all found no 5min candle files in"),
        (["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--json", "{empty}/no/r.json"], "report directory not found"),
        (["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--from", "2027-01-01"], "no candles in the window"),
        (["--symbol", "ETHUSDTM", "--data-dir", "{data}", "--to", "2025-01-01"], "no candles in the window"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str, data_dir: Path, tmp_path: Path) -> None:
    argv = [a.replace("{data}", str(data_dir)).replace("{empty}", str(tmp_path)) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "engine.backtest", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_date_window_trades_only_inside_it(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w.json"
    assert (
        main(
            [
                "--symbol",
                "XRPUSDTM",
                "--symbol",
                "ETHUSDTM",
                "--data-dir",
                str(data_dir),
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-10",
                "--canonical",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    rep = json.loads(out.read_text())
    assert rep["meta"]["mode"] == "canonical"
    assert all("2026-01-01" <= t["entry_time"] < "2026-01-10" for t in rep["trades"])
    assert "trades" in capsys.readouterr().out


def test_output_piped_into_a_closed_reader_is_no_traceback(tmp_path: Path, data_dir: Path) -> None:
    """'./start.sh backtest ... | head -3' closed the pipe under the summary: a BrokenPipeError traceback (and,
    with --json, no report, written after the summary). The report is written and the exit is quiet."""
    import shutil

    shutil.copy(data_dir / "contracts.json", tmp_path / "contracts.json")
    rows = [
        {"ts": 1_766_016_000_000 + i * 300_000, "open": 100, "high": 101, "low": 99, "close": 100, "volume": 5}
        for i in range(30)
    ]
    (tmp_path / "ETHUSDTM_5min_30d.json").write_text(
        json.dumps({"symbol": "ETHUSDTM", "interval": "5min", "candles": rows})
    )
    out = tmp_path / "r.json"
    proc = subprocess.run(
        f"'{sys.executable}' -m engine.backtest --symbol ETHUSDTM --data-dir '{tmp_path}' --json '{out}' --quiet"
        " | head -c 10",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr
    assert out.exists()


def test_every_trade_replays_from_the_candles_by_hand(reports: tuple[Path, Path], data_dir: Path) -> None:
    """An independent replay of each reported trade from the raw candles, with the §10 formulas written out
    here (not the engine's): fill at the open after the signal with 0.02 % slippage, SL/TP tick-rounded,
    intrabar stop first, gap fills at the open, BE / locks / staircase trail and the TP extension at each close,
    and the exit bar, price, stop path and net PnL."""
    from datetime import datetime
    from decimal import ROUND_CEILING, ROUND_FLOOR

    rep = json.loads(reports[0].read_text())
    raw = json.loads((data_dir / "contracts.json").read_text())
    entries = raw.get("contracts", raw) if isinstance(raw, dict) else raw
    specs = {c["symbol"]: c for c in (entries.values() if isinstance(entries, dict) else entries)}
    candles: dict[str, dict[int, dict[str, Any]]] = {}
    for sym in {t["symbol"] for t in rep["trades"]}:
        rows = json.loads((data_dir / f"{sym}_5min_30d.json").read_text())["candles"]
        candles[sym] = {c["ts"]: c for c in rows}

    def ms(text: str) -> int:
        return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() * 1000)

    def rnd(p: D, tick: D, up: bool) -> D:
        return (p / tick).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR) * tick

    fee, slip = D("0.0006"), D("0.0002")
    for t in rep["trades"]:
        cs, tick = candles[t["symbol"]], D(str(specs[t["symbol"]]["tickSize"]))
        s, lev = (1 if t["side"] == "long" else -1), D(t["leverage"])
        ts = ms(t["entry_time"])
        pe = D(repr(cs[ts]["open"])) * (1 + s * slip)

        def at(roi: D, pe: D = pe, s: int = s, lev: D = lev) -> D:
            return pe * (1 + s * roi / (100 * lev))

        stop, tp = rnd(at(D(-10)), tick, s == 1), rnd(at(D(30)), tick, s == -1)
        assert (pe, stop, tp) == (D(t["entry_price"]), D(t["initial_stop"]), D(t["initial_take_profit"]))
        first, tp_roi, trailing, moves = True, D(30), False, []
        while True:
            c = cs[ts]
            o, h, lo, cl = (D(repr(c[k])) for k in ("open", "high", "low", "close"))
            if lo <= stop if s == 1 else h >= stop:
                trigger = o if not first and (o <= stop if s == 1 else o >= stop) else stop
                break
            if h >= tp if s == 1 else lo <= tp:
                trigger = o if not first and (o >= tp if s == 1 else o <= tp) else tp
                break
            roi = s * (cl - pe) / pe * lev * 100
            cands = []
            if roi >= 8:
                be = pe * (1 + s * (fee + 1 / (100 * lev))) / (1 - s * fee)
                cands.append(rnd(be, tick, s == 1))
            cands += [rnd(at(lock), tick, s == 1) for trig, lock in ((10, D(5)), (20, D(15))) if roi >= trig]
            if roi >= 12:
                trailing = True
                cands.append(rnd(at((roi / 2).to_integral_value(ROUND_FLOOR) * 2 - 4), tick, s == 1))
            cands = [x for x in cands if (x < cl if s == 1 else x > cl)]
            new = max([stop, *cands]) if s == 1 else min([stop, *cands])
            if new != stop:
                stop = new
                moves.append(str(stop))
                stop_roi = s * (stop - pe) / pe * lev * 100
                if trailing and stop_roi + 40 > tp_roi:
                    tp_roi = stop_roi + 40
                    new_tp = rnd(at(tp_roi), tick, s == -1)
                    tp = max(tp, new_tp) if s == 1 else min(tp, new_tp)
            ts, first = ts + 300_000, False
        fill = trigger * (1 - s * slip)
        qty = D(t["contracts"]) * D(str(specs[t["symbol"]]["multiplier"]))
        net = s * qty * (fill - pe) - fee * qty * (pe + fill)
        assert ts == ms(t["exit_time"]) and fill == D(t["exit_price"])
        assert moves == [m["price"] for m in t["stop_moves"]]
        assert abs(net - D(t["net_pnl"])) < D("1e-8")


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("riskManagement", "partialTakeProfitEnabled", True, "partialTakeProfitEnabled"),
        ("fees", "fundingInBacktest", True, "fundingInBacktest"),
        ("backtest", "feesIncluded", False, "feesIncluded"),
    ],
)
def test_a_config_the_backtest_cannot_reproduce_is_refused(
    section: str, key: str, value: bool, message: str, tmp_path: Path, data_dir: Path
) -> None:
    """Partial take-profit, funding and fee-free fills are not modelled: such a config ran as if they were off,
    and the report looked like their result. It is one line and exit 2 now."""
    cfg = json.loads((ROOT / "docs" / "STRATEGY_CONFIG.json").read_text())
    cfg[section][key] = value
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    argv = [sys.executable, "-m", "engine.backtest", "--symbol", "ETHUSDTM", "--data-dir", str(data_dir)]
    argv += ["--config", str(path), "--quiet"]
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "not modelled by the backtest" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_progress_into_a_file_is_one_line_per_step(data_dir: Path, tmp_path: Path) -> None:
    """'./start.sh backtest ... > run.log 2>&1' used to glue every step into one line with carriage returns."""
    proc = subprocess.run(
        [sys.executable, "-m", "engine.backtest", "--symbol", "ETHUSDTM", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "backtest: 0/8640 bars" and lines[-1] == "backtest: 8640/8640 bars"
    assert len(lines) == 6  # every 2,000 bars and the last
