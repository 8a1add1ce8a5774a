"""``./start.sh backtest``: the strategy over candle files, a readable summary and an optional JSON report."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from engine.backtest.report import iso, report, summary_text, write_equity_png, write_json
from engine.backtest.runner import Backtester, progress_to_stderr
from engine.config.errors import ConfigError
from engine.config.strategy import StrategyConfig, load_strategy_config
from engine.marketdata.candle_files import CandleFileError, load_candles
from engine.models import Candle
from engine.risk.contract import ContractSpecError, load_contract_specs, require_spec


class UsageError(Exception):
    """A bad argument: one clear line and exit code 2."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="./start.sh backtest", description="Backtest ENYGMA over KuCoin candle files.")
    p.add_argument("--symbol", action="append", default=[], help="symbol to trade (repeatable), e.g. ETHUSDTM")
    p.add_argument("--all", action="store_true", help="every symbol with a 5min file in --data-dir")
    p.add_argument("--data-dir", type=Path, required=True, help="directory of candle files and contracts.json")
    p.add_argument("--from", dest="date_from", help="first UTC date to trade (YYYY-MM-DD); earlier data warms up")
    p.add_argument("--to", dest="date_to", help="UTC date to stop opening trades (YYYY-MM-DD, exclusive)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--strict", action="store_true", help="STRICT gates (the config's default)")
    mode.add_argument("--canonical", action="store_true", help="canonical gates (75 / 0.85, no cross event)")
    p.add_argument("--json", type=Path, help="write the report here (and an equity PNG next to it)")
    p.add_argument("--equity", default="10000", help="starting equity in USDT (default 10000)")
    p.add_argument("--config", type=Path, help="strategy config (default docs/STRATEGY_CONFIG.json)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


def _date_ms(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    try:
        return int(datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a date like 2026-01-01") from None


def _require_bars_in_window(
    data: dict[str, list[Candle]], start: int | None, end: int | None, date_from: str | None, date_to: str | None
) -> None:
    """A window outside the data would print a report of zero trades, as if the strategy had stayed out."""
    stamps = [c.ts for candles in data.values() for c in candles]
    if any((start is None or ts >= start) and (end is None or ts < end) for ts in stamps):
        return
    have = f"the data runs {iso(min(stamps))} to {iso(max(stamps))}" if stamps else "the candle files are empty"
    raise UsageError(f"no candles in the window --from {date_from or '-'} --to {date_to or '-'}: {have}")


def _refuse_unmodelled(cfg: StrategyConfig) -> None:
    """Settings the fill model cannot reproduce: running as if they were off would report another strategy."""
    unmodelled = [
        name
        for name, on in (
            ("riskManagement.partialTakeProfitEnabled", cfg.risk_management.partial_take_profit_enabled),
            ("fees.fundingInBacktest (no funding data)", cfg.fees.funding_in_backtest),
            ("backtest.feesIncluded = false", not cfg.backtest.fees_included),
        )
        if on
    ]
    if unmodelled:
        raise UsageError(f"not modelled by the backtest: {', '.join(unmodelled)}; change the strategy config")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except (UsageError, ConfigError, CandleFileError, ContractSpecError) as exc:
        print(f"backtest: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    if not data_dir.is_dir():
        raise UsageError(f"data directory not found: {data_dir}")
    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"report directory not found: {args.json.parent}")
    cfg = load_strategy_config(args.config)
    _refuse_unmodelled(cfg)
    if args.strict or args.canonical:
        cfg = cfg.with_strict(bool(args.strict))
    primary = cfg.timeframes.primary
    symbols = sorted({p.name.split("_")[0] for p in data_dir.glob(f"*_{primary}_*.json")}) if args.all else []
    if args.all and not symbols:
        raise UsageError(f"--all found no {primary} candle files in {data_dir}")
    symbols = sorted(set(symbols) | {s.upper() for s in args.symbol})
    if not symbols:
        raise UsageError("name at least one --symbol, or --all")
    start, end = _date_ms(args.date_from, "--from"), _date_ms(args.date_to, "--to")
    if start is not None and end is not None and start >= end:
        raise UsageError("--from must be before --to")
    try:
        equity = Decimal(args.equity)
    except InvalidOperation:
        equity = Decimal("NaN")
    if not equity.is_finite():
        raise UsageError(f"--equity {args.equity!r} is not a number")
    if not equity > 0:
        raise UsageError("--equity must be positive")
    specs = load_contract_specs(data_dir / "contracts.json")
    data = {}
    for sym in symbols:
        require_spec(specs, sym)
        data[sym] = load_candles(data_dir, sym, primary)
    _require_bars_in_window(data, start, end, args.date_from, args.date_to)
    result = Backtester(cfg, data, specs, equity=equity, trade_from_ms=start, trade_to_ms=end).run(
        None if args.quiet else progress_to_stderr
    )
    meta = {
        "symbols": symbols,
        "mode": "strict" if cfg.strict_mode.enabled else "canonical",
        "timeframes": [primary, cfg.timeframes.confirmation],
        "from": args.date_from,
        "to": args.date_to,
        "strategy_version": cfg.version.version,
        "slippage_fraction": str(cfg.backtest.slippage_fraction),
        "taker_fee": str(cfg.fees.taker_fee),
    }
    rep = report(result, meta=meta)
    png = None if args.json is None else args.json.with_suffix(".png")
    if args.json is not None and png is not None:  # written before the summary, which may go into a closed pipe
        try:
            write_json(rep, args.json)
            write_equity_png(result, png, f"ENYGMA {meta['mode']} — {', '.join(symbols)}")
        except OSError as exc:
            raise UsageError(f"cannot write the report: {exc}") from None
    try:
        print(f"ENYGMA backtest: {', '.join(symbols)} ({meta['mode']}, {result.bars} bars)")
        print(summary_text(rep["metrics"]))
        if png is not None:
            print(f"report: {args.json}  equity chart: {png}")
        sys.stdout.flush()
    except BrokenPipeError:  # '| head': the reader has what it wanted; no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
