"""The shared-account runner on hand-built candles: equity bookkeeping at exits, entries across candle gaps."""

from __future__ import annotations

from decimal import Decimal as D

from engine.backtest.fills import dec, open_position
from engine.backtest.runner import Backtester
from engine.config import default_strategy_config
from engine.config.strategy import StrategyConfig
from engine.gates.result import GateResult
from engine.models import Candle, Side
from engine.risk import ContractSpec
from engine.scoring.pipeline import Decision
from engine.scoring.series import SeriesDecisions
from engine.scoring.signals import Direction

CFG = default_strategy_config()
STEP = 300_000
T = 1_766_016_000_000


def spec(symbol: str) -> ContractSpec:
    return ContractSpec(symbol=symbol, multiplier=D(1), lot_size=1, tick_size=D("0.01"), max_leverage=50)


def bar(i: int, o: float, h: float, lo: float, c: float) -> Candle:
    return Candle(T + i * STEP, o, h, lo, c, 100.0)


def long_decision(symbol: str, ts: int) -> Decision:
    return Decision(symbol, ts, 100.0, 90.0, "STRONG_BUY", Direction.BULLISH, 0.9, 0.5, [GateResult("ok", True)])


def test_equity_after_an_exit_counts_the_trade_once() -> None:
    """At an exit the account's equity is initial + realised + the other positions' marks, not the closed
    position's last mark on top of its realised PnL (which sized the next entry on phantom money)."""
    candles = [bar(0, 100, 100, 100, 100), bar(1, 100, 101.2, 100, 101), bar(2, 101, 104, 100.9, 103.5)]
    bt = Backtester(CFG, {"AAAUSDTM": candles}, {"AAAUSDTM": spec("AAAUSDTM")})
    run = bt.runs[0]
    run.position = open_position(
        CFG, symbol="AAAUSDTM", side=Side.LONG, bar=candles[0], lots=10, leverage=10, spec=run.spec
    )
    run.index, run.last_close = 1, dec(candles[0].close)
    bt._bar(candles[1].ts)  # close 101: marked with unrealised +9.8
    assert run.position is not None
    assert bt.risk.equity == D(10000) + run.position.unrealized(D(101))
    bt._execute(run, candles[2], candles[2].ts)  # TP 103.02 hit
    assert run.position is None and len(bt.trades) == 1
    assert bt.risk.equity == D(10000) + bt.trades[0].net_pnl


def test_a_signal_before_a_candle_gap_is_not_filled_after_it() -> None:
    """§10.11: the entry fills at bar t+1's open. When bar t+1 is missing the signal is stale: the next candle
    after the gap (hours later, at another price) must not fill it."""
    candles = [bar(0, 100, 100, 100, 100), bar(13, 90, 90.3, 89.9, 90.2)]  # 12 bars missing
    bt = Backtester(CFG, {"AAAUSDTM": candles}, {"AAAUSDTM": spec("AAAUSDTM")})
    run = bt.runs[0]
    run.index, run.last_close = 1, dec(candles[0].close)
    run.pending = long_decision("AAAUSDTM", candles[0].ts)
    bt._bar(candles[1].ts)
    assert run.position is None and run.pending is None and not bt.trades
    # Without the gap the same signal fills at the next open.
    nxt = [bar(0, 100, 100, 100, 100), bar(1, 100.5, 100.6, 100.4, 100.5)]
    bt2 = Backtester(CFG, {"AAAUSDTM": nxt}, {"AAAUSDTM": spec("AAAUSDTM")})
    run2 = bt2.runs[0]
    run2.index, run2.last_close = 1, dec(nxt[0].close)
    run2.pending = long_decision("AAAUSDTM", nxt[0].ts)
    bt2._bar(nxt[1].ts)
    assert run2.position is not None and run2.position.entry_price == D("100.5") * D("1.0002")


def test_metrics_cover_the_window_not_the_warm_up_or_the_idle_tail() -> None:
    """With --from/--to the bars, exposure, equity curve (hence Sharpe and drawdown) and signal count are the
    window's: the warm-up before --from and the flat bars after --to, once every position has closed, are not
    part of what the trader asked to test."""
    candles = [bar(i, 100, 100.1, 99.9, 100) for i in range(40)]
    start, end = candles[10].ts, candles[20].ts
    bt = Backtester(CFG, {"AAAUSDTM": candles}, {"AAAUSDTM": spec("AAAUSDTM")}, trade_from_ms=start, trade_to_ms=end)
    real_bar = bt._bar

    def bar_with_a_position(ts: int) -> None:
        if ts == candles[12].ts:  # a long from bar 12 to a stop at bar 24, past --to
            run = bt.runs[0]
            run.position = open_position(
                CFG, symbol="AAAUSDTM", side=Side.LONG, bar=candles[12], lots=10, leverage=10, spec=run.spec
            )
        if ts == candles[24].ts:
            bt.runs[0].candles[24] = bar(24, 100, 100.1, 98, 99)
        real_bar(ts)

    bt._bar = bar_with_a_position  # type: ignore[method-assign]
    result = bt.run()
    assert len(result.trades) == 1 and result.trades[0].exit_ts == candles[24].ts
    assert result.bars == 15  # bars 10..24: the window, then until the last position closed
    assert result.bars_in_market == 13  # open during bars 12..24 (24: stopped)
    assert [p.ts for p in result.equity] == [c.ts + STEP for c in candles[10:25]]


def test_a_position_still_open_when_the_data_ends_is_reported() -> None:
    """The trade list and net PnL hold closed trades only; a position open at the end moved the final equity
    and the return with no trade to show for it. The report names it and its unrealised PnL."""
    from engine.backtest.report import metrics, summary_text

    candles = [bar(i, 100, 100.1, 99.9, 100) for i in range(5)]
    candles[-1] = bar(4, 100, 100.6, 99.9, 100.5)
    bt = Backtester(CFG, {"AAAUSDTM": candles}, {"AAAUSDTM": spec("AAAUSDTM")})
    real_bar = bt._bar

    def bar_with_a_position(ts: int) -> None:
        if ts == candles[1].ts:
            run = bt.runs[0]
            run.position = open_position(
                CFG, symbol="AAAUSDTM", side=Side.LONG, bar=candles[1], lots=10, leverage=10, spec=run.spec
            )
        real_bar(ts)

    bt._bar = bar_with_a_position  # type: ignore[method-assign]
    m = metrics(bt.run())
    assert m["trades"] == 0 and m["net_pnl"] == "0.00000000"
    unrealised = D(10) * (D("100.5") - D("100.0200")) - D("0.0006") * 10 * D("100.0200")  # entry fee paid
    assert m["open_at_end"] == [
        {"symbol": "AAAUSDTM", "side": "long", "entry_price": "100.0200", "unrealized_pnl": str(unrealised)}
    ]
    assert D(m["final_equity"]) - D(m["initial_equity"]) == unrealised
    assert "open at the end" in summary_text(m)


def test_the_marked_equity_has_paid_the_entry_fee() -> None:
    """The exchange takes the entry fee at the fill: the account's equity (sizing, total margin, the drawdown
    gate and circuit breaker, the curve) is lower by it for as long as the position is open, as live."""
    candles = [bar(0, 100, 100, 100, 100), bar(1, 100, 100.2, 99.9, 100.1)]
    bt = Backtester(CFG, {"AAAUSDTM": candles}, {"AAAUSDTM": spec("AAAUSDTM")})
    run = bt.runs[0]
    run.position = open_position(
        CFG, symbol="AAAUSDTM", side=Side.LONG, bar=candles[0], lots=10, leverage=10, spec=run.spec
    )
    run.index, run.last_close = 1, dec(candles[0].close)
    bt._bar(candles[1].ts)
    entry_fee = D("0.0006") * 10 * D("100.0200")
    assert bt.risk.equity == D(10000) + 10 * (D("100.1") - D("100.0200")) - entry_fee
    assert bt.curve[-1].equity == bt.risk.equity


def test_exposure_counts_every_bar_a_position_was_open_in() -> None:
    """A position entered at bar 1's open and stopped during bar 3 was in the market for bars 1, 2 and 3; one
    opened and stopped within bar 5 was in the market for bar 5. Only marks at bar closes were counted, so the
    exit bar (and a whole same-bar trade) was left out."""
    a = [bar(0, 100, 100, 100, 100), bar(1, 100, 100.2, 99.9, 100.1), bar(2, 100, 100.2, 99.9, 100.1)]
    a += [bar(3, 100, 100.1, 98, 99), bar(4, 99, 99, 99, 99), bar(5, 99, 99, 99, 99)]
    b = [bar(i, 100, 100.1, 99.9, 100) for i in range(5)] + [bar(5, 100, 100.1, 98, 99)]
    bt = Backtester(CFG, {"AAAUSDTM": a, "BBBUSDTM": b}, {s: spec(s) for s in ("AAAUSDTM", "BBBUSDTM")})
    real_bar = bt._bar

    def bar_with_entries(ts: int) -> None:
        if ts == a[1].ts:
            bt.runs[0].pending = long_decision("AAAUSDTM", ts - STEP)
        if ts == b[5].ts:
            bt.runs[1].pending = long_decision("BBBUSDTM", ts - STEP)
        real_bar(ts)

    bt._bar = bar_with_entries  # type: ignore[method-assign]
    result = bt.run()
    assert [(t.symbol, t.entry_ts, t.exit_ts) for t in result.trades] == [
        ("AAAUSDTM", a[1].ts, a[3].ts),
        ("BBBUSDTM", b[5].ts, b[5].ts),
    ]
    assert result.bars_in_market == 4  # bars 1, 2, 3 and 5


def test_report_amounts_are_plain_decimals_and_a_run_without_losses_says_so() -> None:
    """A run without trades printed net_pnl and fees as '0E-8' in the JSON; an all-winning run showed the
    profit factor as 'n/a', which reads as 'not computable' rather than 'no losing trade'."""
    from engine.backtest.report import metrics, summary_text

    candles = [bar(i, 100, 100.1, 99.9, 100) for i in range(3)]
    empty = Backtester(CFG, {"AAAUSDTM": candles}, {"AAAUSDTM": spec("AAAUSDTM")}).run()
    m = metrics(empty)
    assert (m["net_pnl"], m["fees"], m["final_equity"]) == ("0.00000000", "0.00000000", "10000.00000000")
    assert "profit factor    n/a (no trades)" in summary_text(m)

    win = [bar(0, 100, 100, 100, 100), bar(1, 100, 104, 99.9, 103.5), bar(2, 103.5, 103.6, 103.4, 103.5)]
    bt = Backtester(CFG, {"AAAUSDTM": win}, {"AAAUSDTM": spec("AAAUSDTM")})
    real_bar = bt._bar

    def bar_with_entry(ts: int) -> None:
        if ts == win[1].ts:
            bt.runs[0].pending = long_decision("AAAUSDTM", win[0].ts)
        real_bar(ts)

    bt._bar = bar_with_entry  # type: ignore[method-assign]
    m = metrics(bt.run())
    assert m["wins"] == 1 and m["losses"] == 0 and m["profit_factor"] is None
    assert "profit factor    n/a (no losing trade)" in summary_text(m)


def test_entries_at_a_bar_open_come_before_any_exit_during_that_bar() -> None:
    """Every entry of a bar fills at its open, before anything that happens inside the bar. A loss taken during
    the bar by a symbol whose name sorts first must not refuse (here: the fifth loss in a row) an entry another
    symbol made at that bar's open, or the results depend on the symbols' names."""
    a = [bar(0, 100, 100, 100, 100), bar(1, 100, 100.1, 98, 99)]  # AAA's long is stopped during bar 1
    b = [bar(0, 100, 100, 100, 100), bar(1, 100, 100.1, 99.9, 100)]
    bt = Backtester(CFG, {"AAAUSDTM": a, "BBBUSDTM": b}, {s: spec(s) for s in ("AAAUSDTM", "BBBUSDTM")})
    run_a, run_b = bt.runs
    run_a.position = open_position(
        CFG, symbol="AAAUSDTM", side=Side.LONG, bar=a[0], lots=10, leverage=10, spec=spec("AAAUSDTM")
    )
    for run in (run_a, run_b):
        run.index, run.last_close = 1, D(100)
    run_b.pending = long_decision("BBBUSDTM", b[0].ts)
    bt.risk.consecutive_losses = CFG.risk_management.max_consecutive_losses - 1
    bt._bar(a[1].ts)
    assert [t.symbol for t in bt.trades] == ["AAAUSDTM"]
    assert run_b.position is not None and not bt.refused


def test_the_loss_cooldown_runs_from_the_end_of_the_exit_bar() -> None:
    """A stop is hit somewhere inside its bar; live, the 30-minute loss cooldown runs from that moment. Starting
    it at the bar's open let the backtest re-enter one bar before live could (an exit at 10:03 and an entry at
    10:30 are 27 minutes apart). It runs from the bar's last millisecond, still the same UTC day."""
    a = [bar(0, 100, 100, 100, 100), bar(1, 100, 100.1, 98, 99)]  # stopped during bar 1
    a += [bar(i, 99, 99.1, 98.9, 99) for i in range(2, 10)]
    bt = Backtester(CFG, {"AAAUSDTM": a}, {"AAAUSDTM": spec("AAAUSDTM")})
    run = bt.runs[0]
    run.position = open_position(CFG, symbol="AAAUSDTM", side=Side.LONG, bar=a[0], lots=10, leverage=10, spec=run.spec)
    run.index, run.last_close = 1, D(100)
    bt._bar(a[1].ts)
    assert len(bt.trades) == 1 and bt.trades[0].net_pnl < 0
    for i in range(2, 7):
        bt._bar(a[i].ts)
    run.pending = long_decision("AAAUSDTM", a[6].ts)
    bt._bar(a[7].ts)  # 30 minutes after the exit bar's open, 25 after its close: refused
    assert run.position is None and bt.refused == {"loss_cooldown": 1}
    run.pending = long_decision("AAAUSDTM", a[7].ts)
    bt._bar(a[8].ts)
    assert run.position is not None
    assert bt.risk.last_loss_exit_ms["AAAUSDTM"] == a[1].ts + STEP - 1


def test_the_window_applies_to_the_entry_fill_time() -> None:
    """--from/--to bound when trades are opened: the fill at the open after a signal. A signal on the last bar
    before --to filled at the --to instant itself (outside the exclusive window), and a signal on the last
    warm-up bar, which fills exactly at --from, was dropped."""
    candles = [bar(i, 100, 100.1, 99.9, 100) for i in range(12)]
    start, end = candles[3].ts, candles[8].ts
    signals = {candles[2].ts, candles[7].ts}  # fills at bar 3 (== --from) and bar 8 (== --to)

    def decide(cfg: StrategyConfig, symbol: str, bars: list[Candle]) -> SeriesDecisions:
        out = SeriesDecisions.empty(len(bars))
        for i, c in enumerate(bars):
            if c.ts in signals:  # a long at score 90, as long_decision
                out.passed[i], out.final_score[i], out.direction[i], out.atr_pct[i] = True, 90.0, 1, 0.5
        return out

    bt = Backtester(
        CFG,
        {"AAAUSDTM": candles},
        {"AAAUSDTM": spec("AAAUSDTM")},
        trade_from_ms=start,
        trade_to_ms=end,
        decide=decide,
    )
    result = bt.run()
    assert [p.entry_ts for p, _ in result.open_at_end] == [candles[3].ts]
    assert result.decisions_passed == 1


def test_the_summary_says_the_sharpe_is_annualised() -> None:
    """The Sharpe is the annualised (×√365) ratio of daily returns; labelled 'Sharpe (daily)' it read as a
    per-day ratio, about 19 times too large."""
    from engine.backtest.report import metrics, summary_text

    candles = [bar(i, 100, 100.1, 99.9, 100) for i in range(3)]
    text = summary_text(metrics(Backtester(CFG, {"AAAUSDTM": candles}, {"AAAUSDTM": spec("AAAUSDTM")}).run()))
    assert "Sharpe (daily)" not in text
    assert "Sharpe           0.00 (annualised, from daily returns)" in text


def test_a_loss_on_one_symbol_halts_entries_on_the_others() -> None:
    """One account: a loss of more than 5 % of the day's starting equity (and a drawdown past 10 %) taken on AAA
    refuses BBB's next entry with daily_loss_limit and circuit_breaker, and the breaker stays latched the next
    UTC day while the daily limit resets."""
    day = 288
    a = [bar(0, 100, 100, 100, 100), bar(1, 100, 100.1, 98, 99)] + [bar(i, 99, 99, 99, 99) for i in range(2, day + 3)]
    b = [bar(i, 100, 100.1, 99.9, 100) for i in range(day + 3)]
    bt = Backtester(CFG, {"AAAUSDTM": a, "BBBUSDTM": b}, {s: spec(s) for s in ("AAAUSDTM", "BBBUSDTM")})
    run_a, run_b = bt.runs
    run_a.position = open_position(
        CFG, symbol="AAAUSDTM", side=Side.LONG, bar=a[0], lots=1200, leverage=10, spec=spec("AAAUSDTM")
    )
    for run in (run_a, run_b):
        run.index, run.last_close = 1, D(100)
    bt._bar(a[1].ts)
    assert bt.trades[0].net_pnl < D(-1000)  # over 10 % of 10 000
    run_b.pending = long_decision("BBBUSDTM", b[1].ts)
    bt._bar(b[2].ts)
    assert run_b.position is None
    assert bt.refused == {"circuit_breaker": 1, "daily_loss_limit": 1}
    for i in range(3, day + 2):
        bt._bar(b[i].ts)
    run_b.pending = long_decision("BBBUSDTM", b[day + 1].ts)
    bt._bar(b[day + 2].ts)  # the next UTC day
    assert run_b.position is None
    assert bt.refused == {"circuit_breaker": 2, "daily_loss_limit": 1}
