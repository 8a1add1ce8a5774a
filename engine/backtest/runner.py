"""Run the strategy over several symbols with one shared account, bar by bar in time order."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from engine.backtest.fills import ClosedTrade, OpenPosition, check_exit, dec, open_position, update_stops
from engine.config.strategy import StrategyConfig
from engine.heap import settle_long_lived
from engine.models import Candle, Side, timeframe_ms
from engine.risk.contract import ContractSpec
from engine.risk.formulas import position_size, select_leverage
from engine.risk.limits import RiskState
from engine.risk.pretrade import EntryProposal, pretrade_checks
from engine.scoring.series import EntryIntent, SeriesDecisions, decide_series, drawdown_allows

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class EquityPoint:
    ts: int
    equity: Decimal


@dataclass
class BacktestResult:
    trades: list[ClosedTrade]
    equity: list[EquityPoint]
    initial_equity: Decimal
    bars: int
    bars_in_market: int
    decisions_passed: int
    entries_refused: dict[str, int] = field(default_factory=dict)
    open_at_end: list[tuple[OpenPosition, Decimal]] = field(default_factory=list)  # with the last close


@dataclass
class _SymbolRun:
    symbol: str
    candles: list[Candle]
    spec: ContractSpec
    decisions: SeriesDecisions  # the strategy's verdict on each of ``candles``, decided up front
    index: int = 0
    pending: EntryIntent | None = None
    position: OpenPosition | None = None
    last_close: Decimal | None = None  # the close of the last bar that ended with a position open


class Backtester:
    """One account trading every symbol of ``data``; candles before ``trade_from_ms`` only warm up.

    ``decide`` gives the strategy's verdict on every candle of a symbol (the benchmark swaps in "never enter" to
    time the account loop alone)."""

    def __init__(
        self,
        cfg: StrategyConfig,
        data: dict[str, list[Candle]],
        specs: dict[str, ContractSpec],
        *,
        equity: Decimal = Decimal(10000),
        trade_from_ms: int | None = None,
        trade_to_ms: int | None = None,
        decide: Callable[[StrategyConfig, str, list[Candle]], SeriesDecisions] = decide_series,
    ) -> None:
        self.cfg = cfg
        self.step = timeframe_ms(cfg.timeframes.primary)
        self.runs = [
            _SymbolRun(sym, candles, specs[sym], decide(cfg, sym, candles)) for sym, candles in sorted(data.items())
        ]
        self.timeline = sorted({c.ts for candles in data.values() for c in candles})
        self.initial = equity
        self.risk = RiskState.start(
            equity,
            self.timeline[0] if self.timeline else 0,
            consecutive_loss_resets_daily=cfg.risk_management.consecutive_loss_halt_resets_daily,
        )
        self.trade_from_ms, self.trade_to_ms = trade_from_ms, trade_to_ms
        self.realized = Decimal(0)
        self.trades: list[ClosedTrade] = []
        self.curve: list[EquityPoint] = []
        self.refused: dict[str, int] = {}
        self.passed = 0
        self.in_market = 0
        self.bars = 0
        self._held = False  # a position was open at some time during the current bar

    def run(self, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        total = len(self.timeline)
        settle_long_lived()  # the loaded history is read-only from here on
        for n, ts in enumerate(self.timeline):
            if progress is not None and n % 2000 == 0:
                progress(n, total)
            if self._after_window(ts) and all(r.position is None and r.pending is None for r in self.runs):
                break  # past --to and flat: the rest is idle bars that would dilute exposure and Sharpe
            self._bar(ts)
        if progress is not None:
            progress(total, total)
        return BacktestResult(
            self.trades,
            self.curve,
            self.initial,
            self.bars,
            self.in_market,
            self.passed,
            dict(sorted(self.refused.items())),
            [(r.position, r.last_close) for r in self.runs if r.position is not None and r.last_close is not None],
        )

    def _bar(self, ts: int) -> None:
        live = [r for r in self.runs if r.index < len(r.candles) and r.candles[r.index].ts == ts]
        self._held = any(r.position is not None for r in self.runs)
        # Every entry of this bar fills at its open, before anything that happens inside the bar on any symbol.
        entered = {run.symbol for run in live if self._enter(run, run.candles[run.index])}
        for run in live:
            bar = run.candles[run.index]
            run.index += 1
            self._execute(run, bar, ts, entry_bar=run.symbol in entered)
            if run.position is not None:  # only an open position is marked at this close (and at the next bar's exit)
                run.last_close = dec(bar.close)
        # Mark-to-market at the bar close, then decide with the drawdown in force.
        unrealized = sum(
            (r.position.unrealized(r.last_close) for r in self.runs if r.position and r.last_close is not None),
            ZERO,
        )
        mark = self.initial + self.realized + unrealized
        close_ts = ts + self.step
        self.risk.mark_equity(mark, close_ts, breaker_pct=self.cfg.risk_management.circuit_breaker_drawdown_pct)
        before = self.trade_from_ms is not None and ts < self.trade_from_ms
        if not before:  # the warm-up before --from is not part of the tested window
            self.bars += 1
            self.curve.append(EquityPoint(close_ts, mark))
            self.in_market += self._held or any(r.position is not None for r in self.runs)
        # A signal now fills at the next open, close_ts: the window bounds that fill (--to exclusive).
        trading = (self.trade_from_ms is None or close_ts >= self.trade_from_ms) and not self._after_window(close_ts)
        # The strategy's verdicts were decided up front (they do not depend on the account); the one gate that reads
        # the account, max drawdown, is applied here with the drawdown in force at this close.
        if not trading or not drawdown_allows(self.cfg, float(self.risk.drawdown_pct)):
            return
        for run in live:
            i = run.index - 1
            if run.decisions.passed[i]:
                self.passed += 1
                if run.position is None:
                    run.pending = run.decisions.entry(i, run.candles[i].ts)

    def _after_window(self, ts: int) -> bool:
        return self.trade_to_ms is not None and ts >= self.trade_to_ms

    def _enter(self, run: _SymbolRun, bar: Candle) -> bool:
        """The pending entry at ``bar``'s open; True when a position opened."""
        if run.pending is None or run.position is not None:
            return False
        decision, run.pending = run.pending, None
        # The fill is bar t+1's open; after a candle gap that bar is missing and the signal is stale.
        if bar.ts == decision.ts + self.step:
            run.position = self._try_entry(run, decision, bar)
        return run.position is not None

    def _execute(self, run: _SymbolRun, bar: Candle, ts: int, *, entry_bar: bool = False) -> None:
        """Exits intrabar (``entry_bar``: the position opened at this bar's open), stop updates at the close."""
        pos = run.position
        if pos is None:
            return
        self._held = True
        closed = check_exit(self.cfg, pos, bar, entry_bar=entry_bar)
        if closed is None:
            update_stops(pos, bar, ts + self.step)
            return
        run.position = None
        self.trades.append(closed)
        self.realized += closed.net_pnl
        # The last mark already holds this position at the previous close: swap that mark for the realised PnL.
        marked = pos.unrealized(run.last_close) if not entry_bar and run.last_close is not None else Decimal(0)
        self.risk.equity += closed.net_pnl - marked
        # Somewhere inside the bar: its last millisecond, so the loss cooldown is never shorter than live's (and
        # the close stays in the bar's UTC day).
        self.risk.record_close(run.symbol, closed.net_pnl, ts + self.step - 1)

    def _try_entry(self, run: _SymbolRun, decision: EntryIntent, bar: Candle) -> OpenPosition | None:
        """Size at the next bar's open (the spec's P_ref), run the §9.4 checks, then fill."""
        cfg = self.cfg
        side = Side.LONG if decision.side == "long" else Side.SHORT
        atr = None if decision.atr_pct is None else Decimal(repr(decision.atr_pct))
        lev = select_leverage(cfg, atr, exchange_max=run.spec.max_leverage, mmr=run.spec.maintenance_margin_rate)
        ref = dec(bar.open)
        size = position_size(
            cfg,
            equity=self.risk.equity,
            abs_score=Decimal(repr(abs(decision.final_score))),
            atr_pct=atr,
            leverage=lev,
            ref_price=ref,
            spec=run.spec,
        )
        margin = run.spec.base_quantity(size.lots) * ref / lev
        open_margins = {r.symbol: r.position.margin for r in self.runs if r.position is not None}
        checks = pretrade_checks(
            cfg, self.risk, EntryProposal(run.symbol, margin, size.lots, run.spec.lot_size, bar.ts), open_margins
        )
        failing = [g.code for g in checks if not g.passed]
        if failing:
            for code in failing:
                self.refused[code] = self.refused.get(code, 0) + 1
            return None
        self.risk.record_entry(run.symbol, bar.ts)
        return open_position(cfg, symbol=run.symbol, side=side, bar=bar, lots=size.lots, leverage=lev, spec=run.spec)


def progress_to_stderr(done: int, total: int) -> None:
    """One line redrawn in a terminal; a line per step in a file or a CI log, where carriage returns glue them."""
    if sys.stderr.isatty():
        print(f"\rbacktest: {done}/{total} bars", end="" if done < total else "\n", file=sys.stderr, flush=True)
    else:
        print(f"backtest: {done}/{total} bars", file=sys.stderr, flush=True)
