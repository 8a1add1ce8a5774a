"""Reference §4.1.5 and §4.1.9 through the client and the simulator: level-2 book snapshots (the shadow score's
order-book analyzer) and the mark price with its index."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from exchange.ratelimit import weight_for
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer


async def test_the_default_book_is_balanced_around_the_ticker(client: KucoinFuturesClient) -> None:
    ticker = await client.ticker("ETHUSDTM")
    deep = await client.level2_depth("ETHUSDTM", 100)
    assert (len(deep["bids"]), len(deep["asks"])) == (50, 50)  # the simulator's synthetic book has 50 a side
    assert deep["bids"][0] == [float(ticker["bestBidPrice"]), 1000] and deep["bids"][0] == [1999.99, 1000]
    assert deep["asks"][0] == [2000.01, 1000] and deep["asks"][49] == [2000.50, 1000]
    assert deep["bids"][49] == [1999.50, 1000]  # high → low
    assert deep["symbol"] == "ETHUSDTM" and deep["ts"] > 10**18  # nanoseconds
    top = await client.level2_depth("ETHUSDTM", 20)
    assert (len(top["bids"]), len(top["asks"])) == (20, 20)


async def test_a_set_book_is_served_cut_to_the_depth(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    sim.books["ETHUSDTM"] = ([[1999.9, 5]] * 30, [[2000.1, 7]] * 30)
    got = await client.level2_depth("ETHUSDTM", 20)
    assert got["bids"] == [[1999.9, 5]] * 20 and got["asks"] == [[2000.1, 7]] * 20
    with pytest.raises(ValueError, match="level-2 depth is 20 or 100, not 25"):
        await client.level2_depth("ETHUSDTM", 25)
    paths = [p.split("?")[0] for _, p in sim.requests]
    assert paths == ["/api/v1/level2/depth20"]  # the refused depth never went out


async def test_mark_and_index(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    assert await client.mark_and_index("ETHUSDTM") == (D("2000.0"), D("2000.0"))
    sim.set_price("ETHUSDTM", D("2000"), mark=D("2002.4"), index=D("2001.1"))
    assert await client.mark_and_index("ETHUSDTM") == (D("2002.4"), D("2001.1"))


def test_level2_weights_follow_the_reference() -> None:
    assert weight_for("GET", "/api/v1/level2/depth20", signed=False) == ("public", 5)
    assert weight_for("GET", "/api/v1/level2/depth100", signed=False) == ("public", 5)
    assert weight_for("GET", "/api/v1/level2/snapshot", signed=False) == ("public", 3)
