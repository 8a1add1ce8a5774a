"""KuCoin's own status (GET /api/v1/status): in maintenance or cancel-only no order can be placed, so the engine
holds entries with the reason and announces the change both ways; stops already on the exchange are untouched."""

from __future__ import annotations

from engine.events import HealthChanged, OrderRejected
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import live_stops, long_decision


async def test_maintenance_holds_entries_and_is_announced_both_ways(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    stops_before = await live_stops(rig)
    assert await rig.engine.check_exchange_status() == "open"

    rig.sim.system_status = "cancelonly"
    assert await rig.engine.check_exchange_status() == "cancelonly"
    assert await rig.engine.check_exchange_status() == "cancelonly"  # announced once, not on every pass
    assert rig.engine.entries_blocked() == "KuCoin Futures status cancelonly"
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert await live_stops(rig) == stops_before  # the open position keeps its stop and TP

    rig.sim.system_status = "open"
    assert await rig.engine.check_exchange_status() == "open"
    assert rig.engine.entries_blocked() is None
    await rig.bus.drain()
    health = [(e.component, e.healthy, e.detail) for e in rig.events if isinstance(e, HealthChanged)]
    assert health == [
        (
            "exchange",
            False,
            "KuCoin Futures status cancelonly (system maintenance): no new entries until it opens again; "
            "stops on the exchange stay",
        ),
        ("exchange", True, "KuCoin Futures status open"),
    ]
    refused = [e.reason for e in rig.events if isinstance(e, OrderRejected)]
    assert refused == ["KuCoin Futures status cancelonly"]


async def test_an_unanswered_status_question_changes_nothing(rig: Rig) -> None:
    rig.client.max_attempts = 1
    rig.sim.system_status = "close"
    assert await rig.engine.check_exchange_status() == "close"
    rig.sim.faults.server_error_next(1)
    assert await rig.engine.check_exchange_status() == "close"  # still held: the exchange did not say it opened
    assert rig.engine.entries_blocked() == "KuCoin Futures status close"
