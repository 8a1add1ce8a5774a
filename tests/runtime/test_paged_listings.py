"""The engine's account-wide looks at the exchange read every page of the stop-order listing: more than 50 stops
the engine placed on a flat symbol are all swept, not the first page of 50."""

from __future__ import annotations

from decimal import Decimal as D

from exchange.models import OrderRequest, OrderSide, StopDirection, StopPriceType
from tests.runtime.conftest import Rig


async def test_every_orphan_stop_is_swept_beyond_the_first_page(rig: Rig) -> None:
    # Stops of positions closed meanwhile (both symbols are flat), each with its intent: 30 a symbol, as KuCoin
    # allows 50 stops a contract, 60 in the account-wide listing.
    for n in range(60):
        oid, sym = f"sl-orphan-{n}", "XBTUSDTM" if n % 2 else "SOLUSDTM"
        price = D(80_000 + n) if sym == "XBTUSDTM" else D(100 + n)
        await rig.engine.intents.record(oid, sym, "stop", "sell", 1, price, rig.engine.clock())
        order = await rig.client.place_order(
            OrderRequest(
                sym,
                OrderSide.SELL,
                1,
                reduce_only=True,
                stop=StopDirection.DOWN,
                stop_price=price,
                stop_price_type=StopPriceType.MARK,
                client_oid=oid,
            )
        )
        await rig.engine.intents.mark(oid, "acked", order.id)
    diffs = await rig.engine.sync_positions()
    assert len(diffs) == 60 and all("of a closed position cancelled" in d for d in diffs)  # was 50
    assert await rig.client.open_stop_orders() == []  # was 10 left on the flat symbol
