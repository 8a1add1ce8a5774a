"""Fills and funding history span pages (KuCoin: 50 fills, 10 funding records per answer by default); the client
reads all of them. Reading the first page only, a position held for days lost most of its funding from its PnL,
and a close done in many fills was booked at the price of the newest few."""

from __future__ import annotations

from decimal import Decimal as D

from exchange.models import OrderRequest, OrderSide
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from exchange.simulator.state import Fill

T0 = 1_766_017_800_000
EIGHT_HOURS = 8 * 3_600_000


def fill(n: int, symbol: str = "ETHUSDTM") -> Fill:
    price = D(2000) + n
    return Fill(
        trade_id=f"t{n}",
        order_id=f"o{n // 3}",
        symbol=symbol,
        side="sell",
        liquidity="taker",
        price=price,
        size=1,
        value=price * D("0.01"),
        fee=(price * D("0.01") * D("0.0006")).quantize(D("0.00000001")),
        fee_rate=D("0.0006"),
        trade_type="trade",
        ts_ms=T0 + n * 1_000,
        opening=False,
    )


async def test_every_fill_over_many_pages(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    sim.state.fills.extend(fill(n) for n in range(2_345))
    sim.state.fills.extend(fill(n, "XBTUSDTM") for n in range(5))
    got = await client.fills(symbol="ETHUSDTM")
    assert len(got) == 2_345 and [f.trade_id for f in got[:2]] == ["t2344", "t2343"]  # newest first, each once
    since = await client.fills(symbol="ETHUSDTM", start_ms=T0 + 2_000 * 1_000)
    assert [f.trade_id for f in since] == [f"t{n}" for n in range(2_344, 1_999, -1)]
    by_order = await client.fills(order_id="o7")
    assert sorted(f.trade_id for f in by_order) == ["t21", "t22", "t23"]


async def test_funding_of_a_position_held_for_days(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    sim.set_price("ETHUSDTM", D("2000"))
    await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 10, leverage=5))
    for k in range(25):  # eight days of funding
        sim.run_funding(T0 + k * EIGHT_HOURS)
    records = await client.funding_history("ETHUSDTM")
    assert [int(r["timePoint"]) for r in records] == [T0 + k * EIGHT_HOURS for k in range(25)]  # oldest first
    later = await client.funding_history("ETHUSDTM", start_ms=T0 + 5 * EIGHT_HOURS)
    assert len(later) == 20
    each = D("-0.02")  # 2000 × 10 lots × 0.01 × 0.0001, paid by the long
    assert sum((D(str(r["funding"])) for r in records), D(0)) == 25 * each
