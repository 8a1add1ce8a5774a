"""Spec §12 E3–E7 reproduced exactly with the real risk code."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.config import default_strategy_config
from engine.models import Side
from engine.risk import (
    ContractSpec,
    StopManager,
    break_even_price,
    gross_roi,
    initial_levels,
    liquidation_buffer,
    liquidation_price,
    position_size,
    price_at_roi,
    select_leverage,
    trade_pnl,
)
from engine.risk.formulas import round_stop, tier_leverage

CFG = default_strategy_config()
ETH = ContractSpec(symbol="ETHUSDTM", multiplier=D("0.01"), lot_size=1, tick_size=D("0.01"), max_leverage=100)
FEE = D("0.0006")


def test_e3_sizing_leverage_levels_and_stop_loss_pnl() -> None:
    lev = select_leverage(CFG, D("0.35"))
    assert lev == 18
    size = position_size(
        CFG, equity=D(10000), abs_score=D("92.9"), atr_pct=D("0.35"), leverage=lev, ref_price=D(2000), spec=ETH
    )
    assert (size.lots, size.target_margin) == (180, D(200))
    qty = ETH.base_quantity(size.lots)
    assert qty == D("1.8")
    assert qty * D(2000) == D(3600)
    levels = initial_levels(CFG, Side.LONG, D("2000.00"), lev, ETH.tick_size)
    assert levels.stop == D("1988.89")
    assert levels.take_profit == D("2033.33")
    assert levels.liquidation.quantize(D("0.000001")) == D("1898.888889")
    assert liquidation_buffer(Side.LONG, D(2000), levels.liquidation).quantize(D("0.000001")) == D("0.050556")
    # At L = 19 the buffer would be 4.763 %: that is why the cap is 18.
    assert liquidation_buffer(Side.LONG, D(2000), liquidation_price(CFG, Side.LONG, D(2000), 19)) < D("0.05")
    pnl = trade_pnl(
        Side.LONG, entry=D(2000), exit_price=D("1988.89"), quantity=qty, leverage=lev, fee_in=FEE, fee_out=FEE
    )
    assert pnl.gross == D("-19.998")
    assert pnl.fees == D("2.16") + D("2.1480012")
    assert pnl.net == D("-24.3060012")
    assert pnl.net_roi.quantize(D("0.001")) == D("-12.153")


def test_e4_fee_aware_break_even() -> None:
    be = break_even_price(CFG, Side.LONG, D(2000), 18)
    assert be.quantize(D("0.000001")) == D("2003.513219")
    assert round_stop(be, Side.LONG, D("0.01")) == D("2003.52")
    qty = D("1.8")
    net_at_be = qty * (be - D(2000)) - D("2.16") - FEE * qty * be
    assert abs(net_at_be - D("2.0000")) < D("1e-9")
    assert gross_roi(Side.LONG, D(2000), be, 18).quantize(D("0.0001")) == D("3.1619")
    assert price_at_roi(Side.LONG, D(2000), D(8), 18).quantize(D("0.001")) == D("2008.889")


E5_BARS = [
    # close, expected stop after, expected TP after
    (D("100.50"), D("99.00"), D("103.00")),
    (D("100.85"), D("100.23"), D("103.00")),
    (D("101.05"), D("100.50"), D("103.00")),
    (D("101.25"), D("100.80"), D("104.80")),
    (D("101.53"), D("101.00"), D("105.00")),
    (D("102.05"), D("101.60"), D("105.60")),
    (D("101.80"), D("101.60"), D("105.60")),
]


def test_e5_staircase_trailing_walk_through_and_exit() -> None:
    levels = initial_levels(CFG, Side.LONG, D("100.00"), 10, D("0.01"))
    assert (levels.stop, levels.take_profit) == (D("99.00"), D("103.00"))
    assert round_stop(break_even_price(CFG, Side.LONG, D(100), 10), Side.LONG, D("0.01")) == D("100.23")
    mgr = StopManager(
        CFG, side=Side.LONG, entry=D(100), leverage=10, tick=D("0.01"), stop=levels.stop, take_profit=levels.take_profit
    )
    stops = []
    for close, want_stop, want_tp in E5_BARS:
        mgr.update(close)
        assert (mgr.stop, mgr.take_profit) == (want_stop, want_tp), close
        stops.append(mgr.stop)
    assert mgr.exit_reason == "trailing_stop"
    assert mgr.tp_roi == D(56)
    # Bar 8: low 101.55 touches the 101.60 stop; exit fill with 0.02 % adverse slippage.
    exit_fill = D("101.60") * (1 - D("0.0002"))
    assert exit_fill == D("101.57968")
    pnl = trade_pnl(Side.LONG, entry=D(100), exit_price=exit_fill, quantity=D(10), leverage=10, fee_in=FEE, fee_out=FEE)
    assert pnl.gross == D("15.7968")
    assert pnl.fees == D("0.60") + D("0.609478080")
    assert pnl.net.quantize(D("0.0000001")) == D("14.5873219")
    assert stops == sorted(stops)


def test_e6_short_levels() -> None:
    levels = initial_levels(CFG, Side.SHORT, D(50000), 10, D("0.1"))
    assert (levels.stop, levels.take_profit) == (D("50500.0"), D("48500.0"))
    assert levels.liquidation == D("54750.000")
    assert liquidation_buffer(Side.SHORT, D(50000), levels.liquidation) == D("0.095")
    be = break_even_price(CFG, Side.SHORT, D(50000), 10)
    assert str(be).startswith("49890.0659")
    assert round_stop(be, Side.SHORT, D("0.1")) == D("49890.0")
    assert price_at_roi(Side.SHORT, D(50000), D(8), 10) == D("49600.000")


@pytest.mark.parametrize(
    ("atr_pct", "tier_lev", "final_lev", "margin"),
    [
        (D("0.35"), 50, 18, D("250.00")),
        (D("1.4"), 15, 15, D("187.50")),
        (D("2.4"), 10, 10, D("125.00")),
        (D("6.2"), 3, 5, D("125.00")),
        (None, 10, 10, D("250.00")),
    ],
)
def test_e7_leverage_and_size_table(atr_pct: D | None, tier_lev: int, final_lev: int, margin: D) -> None:
    assert tier_leverage(CFG, atr_pct) == tier_lev
    assert select_leverage(CFG, atr_pct) == final_lev
    size = position_size(
        CFG, equity=D(10000), abs_score=D(105), atr_pct=atr_pct, leverage=final_lev, ref_price=D(2000), spec=ETH
    )
    assert size.target_margin == margin
    if atr_pct == D("1.4"):
        assert size.target_margin * final_lev == D("2812.50")
