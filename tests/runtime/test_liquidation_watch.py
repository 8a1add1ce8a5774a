"""§10.10: "buffer ≥ 0.05 at entry … and monitored live (alert when violated). Live, prefer the exchange-reported
liquidation price when available." Nothing watched it: a position could sit next to its liquidation price (the
stop missing, cross margin drained, a gap) without a word to the trader."""

from __future__ import annotations

from decimal import Decimal as D

from bot.formatting import format_event
from engine.events import LiquidationNear
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_decision


async def alerts(rig: Rig) -> list[LiquidationNear]:
    await rig.bus.drain()
    return [e for e in rig.events if isinstance(e, LiquidationNear)]


async def test_an_approach_to_liquidation_is_announced_once_with_the_formula_price(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None and (p.entry, p.leverage) == (D("2000.40"), 18)
    # §10.10: 2000.40 × (1 − 1/18 + 0.005) = 1899.2687: the 5 % buffer is crossed below 1899.2687 / 0.95 ≈ 1999.23.
    await rig.engine.on_mark("ETHUSDTM", D("1999.50"))
    assert await alerts(rig) == []
    await rig.engine.on_mark("ETHUSDTM", D("1999.00"))
    await rig.engine.on_mark("ETHUSDTM", D("1995.00"))  # deeper: the same approach, no second message
    (near,) = await alerts(rig)
    assert (near.symbol, near.side, near.mark, near.source, near.stop) == (
        "ETHUSDTM",
        "long",
        D("1999.00"),
        "formula",
        p.stop,
    )
    assert near.liquidation == D("1899.27")  # to the contract's tick (0.01)
    assert (near.buffer_pct, near.min_pct) == (D("4.99"), D("5.00"))
    text = format_event(near)
    assert text is not None and "near liquidation" in text and "estimated liquidation 1899.27 (" in text
    assert "4.99 % away, minimum 5.00 %" in text and f"stop {p.stop}" in text


async def test_the_alert_is_armed_again_once_clear_and_prefers_the_exchanges_price(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    await rig.engine.on_mark("ETHUSDTM", D("1999.00"))
    rig.engine.liquidation.note_exchange("ETHUSDTM", D("1905.00"))  # what the exchange's position reports
    await rig.engine.on_mark("ETHUSDTM", D("2010.00"))  # 5.22 % from 1905: not yet half a point clear
    await rig.engine.on_mark("ETHUSDTM", D("2004.00"))
    assert len(await alerts(rig)) == 1
    await rig.engine.on_mark("ETHUSDTM", D("2020.00"))  # 5.69 %: clear, armed again
    await rig.engine.on_mark("ETHUSDTM", D("2004.00"))  # 4.94 % from the exchange's 1905
    second = (await alerts(rig))[-1]
    assert (second.source, second.liquidation, second.buffer_pct) == ("exchange", D("1905.00"), D("4.94"))


async def test_reconciliation_takes_the_exchanges_liquidation_price(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    reported = (await rig.client.position("ETHUSDTM")).liquidation_price
    assert reported is not None and reported > 0
    await rig.engine.sync_positions()
    assert rig.engine.liquidation.reported["ETHUSDTM"] == reported
    await rig.engine.kill_switch()  # the position is gone: its price and alert state too
    assert "ETHUSDTM" not in rig.engine.liquidation.reported
