"""Months of running: one approval row per Telegram card and one intent row per order (every stop move adds one)
were kept for good. The hourly retention job now deletes the finished ones older than RECORD_RETENTION_DAYS, and
never an intent the restart, a stop placement, the orphan sweep or the adoption may still need."""

from __future__ import annotations

from decimal import Decimal as D

from engine.runtime.app import RECORD_RETENTION_DAYS
from exchange.models import OrderRequest, OrderSide, OrderType
from tests.runtime.conftest import Rig
from tests.runtime.test_engine import long_stop

DAY = 86_400_000


async def _intent_ids(rig: Rig) -> set[str]:
    return {r["client_oid"] for r in await rig.db.fetchall("SELECT client_oid FROM order_intents")}


async def _card_ids(rig: Rig) -> set[str]:
    return {r["id"] for r in await rig.db.fetchall("SELECT id FROM approvals")}


async def test_finished_cards_and_intents_of_finished_orders_go_live_and_needed_ones_stay(rig: Rig) -> None:
    now = rig.engine.clock()
    old, recent = now - 40 * DAY, now - 2 * DAY
    cutoff = now - RECORD_RETENTION_DAYS * DAY
    assert RECORD_RETENTION_DAYS == 30

    approvals = rig.engine.approvals
    assert approvals is not None
    for card, state, at in (
        ("ap-executed", "EXECUTED", old),
        ("ap-rejected", "REJECTED", old),
        ("ap-expired", "EXPIRED", old),
        ("ap-refused", "FAILED_RECHECK", old),
        ("ap-pending", "PENDING", old),  # never resolved: stays whatever its age
        ("ap-executing", "APPROVED", old),  # executing (a crash in between): stays
        ("ap-recent", "EXPIRED", recent),
    ):
        await approvals.create(card, "ETHUSDTM", {"side": "long", "price": "2000"}, at, at + 300_000)
        if state != "PENDING":
            await approvals.transition(card, "PENDING", "APPROVED", at)
        if state not in ("PENDING", "APPROVED"):
            await approvals.transition(card, "APPROVED", state, at)

    # A stop on the exchange with no position under it (an orphan the sweep must still recognise as the engine's).
    orphan = await rig.client.place_order(long_stop(5, D("1900.00"), client_oid="sl-orphan-still-live"))
    intents = rig.engine.intents
    for oid, symbol, purpose, status, at, order_id in (
        ("en-filled-old", "SOLUSDTM", "entry", "done", old, "o-1"),
        ("en-rejected-old", "SOLUSDTM", "entry", "failed", old, None),
        ("sl-cancelled-old", "SOLUSDTM", "stop", "acked", old, "o-2"),
        ("sl-unanswered-old", "SOLUSDTM", "stop", "pending", old, None),  # the restart asks the exchange about it
        ("en-filled-recent", "SOLUSDTM", "entry", "done", recent, "o-3"),
        ("sl-open-position", "ADAUSDTM", "stop", "acked", old, "o-4"),  # its position is still managed
        ("sl-in-retry", "DOTUSDTM", "stop", "acked", old, "o-5"),  # a stop step waits in the retry queue
        ("sl-orphan-still-live", "ETHUSDTM", "stop", "acked", old, orphan.id),  # live on the exchange
        ("sl-same-live-order", "ETHUSDTM", "stop", "done", old, orphan.id),  # its order id is live
    ):
        await intents.record(oid, symbol, purpose, "sell", 5, None, at)
        if status != "pending":
            await intents.mark(oid, status, order_id)
    await rig.engine.positions_repo.save(
        {
            "symbol": "ADAUSDTM",
            "side": "long",
            "lots": 5,
            "entry": D("0.5"),
            "leverage": 5,
            "stop": D("0.45"),
            "stop_reason": "initial",
            "take_profit": D("0.6"),
            "tp_roi": D("30"),
            "trailing": 0,
            "stop_order_id": "o-4",
            "tp_order_id": None,
            "replace_state": "STEADY",
            "pending_client_oid": None,
            "pending_price": None,
            "opened_ms": old,
        }
    )
    await rig.engine.retry.put("replace", "replace:DOTUSDTM", {"symbol": "DOTUSDTM"}, now)

    assert await rig.engine.prune_history(cutoff) == (4, 3)
    assert await _card_ids(rig) == {"ap-pending", "ap-executing", "ap-recent"}
    assert await _intent_ids(rig) == {
        "sl-unanswered-old",
        "en-filled-recent",
        "sl-open-position",
        "sl-in-retry",
        "sl-orphan-still-live",
        "sl-same-live-order",
    }
    assert await rig.engine.prune_history(cutoff) == (0, 0)  # twice is a no-op
    # The restart still finds its pending intent; the orphan sweep still knows the live stop as the engine's.
    assert [i.client_oid for i in await intents.pending()] == ["sl-unanswered-old"]
    assert await rig.engine.coordinator.ours(orphan)
    # A tap on a deleted card's button is answered as for any unknown card.
    assert await rig.engine.approve("ap-executed") == "expired"


async def test_no_intent_is_pruned_without_the_exchanges_word_on_what_is_live(rig: Rig) -> None:
    now = rig.engine.clock()
    old = now - 40 * DAY
    cutoff = now - RECORD_RETENTION_DAYS * DAY
    for i in range(3):
        await rig.engine.intents.record(f"en-old-{i}", "SOLUSDTM", "entry", "buy", 1, None, old)
        await rig.engine.intents.mark(f"en-old-{i}", "done", f"o-{i}")
    approvals = rig.engine.approvals
    assert approvals is not None
    await approvals.create("ap-old", "ETHUSDTM", {}, old, old + 1)
    await approvals.transition("ap-old", "PENDING", "EXPIRED", old)

    rig.sim.faults.server_error_next(100)  # the exchange cannot say which orders are live
    try:
        assert await rig.engine.prune_history(cutoff) == (1, 0)
    finally:
        rig.sim.faults.reset()
    assert len(await _intent_ids(rig)) == 3

    # 60 open orders span two pages of the listing: the one on the second page is recognised as live, and its
    # intent kept (read from the first page only, the listing looked cut short and nothing was pruned at all).
    rig.sim.set_price("SOLUSDTM", D("150"))
    for n in range(60):
        await rig.client.place_order(
            OrderRequest(
                "SOLUSDTM", OrderSide.BUY, 1, leverage=5, type=OrderType.LIMIT, price=D("100"), client_oid=f"lim-{n}"
            )
        )
    await rig.engine.intents.record("lim-59", "SOLUSDTM", "entry", "buy", 1, None, old)
    await rig.engine.intents.mark("lim-59", "done")
    assert await rig.engine.prune_history(cutoff) == (0, 3)
    assert await _intent_ids(rig) == {"lim-59"}
    await rig.client.cancel_all_orders("SOLUSDTM")
    assert await rig.engine.prune_history(cutoff) == (0, 1)
