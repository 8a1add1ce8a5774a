"""The engine books every funding record of a trade held for days into its PnL (see test_paged_history)."""

from __future__ import annotations

from decimal import Decimal as D

from engine.models import Side
from tests.runtime.conftest import Rig
from tests.runtime.test_equity_marks import long_decision

T0 = 1_766_017_800_000
EIGHT_HOURS = 8 * 3_600_000


async def test_the_engine_books_all_the_funding_of_a_long_trade(rig: Rig) -> None:
    rig.sim.set_price("ETHUSDTM", D("2000"))
    rig.engine.clock = lambda: T0
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    for k in range(1, 26):
        rig.sim.run_funding(T0 + k * EIGHT_HOURS)
    paid = await rig.engine._funding_paid("ETHUSDTM", Side.LONG, T0, T0 + 26 * EIGHT_HOURS)
    per = (D(str(rig.sim.state.price("ETHUSDTM").mark)) * p.lots * D("0.01") * D("0.0001")).quantize(D("0.00000001"))
    assert paid == 25 * per  # a positive amount paid, every record counted
