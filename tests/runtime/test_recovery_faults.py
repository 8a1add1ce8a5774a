"""Restart recovery when the exchange cannot answer: a pending intent is settled only by a definite answer about its
clientOid (found → adopted, 100004 → failed). A timeout, 5xx, rate limit or lost connection leaves it pending for
the retry loop, and start-up still comes up and protects the positions. Real simulator, real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal as D
from pathlib import Path

import pytest

from exchange.models import OrderRequest, OrderSide, StopDirection
from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from exchange.simulator import SimulatorServer
from tests.exchange.conftest import KEY, PASSPHRASE, SECRET
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_engine import long_decision

SYM = "ETHUSDTM"
BY_OID = "/api/v1/orders/byClientOid"
ATTEMPTS = 5  # the client's max_attempts: one lookup that fails this often gives up with the transient error
LATER = 1_900_000_000_000  # a clock past every retry backoff


@pytest.fixture
async def restarted(sim: SimulatorServer) -> AsyncIterator[KucoinFuturesClient]:
    """The client of the restarted process: a short timeout, so a held request times out in 0.3 s."""
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), timeout_s=0.3, backoff_base_s=0.01, backoff_cap_s=0.05
    ) as c:
        yield c


FAULTS: dict[str, Callable[[SimulatorServer, int], None]] = {
    "5xx": lambda sim, n: sim.faults.server_error_next(n),
    "rate_limit": lambda sim, n: sim.faults.rate_limit_next(n),
    # aiohttp silently re-sends a GET once when a pooled connection drops: one attempt may take two of these
    "lost_connection": lambda sim, n: sim.faults.lose_reply_next(2 * n, BY_OID),
    "gateway_timeout": lambda sim, n: sim.faults.gateway_timeout_next(n, 0, BY_OID),
    "timeout": lambda sim, n: sim.faults.delay_next(n, 1000, BY_OID),
}


async def make_pending(rig: Rig, client_oid: str) -> None:
    """The intent as a process that died before the reply left it: pending, no order id."""
    await rig.db.execute(
        "UPDATE order_intents SET status = 'pending', order_id = NULL WHERE client_oid = ?", (client_oid,)
    )


async def stop_landed_unanswered(rig: Rig) -> tuple[str, str]:
    """A protected position whose stop reached the exchange, then the process died before it heard back: the stop
    intent is pending and the position's row has no stop id. Returns the stop's clientOid and order id."""
    p = await rig.engine.enter(SYM, long_decision())
    assert p is not None and p.stop_order_id is not None
    stop = await rig.client.order_by_id(p.stop_order_id)
    await make_pending(rig, stop.client_oid)
    p.stop_order_id = None
    await rig.engine.positions_repo.save(p.row())
    return stop.client_oid, stop.id


async def downs(rig: Rig) -> list[str]:
    return [o.id for o in await rig.client.open_stop_orders(SYM) if o.stop is StopDirection.DOWN]


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_landed_stop_whose_lookup_fails_at_restart_is_adopted_not_doubled(
    rig: Rig, restarted: KucoinFuturesClient, data_dir: Path, fault: str
) -> None:
    client_oid, stop_id = await stop_landed_unanswered(rig)
    orders_before = len(rig.sim.state.orders)
    FAULTS[fault](rig.sim, ATTEMPTS)  # the restart's one lookup of the intent fails, every attempt of it
    fresh = await make_engine(rig.sim, restarted, rig.db, data_dir)
    assert await fresh.engine.recover() in ([], [f"{SYM}: stop missing"])  # the fault may outlast its lookup
    assert fresh.engine.unsettled_intents == {client_oid}  # the restart's lookup did fail
    fresh.engine.clock = lambda: LATER
    await fresh.engine.run_retries()
    assert await downs(rig) == [stop_id]  # exactly one stop, the one that landed (was two)
    intent = await fresh.engine.intents.get(client_oid)
    assert intent is not None and (intent.status, intent.order_id) == ("acked", stop_id)  # was "failed"
    assert fresh.engine.managed[SYM].protection.stop_order_id == stop_id
    assert len(rig.sim.state.orders) == orders_before  # nothing placed again
    assert fresh.engine.unsettled_intents == set() and await fresh.engine.retry.depth() == 0
    await fresh.bus.stop()


async def test_a_lookup_failing_through_the_whole_restart_is_settled_by_the_retry_loop(
    rig: Rig, restarted: KucoinFuturesClient, data_dir: Path
) -> None:
    client_oid, stop_id = await stop_landed_unanswered(rig)
    orders_before = len(rig.sim.state.orders)
    # Every lookup of the restart fails: its own, protect()'s, and the reconciliation's protect()'s.
    rig.sim.faults.gateway_timeout_next(3 * ATTEMPTS, 0, BY_OID)
    fresh = await make_engine(rig.sim, restarted, rig.db, data_dir)
    assert await fresh.engine.recover() == [f"{SYM}: stop missing"]  # start-up comes up all the same
    intent = await fresh.engine.intents.get(client_oid)
    assert intent is not None and intent.status == "pending"  # not settled on a gateway's 504
    assert fresh.engine.unsettled_intents == {client_oid}
    assert await downs(rig) == [stop_id]  # no second stop placed beside one that may be live
    assert rig.sim.faults.gateway_timeout_remaining == 0
    fresh.engine.clock = lambda: LATER
    await fresh.engine.run_retries()  # the next pass of the retry loop
    intent = await fresh.engine.intents.get(client_oid)
    assert intent is not None and (intent.status, intent.order_id) == ("acked", stop_id)
    assert fresh.engine.managed[SYM].protection.stop_order_id == stop_id
    assert await downs(rig) == [stop_id] and len(rig.sim.state.orders) == orders_before
    assert fresh.engine.unsettled_intents == set() and await fresh.engine.retry.depth() == 0
    await fresh.bus.stop()


async def test_a_landed_entry_unknown_at_restart_is_protected_and_then_settled_with_its_order(
    rig: Rig, restarted: KucoinFuturesClient, data_dir: Path
) -> None:
    """The process died between the entry's fill and its adoption; the exchange cannot be asked about the entry's
    clientOid for the whole restart. The position is adopted and protected all the same, and the intent adopts
    the entry's order when the exchange answers again."""
    oid = "en-crash-0001"
    await rig.engine.intents.record(oid, SYM, "entry", "buy", 179, None, 1_800_000_000_000)
    entry = await rig.client.place_order(OrderRequest(SYM, OrderSide.BUY, 179, leverage=18, client_oid=oid))
    rig.sim.faults.lose_reply_next(10**6, BY_OID)  # no answer about any clientOid, however long it takes
    fresh = await make_engine(rig.sim, restarted, rig.db, data_dir)
    assert await fresh.engine.recover() == [f"{SYM}: unmanaged position of 179 lots adopted"]
    stops = {o.stop: o.lots for o in await rig.client.open_stop_orders(SYM)}
    assert stops == {StopDirection.DOWN: 179, StopDirection.UP: 179}  # protected at start-up
    intent = await fresh.engine.intents.get(oid)
    assert intent is not None and intent.status == "pending"  # was "failed": the entry that did fill
    await fresh.engine.run_retries()  # still no answer: still pending, asked again next time
    assert fresh.engine.unsettled_intents == {oid}
    rig.sim.faults.reset()
    await fresh.engine.run_retries()
    intent = await fresh.engine.intents.get(oid)
    assert intent is not None and (intent.status, intent.order_id) == ("done", entry.id)
    assert fresh.engine.unsettled_intents == set()
    entries = [o for o in rig.sim.state.orders.values() if o.client_oid == oid]
    assert len(entries) == 1  # the entry was never sent again
    await fresh.bus.stop()


async def test_only_the_exchanges_not_found_marks_an_intent_failed(
    rig: Rig, restarted: KucoinFuturesClient, data_dir: Path
) -> None:
    await rig.engine.intents.record("sl-never-sent", SYM, "stop", "sell", 179, D("1989.29"), 1_800_000_000_000)
    rig.sim.faults.server_error_next(ATTEMPTS)
    fresh = await make_engine(rig.sim, restarted, rig.db, data_dir)
    await fresh.engine.recover()
    intent = await fresh.engine.intents.get("sl-never-sent")
    assert intent is not None and intent.status == "pending"  # a 503 says nothing
    await fresh.engine.run_retries()  # now the exchange answers 100004: never placed
    intent = await fresh.engine.intents.get("sl-never-sent")
    assert intent is not None and intent.status == "failed" and fresh.engine.unsettled_intents == set()
    await fresh.bus.stop()
