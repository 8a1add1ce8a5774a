"""The §10.11 fill model on hand-built candles, with exact numbers."""

from __future__ import annotations

from decimal import Decimal as D

from engine.backtest.fills import check_exit, open_position, update_stops
from engine.config import default_strategy_config
from engine.models import Candle, Side
from engine.risk import ContractSpec

CFG = default_strategy_config()
SPEC = ContractSpec(symbol="TESTUSDTM", multiplier=D(1), lot_size=1, tick_size=D("0.01"), max_leverage=50)
T = 1_766_016_000_000


def bar(o: float, h: float, lo: float, c: float, i: int = 0) -> Candle:
    return Candle(T + i * 300_000, o, h, lo, c, 100.0)


def test_entry_fills_at_next_open_with_adverse_slippage_and_levels_from_fill() -> None:
    pos = open_position(
        CFG, symbol="TESTUSDTM", side=Side.LONG, bar=bar(100, 100.5, 99.8, 100.2), lots=10, leverage=10, spec=SPEC
    )
    assert pos.entry_price == D("100.0200")
    assert (pos.initial_stop, pos.initial_take_profit) == (D("99.02"), D("103.02"))  # stop rounds up, TP down
    short = open_position(
        CFG, symbol="TESTUSDTM", side=Side.SHORT, bar=bar(100, 100.5, 99.8, 100.2), lots=10, leverage=10, spec=SPEC
    )
    assert short.entry_price == D("99.9800")
    assert (short.initial_stop, short.initial_take_profit) == (D("100.97"), D("96.99"))


def test_both_touched_means_stop_first_and_fee_numbers() -> None:
    pos = open_position(
        CFG, symbol="TESTUSDTM", side=Side.LONG, bar=bar(100, 100, 100, 100), lots=10, leverage=10, spec=SPEC
    )
    trade = check_exit(CFG, pos, bar(100, 104, 98, 100, 1), entry_bar=False)
    assert trade is not None and trade.exit_reason == "stop_loss"
    assert trade.exit_price == D("99.02") * (1 - D("0.0002"))
    qty = D(10)
    assert trade.gross_pnl == qty * (trade.exit_price - D("100.0200"))
    assert trade.fees == D("0.0006") * qty * D("100.0200") + D("0.0006") * qty * trade.exit_price
    assert trade.net_pnl == trade.gross_pnl - trade.fees


def test_gap_through_the_stop_fills_at_the_open() -> None:
    pos = open_position(
        CFG, symbol="TESTUSDTM", side=Side.LONG, bar=bar(100, 100, 100, 100), lots=10, leverage=10, spec=SPEC
    )
    trade = check_exit(CFG, pos, bar(98.5, 99, 98, 98.7, 1), entry_bar=False)
    assert trade is not None and trade.exit_price == D("98.5") * (1 - D("0.0002"))
    # On the entry bar itself the open is the fill, so a later low through the stop fills at the stop.
    pos2 = open_position(
        CFG, symbol="TESTUSDTM", side=Side.LONG, bar=bar(100, 100, 100, 100), lots=10, leverage=10, spec=SPEC
    )
    same_bar = check_exit(CFG, pos2, bar(100, 100.1, 98.9, 99, 0), entry_bar=True)
    assert same_bar is not None and same_bar.exit_price == D("99.02") * (1 - D("0.0002"))


def test_take_profit_and_short_mirror() -> None:
    pos = open_position(
        CFG, symbol="TESTUSDTM", side=Side.SHORT, bar=bar(100, 100, 100, 100), lots=5, leverage=10, spec=SPEC
    )
    trade = check_exit(CFG, pos, bar(99, 99.5, 96.5, 97, 1), entry_bar=False)
    assert trade is not None and trade.exit_reason == "take_profit"
    assert trade.exit_price == D("96.99") * (1 + D("0.0002"))
    assert trade.net_pnl > 0


def test_stop_updates_take_effect_next_bar_and_name_the_exit() -> None:
    pos = open_position(
        CFG, symbol="TESTUSDTM", side=Side.LONG, bar=bar(100, 100, 100, 100), lots=10, leverage=10, spec=SPEC
    )
    # Close at 101.05 (gross ROI ≈ 10.3): BE and the 5 % lock; the lock (100.53) wins.
    assert check_exit(CFG, pos, bar(100.5, 101.1, 100.4, 101.05, 1), entry_bar=False) is None
    update_stops(pos, bar(100.5, 101.1, 100.4, 101.05, 1), T + 600_000)
    assert pos.stops.stop == D("100.53") and pos.stop_moves[-1].reason == "profit_lock"
    trade = check_exit(CFG, pos, bar(100.9, 101, 100.5, 100.6, 2), entry_bar=False)
    assert trade is not None and trade.exit_reason == "profit_lock"
    assert trade.exit_price == D("100.53") * (1 - D("0.0002"))


def test_a_gap_beyond_the_liquidation_price_exits_as_a_liquidation() -> None:
    """§10.10/§10.11: the stop lies between entry and liquidation, so only a bar opening beyond both reaches the
    liquidation price; the position is closed there (with the adverse slippage and fees), not at the far open."""
    long = open_position(
        CFG, symbol="TESTUSDTM", side=Side.LONG, bar=bar(100, 100, 100, 100), lots=10, leverage=18, spec=SPEC
    )
    assert long.liquidation == D("100.0200") * (1 - 1 / D(18) + D("0.005"))
    trade = check_exit(CFG, long, bar(90, 91, 89, 90, 1), entry_bar=False)
    assert trade is not None and trade.exit_reason == "liquidation"
    assert trade.exit_price == long.liquidation * (1 - D("0.0002"))
    short = open_position(
        CFG, symbol="TESTUSDTM", side=Side.SHORT, bar=bar(100, 100, 100, 100), lots=10, leverage=18, spec=SPEC
    )
    trade = check_exit(CFG, short, bar(110, 111, 109, 110, 1), entry_bar=False)
    assert trade is not None and trade.exit_reason == "liquidation"
    assert trade.exit_price == short.liquidation * (1 + D("0.0002"))
    # A gap through the stop that stops short of liquidation is a stop at the open.
    trade = check_exit(CFG, long, bar(99, 99.2, 98.8, 99, 1), entry_bar=False)
    assert trade is not None and trade.exit_reason == "stop_loss" and trade.exit_price == D(99) * (1 - D("0.0002"))
