"""Gate 12 (§9.3, §11): the live avoid-entry filter, read from the simulator's ticker, funding rate and tape over
loopback at the moment of an entry. Backtests never see it (their tests run without it)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from engine.config import default_strategy_config
from engine.events import ApprovalResolved, OrderRejected
from engine.runtime.microstructure import Tape, avoid_entry_gate, buy_share, spread_pct
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from storage.db import Database
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_engine import long_decision

CFG = default_strategy_config()


async def rejected(rig: Rig) -> list[str]:
    await rig.bus.drain()
    return [e.reason for e in rig.events if isinstance(e, OrderRejected)]


def tape(sym: str, buys: int, sells: int) -> list[dict[str, object]]:
    return [
        {"ts_ms": 1, "size": buys, "price": "2000", "side": "buy"},
        {"ts_ms": 2, "size": sells, "price": "2000", "side": "sell"},
    ]


async def test_normal_market_lets_the_entry_through(rig: Rig) -> None:
    rig.sim.public_trades["ETHUSDTM"] = tape("ETHUSDTM", 60, 40)  # buy share 0.60, inside [0.15, 0.85]
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None and p.lots == 179
    assert await rejected(rig) == []
    # The three reads went out for this entry: ticker, funding rate and tape.
    paths = [path.split("?")[0] for _, path in rig.sim.requests]
    assert {"/api/v1/ticker", "/api/v1/funding-rate/ETHUSDTM/current", "/api/v1/trade/history"} <= set(paths)


async def test_a_wide_spread_blocks_the_entry_and_says_how_wide(rig: Rig) -> None:
    rig.sim.quote_ticks["ETHUSDTM"] = 50  # bid 1999.50 / ask 2000.50: 1.00 over a mid of 2000 = 0.05 %
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert rig.sim.state.orders == {}
    assert await rejected(rig) == ["avoid_entry (spread 0.0500% > 0.03%)"]


async def test_a_spread_at_the_limit_passes(rig: Rig) -> None:
    rig.sim.quote_ticks["ETHUSDTM"] = 30  # 0.60 / 2000 = 0.030 %: "> 0.03 %" blocks, exactly 0.03 % does not
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is not None


async def test_extreme_funding_blocks_the_entry_either_sign(rig: Rig) -> None:
    rig.sim.funding_rates["ETHUSDTM"] = D("-0.025")  # −2.5 % a cycle
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert await rejected(rig) == ["avoid_entry (|funding| 2.5000% > 2.0%)"]
    assert rig.sim.state.orders == {}


async def test_a_one_sided_tape_blocks_the_entry(rig: Rig) -> None:
    rig.sim.public_trades["ETHUSDTM"] = tape("ETHUSDTM", 90, 10)  # buy share 0.90 > 0.85
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert await rejected(rig) == ["avoid_entry (buy/sell ratio 0.90 outside [0.15, 0.85])"]


async def test_unreadable_market_data_blocks_the_entry_fail_closed(rig: Rig) -> None:
    rig.client.max_attempts = 1
    rig.sim.faults.garble_reply_next(1, path_prefix="/api/v1/funding-rate")  # a success envelope without data
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    reasons = await rejected(rig)
    assert len(reasons) == 1 and reasons[0].startswith("avoid_entry (market data unavailable: ")
    assert rig.sim.state.orders == {}


async def test_reasons_are_collected_with_the_risk_checks(rig: Rig) -> None:
    rig.sim.quote_ticks["ETHUSDTM"] = 50
    rig.engine.risk.consecutive_losses = 5
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert await rejected(rig) == ["consecutive_losses,avoid_entry (spread 0.0500% > 0.03%)"]


async def test_the_filter_switched_off_reads_nothing_and_lets_a_wide_spread_through(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir)
        gates = CFG.gates.model_copy(update={"live_avoid_entry_filter": False})
        rig.engine.cfg = CFG.model_copy(update={"gates": gates})
        sim.quote_ticks["ETHUSDTM"] = 50
        assert await rig.engine.enter("ETHUSDTM", long_decision()) is not None
        paths = [path.split("?")[0] for _, path in sim.requests]
        assert "/api/v1/trade/history" not in paths and "/api/v1/funding-rate/ETHUSDTM/current" not in paths
        await rig.bus.stop()


async def test_simulator_tape_and_funding_rate_through_the_client(rig: Rig) -> None:
    assert await rig.client.funding_rate("ETHUSDTM") == D("0.0001")  # the simulator's default
    assert await rig.client.trade_history("ETHUSDTM") == []  # a simulated market has no other traders
    await rig.engine.enter("ETHUSDTM", long_decision())
    # The bot's own buy is not on the simulated tape: a tape of only our orders would be one-sided, and the filter
    # would refuse every later entry in paper mode.
    assert await rig.client.trade_history("ETHUSDTM") == []
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None  # refused for the open position only
    assert (await rejected(rig))[-1] == "position_exists,entry_cooldown"
    rig.sim.public_trades["ETHUSDTM"] = [
        {"ts_ms": 1_000, "size": 3, "price": "2000.1", "side": "sell"},
        {"ts_ms": 2_000, "size": 5, "price": "2000.2", "side": "buy"},
    ]
    trades = await rig.client.trade_history("ETHUSDTM")
    # Newest first, taker side, integer lots, string prices, nanosecond times, as KuCoin sends them.
    assert [(t["side"], t["size"], t["price"], t["ts"]) for t in trades] == [
        ("buy", 5, "2000.2", 2_000_000_000),
        ("sell", 3, "2000.1", 1_000_000_000),
    ]


@pytest.mark.parametrize(
    ("ticker", "expected"),
    [
        ({"bestBidPrice": "99.99", "bestAskPrice": "100.01"}, 0.02),
        ({"bestBidPrice": "100", "bestAskPrice": "100"}, 0.0),
        ({"bestBidPrice": "0", "bestAskPrice": "100.01"}, None),  # one-sided book
        ({"bestBidPrice": "100.02", "bestAskPrice": "100.01"}, None),  # crossed: not a quote to trust
        ({"bestAskPrice": "100.01"}, None),
        ({"bestBidPrice": "NaN", "bestAskPrice": "100.01"}, None),
        ({"bestBidPrice": "abc", "bestAskPrice": "100.01"}, None),
    ],
)
def test_spread_pct(ticker: dict[str, str], expected: float | None) -> None:
    got = spread_pct(ticker)
    assert got == expected if expected is None else got == pytest.approx(expected, rel=1e-12)


def test_buy_share_weights_by_size_and_an_empty_tape_is_unknown() -> None:
    assert buy_share([{"size": 3, "side": "buy"}, {"size": 1, "side": "sell"}]) == 0.75
    assert buy_share([]) is None
    assert buy_share([{"size": 0, "side": "buy"}]) is None


def test_a_book_without_two_sides_blocks() -> None:
    gate = avoid_entry_gate(CFG, {"bestBidPrice": "0", "bestAskPrice": "1"}, Tape(0.01, 0.5))
    assert (gate.code, gate.passed, gate.detail) == ("avoid_entry", False, "no two-sided book in the ticker")
    ok = avoid_entry_gate(CFG, {"bestBidPrice": "1999.99", "bestAskPrice": "2000.01"}, Tape(0.01, None))
    assert ok.passed


async def test_an_approved_card_refused_by_the_filter_says_why(rig: Rig) -> None:
    approval = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert approval is not None and rig.engine.approvals is not None
    rig.sim.quote_ticks["ETHUSDTM"] = 50  # the spread widened while the card waited on the phone
    assert await rig.engine.approve(approval, by="phone") == "failed_recheck"
    await rig.bus.drain()
    resolved = [e for e in rig.events if isinstance(e, ApprovalResolved)]
    assert [(e.outcome, e.detail) for e in resolved] == [
        ("failed_recheck", "by phone: avoid_entry (spread 0.0500% > 0.03%)")
    ]
    card = await rig.engine.approvals.get(approval)
    assert card is not None and card["state"] == "FAILED_RECHECK"
    assert rig.sim.state.orders == {}


async def test_an_approved_card_whose_order_fills_nothing_says_so(rig: Rig) -> None:
    approval = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert approval is not None
    rig.sim.state.max_taker_lots = 0  # an empty book: the guarded IOC fills nothing and is cancelled
    assert await rig.engine.approve(approval, by="phone") == "failed_recheck"
    await rig.bus.drain()
    resolved = [e for e in rig.events if isinstance(e, ApprovalResolved)]
    assert len(resolved) == 1 and resolved[0].detail.startswith("by phone: nothing filled within ")
    assert (await rig.client.position("ETHUSDTM")).lots == 0


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("null:price", "price check failed: the ETHUSDTM ticker has no price (None)"),
        ("not_object", "price check failed: dictionary update sequence element #0 has length 7; 2 is required"),
    ],
)
async def test_an_approved_card_whose_ticker_has_no_price_fails_its_recheck_instead_of_hanging(
    rig: Rig, kind: str, detail: str
) -> None:
    """The approval's price re-check read ``ticker["price"]`` as it came: a ticker whose price is null (or an
    answer that is no ticker) raised out of ``approve``, and the card stayed APPROVED ("executing") for ever with
    nothing traded."""
    approval = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert approval is not None and rig.engine.approvals is not None
    rig.sim.faults.garble_reply_next(1, path_prefix="/api/v1/ticker", kind=kind)
    assert await rig.engine.approve(approval, by="phone") == "failed_recheck"
    await rig.bus.drain()
    resolved = [e for e in rig.events if isinstance(e, ApprovalResolved)]
    assert [(e.outcome, e.detail) for e in resolved] == [("failed_recheck", detail)]
    card = await rig.engine.approvals.get(approval)
    assert card is not None and card["state"] == "FAILED_RECHECK"
    assert rig.sim.state.orders == {}


@pytest.mark.parametrize("gate12", [True, False], ids=["filter-on", "filter-off"])
async def test_an_entry_whose_ticker_has_no_best_ask_is_refused_with_the_reason(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path, gate12: bool
) -> None:
    """With gate 12 off nothing looked at the ticker's book before ``Decimal(ticker["bestAskPrice"])``: a null
    best ask raised out of the entry (the symbol's lane logged ``lane.job_failed``, the trader heard nothing).
    Now the entry is refused, with the reason, whatever the filter says; nothing is placed."""
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir)
        gates = CFG.gates.model_copy(update={"live_avoid_entry_filter": gate12})
        rig.engine.cfg = CFG.model_copy(update={"gates": gates})
        sim.faults.garble_reply_next(1, path_prefix="/api/v1/ticker", kind="null:bestAskPrice")
        assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
        await rig.bus.drain()
        reasons = [e.reason for e in rig.events if isinstance(e, OrderRejected)]
        assert reasons == ["market data unavailable: the ETHUSDTM ticker has no best ask (None)"]
        assert sim.state.orders == {}
        await rig.bus.stop()


async def test_an_entry_whose_ticker_is_not_an_object_is_refused_with_the_reason(rig: Rig) -> None:
    """A ticker answer whose data is a list made the client's dict() raise out of read_market and the decision's
    lane (lane.job_failed: no decision stored, nothing told). Now the entry is refused with the reason."""
    rig.sim.faults.garble_reply_next(1, path_prefix="/api/v1/ticker", kind="not_object")
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    await rig.bus.drain()
    reasons = [e.reason for e in rig.events if isinstance(e, OrderRejected)]
    assert len(reasons) == 1 and reasons[0].startswith("market data unavailable: ValueError: "), reasons
    assert rig.sim.state.orders == {}
