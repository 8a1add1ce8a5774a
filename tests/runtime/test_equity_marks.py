"""§9.3 live: drawdown and the circuit breaker run on the exchange's mark-to-market equity from the intraday peak.

Before, the runtime only added closed trades' PnL to its equity and never raised the peak, so a day that first
won and then lost measured its drawdown from the start-of-day equity, open losses never counted, and the 10 %
circuit breaker could not latch at all.
"""

from __future__ import annotations

from decimal import Decimal as D

from engine.events import HaltRaised, OrderRejected
from engine.gates.result import GateResult
from engine.scoring.pipeline import Decision
from engine.scoring.signals import Direction
from tests.runtime.conftest import Rig

NOW = 1_800_000_000_000


def long_decision() -> Decision:
    return Decision("ETHUSDTM", 0, 2000.0, 92.9, "STRONG_BUY", Direction.BULLISH, 0.98, 0.35, [GateResult("all", True)])


async def test_drawdown_is_measured_from_the_marked_intraday_peak(rig: Rig) -> None:
    rig.engine.clock = lambda: NOW
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None and p.stop == D("1989.29")
    rig.sim.set_price("ETHUSDTM", D("2020.00"))  # an open gain: the peak rises with it
    peak = await rig.engine.mark_to_market()
    assert peak == (await rig.client.account_overview()).equity
    assert peak > D(10000) - D(5)  # the gain is in it (entry fee ~2 USDT, +0.98 % on 36 % of equity)
    assert rig.engine.risk.peak_equity == peak and rig.engine.risk.drawdown_pct == 0
    rig.sim.set_price("ETHUSDTM", D("1992.00"))  # an open loss, still above the stop
    now = await rig.engine.mark_to_market()
    assert now < peak
    assert rig.engine.risk.equity == now
    assert rig.engine.risk.drawdown_pct == 100 * (peak - now) / peak  # from the peak, not the start of the day
    assert rig.engine.risk.drawdown_pct > D("0.3")


async def test_the_circuit_breaker_latches_on_marked_equity_and_blocks_entries(rig: Rig) -> None:
    cfg = rig.engine.cfg
    rm = cfg.risk_management.model_copy(update={"circuit_breaker_drawdown_pct": D("0.25")})
    rig.engine.cfg = cfg.model_copy(update={"risk_management": rm})
    rig.engine.clock = lambda: NOW
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    rig.sim.set_price("ETHUSDTM", D("2020.00"))
    await rig.engine.mark_to_market()
    rig.sim.set_price("ETHUSDTM", D("2008.00"))  # −0.6 % on 36 % of equity from the peak: about 0.2 %
    await rig.engine.mark_to_market()
    assert not rig.engine.risk.circuit_breaker
    rig.sim.set_price("ETHUSDTM", D("1995.00"))  # about 0.45 % from the peak: past 0.25 %
    await rig.engine.mark_to_market()
    assert rig.engine.risk.circuit_breaker
    rig.sim.set_price("ETHUSDTM", D("2020.00"))  # back at the peak: the breaker stays latched
    await rig.engine.mark_to_market()
    await rig.bus.drain()
    halts = [e for e in rig.events if isinstance(e, HaltRaised) and e.limit == "circuit_breaker"]
    assert len(halts) == 1 and D(halts[0].value) > D("0.25") and halts[0].threshold == "0.25"
    assert rig.engine.risk.circuit_breaker and rig.engine.risk.drawdown_pct == 0
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    await rig.bus.drain()
    refused = [e for e in rig.events if isinstance(e, OrderRejected)]
    assert refused and "circuit_breaker" in refused[-1].reason
