"""What the engine believes about a position it did not open, or whose size changed, must be what KuCoin holds:
the leverage its ROI-based stop is measured with, how a close the fills history does not list yet ended, the
take-profit's size after a failed resize, and when the chat is told the stop and TP cover the new size. Each runs
through the simulator and the real client."""

from __future__ import annotations

from decimal import Decimal as D

from engine.models import Side
from engine.risk.formulas import initial_levels
from exchange.models import OrderSide, StopDirection
from tests.runtime.conftest import Rig
from tests.runtime.test_money_agrees import by_hand
from tests.runtime.test_position_size_changes import stops

SYM = "ETHUSDTM"


async def test_a_position_adopted_at_5x_gets_the_stop_of_5x_although_kucoin_reports_4_98(rig: Rig) -> None:
    """A person opens 50 lots at 5x (isolated) from the app. KuCoin reports the position's leverage margin-derived,
    4.98: ``int()`` made it 4x, and the -10 % ROI stop sat 2.5 % under the entry instead of 2 % (looser than the
    rule). The opening order says 5x: the stop and TP are the rule's for 5x."""
    rig.sim.set_price(SYM, D("2000"))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=5))
    reported = (await rig.client.position(SYM)).leverage
    assert D("4.9") < reported < 5  # the simulator reports it as KuCoin does (reference §5.6.3: 4.9685590767)
    await rig.engine.sync_positions()
    p = rig.engine.managed[SYM].protection
    levels = initial_levels(rig.engine.cfg, Side.LONG, p.entry, 5, rig.engine.specs[SYM].tick_size)
    assert p.leverage == 5  # before: 4
    assert (p.stop, p.take_profit) == (levels.stop, levels.take_profit) == (D("1960.40"), D("2120.42"))
    got = await stops(rig)
    assert got[StopDirection.DOWN] == [(50, D("1960.40"))]  # before: 1950.39, 2.5 % away
    assert got[StopDirection.UP] == [(50, D("2120.42"))]


async def test_an_adopted_position_whose_orders_cannot_be_read_is_never_given_a_looser_stop(rig: Rig) -> None:
    """The opening order cannot be looked up: the exchange's 4.98 is all there is. Rounded up to 5 (a stop for
    4x would be looser than the position's real leverage allows)."""
    rig.sim.set_price(SYM, D("2000"))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=5))
    rig.sim.faults.order_lag_next(1)  # the order lookup answers "not found"
    await rig.engine.sync_positions()
    p = rig.engine.managed[SYM].protection
    assert p.leverage == 5 and p.stop == D("1960.40")  # before: 4x, 1950.39


async def test_an_adopted_position_added_to_at_another_leverage_takes_the_exchanges_figure_rounded_up(
    rig: Rig,
) -> None:
    """50 lots at 5x, then 50 more at 10x: the orders disagree, the position's margin makes it ~6.6x. The stop is
    measured for 7x (tighter than 6.6x's, never looser), not for 5x or 10x."""
    rig.sim.set_price(SYM, D("2000"))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=5))
    await rig.client.place_order(by_hand(OrderSide.BUY, 50, leverage=10))
    reported = (await rig.client.position(SYM)).leverage
    assert D("6.5") < reported < 7
    await rig.engine.sync_positions()
    assert rig.engine.managed[SYM].protection.leverage == 7  # before: 6
