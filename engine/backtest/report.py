"""Backtest metrics, the JSON report (deterministic bytes) and the equity-curve PNG."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.backtest.fills import ClosedTrade
from engine.backtest.runner import BacktestResult

EXIT_REASONS = ("stop_loss", "take_profit", "break_even", "profit_lock", "trailing_stop", "kill_switch", "liquidation")
CENT = Decimal("0.00000001")


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(x: Decimal) -> str:
    """Decimal strings, normalised to 8 places so the report is stable and readable."""
    return f"{x.quantize(CENT) + 0:f}"  # '+ 0' turns -0 into 0; ':f' never writes '0E-8'


def metrics(result: BacktestResult) -> dict[str, Any]:
    trades = result.trades
    wins = [t.net_pnl for t in trades if t.net_pnl > 0]
    losses = [t.net_pnl for t in trades if t.net_pnl <= 0]
    net = sum((t.net_pnl for t in trades), Decimal(0))
    fees = sum((t.fees for t in trades), Decimal(0))
    gross_loss = -sum(losses, Decimal(0))
    profit_factor = None if gross_loss == 0 else float(sum(wins, Decimal(0)) / gross_loss)
    peak, max_dd = result.initial_equity, Decimal(0)
    for point in result.equity:
        peak = max(peak, point.equity)
        if peak > 0:
            max_dd = max(max_dd, (peak - point.equity) / peak * 100)
    by_reason = {reason: sum(1 for t in trades if t.exit_reason == reason) for reason in EXIT_REASONS}
    final = result.equity[-1].equity if result.equity else result.initial_equity
    return {
        "trades": len(trades),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": round(len(wins) / len(trades), 6) if trades else 0.0,
        "profit_factor": None if profit_factor is None else round(profit_factor, 6),
        "net_pnl": _num(net),
        "fees": _num(fees),
        "max_drawdown_pct": round(float(max_dd), 6),
        "sharpe": round(daily_sharpe(result), 6),
        "exposure_pct": round(100 * result.bars_in_market / result.bars, 6) if result.bars else 0.0,
        "initial_equity": _num(result.initial_equity),
        "final_equity": _num(final),
        "return_pct": round(float((final - result.initial_equity) / result.initial_equity * 100), 6),
        "exits_by_reason": by_reason,
        "bars": result.bars,
        "signals_passed": result.decisions_passed,
        "entries_refused": result.entries_refused,
        # In the final equity (marked at the last close) but not in the trades or the net PnL.
        "open_at_end": [
            {
                "symbol": pos.symbol,
                "side": pos.side.value,
                "entry_price": str(pos.entry_price),
                "unrealized_pnl": str(pos.unrealized(close)),
            }
            for pos, close in result.open_at_end
        ],
    }


def daily_sharpe(result: BacktestResult) -> float:
    """Annualised Sharpe of daily equity returns (365 trading days: crypto never closes); 0 with < 2 days."""
    closes: dict[int, Decimal] = {}
    for point in result.equity:
        closes[point.ts // 86_400_000] = point.equity
    values = [result.initial_equity, *closes.values()]
    rets = [float(b / a - 1) for a, b in itertools.pairwise(values) if a > 0]
    if len(rets) < 2:
        return 0.0
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    return 0.0 if var == 0 else mean / math.sqrt(var) * math.sqrt(365)


def trade_dict(t: ClosedTrade) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "side": t.side.value,
        "entry_time": iso(t.entry_ts),
        "exit_time": iso(t.exit_ts),
        "entry_price": str(t.entry_price),
        "exit_price": str(t.exit_price),
        "contracts": t.lots,
        "multiplier": str(t.multiplier),
        "leverage": t.leverage,
        "fees": str(t.fees),
        "gross_pnl": str(t.gross_pnl),
        "net_pnl": str(t.net_pnl),
        "exit_reason": t.exit_reason,
        "initial_stop": str(t.initial_stop),
        "initial_take_profit": str(t.initial_take_profit),
        "stop_moves": [{"time": iso(m.ts), "price": str(m.price), "reason": m.reason} for m in t.stop_moves],
    }


def report(result: BacktestResult, *, meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "metrics": metrics(result), "trades": [trade_dict(t) for t in result.trades]}


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_equity_png(result: BacktestResult, path: Path, title: str) -> None:
    """Equity curve with the trades' exits marked; a trader would rather look than read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(ts: int) -> float:
        return float(mdates.date2num(datetime.fromtimestamp(ts / 1000, tz=UTC)))  # type: ignore[no-untyped-call]

    xs = [when(p.ts) for p in result.equity]
    ys = [float(p.equity) for p in result.equity]
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=100)
    ax.plot(xs, ys, linewidth=1.2, color="#1f77b4", label="equity (USDT, mark-to-market)")
    ax.axhline(float(result.initial_equity), color="#999999", linewidth=0.8, linestyle="--")
    for t in result.trades:
        ax.axvline(
            when(t.exit_ts),
            color="#2ca02c" if t.net_pnl > 0 else "#d62728",
            alpha=0.25,
            linewidth=0.8,
        )
    ax.set_title(title)
    ax.set_ylabel("USDT")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def summary_text(m: dict[str, Any]) -> str:
    pf = f"{m['profit_factor']:.2f}" if m["profit_factor"] is not None else "n/a (no trades)"
    if m["profit_factor"] is None and m["trades"]:
        pf = "n/a (no losing trade)"
    exits = ", ".join(f"{k} {v}" for k, v in m["exits_by_reason"].items() if v)
    refused = ", ".join(f"{k} {v}" for k, v in m["entries_refused"].items()) or "none"
    return "\n".join(
        [
            f"trades           {m['trades']} ({m['wins']} won, {m['losses']} lost)",
            f"win rate         {m['win_rate'] * 100:.1f} %",
            f"profit factor    {pf}",
            f"net PnL          {Decimal(m['net_pnl']):.2f} USDT after fees ({m['return_pct']:.2f} %)",
            f"fees paid        {Decimal(m['fees']):.2f} USDT",
            f"max drawdown     {m['max_drawdown_pct']:.2f} %",
            f"Sharpe           {m['sharpe']:.2f} (annualised, from daily returns)",
            f"exposure         {m['exposure_pct']:.1f} % of bars",
            f"exits            {exits or 'none'}",
            f"signals passed   {m['signals_passed']} (entries refused by risk checks: {refused})",
            *_open_at_end_line(m),
        ]
    )


def _open_at_end_line(m: dict[str, Any]) -> list[str]:
    still = m["open_at_end"]
    if not still:
        return []
    unrealized = sum((Decimal(p["unrealized_pnl"]) for p in still), Decimal(0))
    return [
        f"open at the end  {len(still)} position(s), unrealised {unrealized:.2f} USDT before exit fees: "
        "in the final equity, not in the trades or the net PnL"
    ]
