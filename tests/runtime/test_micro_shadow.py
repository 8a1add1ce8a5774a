"""§5.3 / §11: the live shadow micro score, read from the simulator over loopback at a passed decision and recorded
next to it (``shadowScore = finalScore + microScore``), never applied. Analyzer rules: docs/ARCHITECTURE.md
"Microstructure shadow score". Backtests never compute it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from bot.formatting import format_event
from engine.config import default_strategy_config
from engine.events import ApprovalRequested, OrderRejected, PositionOpened, SignalEvaluated
from engine.runtime.engine import TradingEngine
from engine.runtime.microstructure import Market, Reading, Tape, analyzer_points, micro_shadow
from engine.scoring.signals import Direction
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from storage.db import Database
from tests.conftest import ROOT
from tests.runtime.conftest import Rig, make_engine
from tests.runtime.test_engine import long_decision

CFG = default_strategy_config()
SYM = "ETHUSDTM"


def book(*bands: tuple[int, int, int]) -> tuple[list[list[Any]], list[list[Any]]]:
    """Levels a tick apart around 2000: each band is (levels, bid lots, ask lots) at each of its levels."""
    bids: list[list[Any]] = []
    asks: list[list[Any]] = []
    for levels, bid, ask in bands:
        for _ in range(levels):
            i = len(bids)
            bids.append([float(D("1999.99") - i * D("0.01")), bid])
            asks.append([float(D("2000.01") + i * D("0.01")), ask])
    return bids, asks


async def decided(rig: Rig, score: float = 92.9) -> tuple[dict[str, Any], list[Any]]:
    """A passed decision through the engine's decision path; returns the stored record and the events."""
    await rig.engine.on_decision(SYM, long_decision(score))
    await rig.bus.drain()
    stored = await rig.log.recent(limit=5, kind="signal_evaluated")
    assert len(stored) == 1
    assert isinstance(stored[0], SignalEvaluated)
    return stored[0].decision, rig.events


def points(record: dict[str, Any]) -> dict[str, float]:
    return {name: a["points"] for name, a in record["micro"]["analyzers"].items()}


async def test_a_book_with_bid_share_065_at_every_depth_scores_the_dom_strong_and_is_stored(rig: Rig) -> None:
    rig.sim.books[SYM] = book((25, 65, 35))  # 0.65 over the top 5, 10 and 25 levels
    record, events = await decided(rig)
    micro = record["micro"]
    dom = micro["analyzers"]["dom"]
    assert dom["value"] == {"5": 0.65, "10": 0.65, "25": 0.65}
    assert (dom["direction"], dom["strength"]) == ("bullish", "strong")
    assert dom["points"] == 8.1  # 18 × 0.45 × 1.0 (strong)
    # The simulator's other inputs are neutral or absent: funding 0.01 %, mark = index, an empty tape.
    assert points(record) == {"buySellRatio": 0.0, "priceRatio": 0.0, "fundingRate": 0.0, "dom": 8.1}
    assert micro["analyzers"]["buySellRatio"]["missing"] == "no trades on the tape"
    assert micro["analyzers"]["fundingRate"]["value"] == 0.01
    assert micro["analyzers"]["priceRatio"]["value"] == 0.0
    assert (micro["final_score"], micro["micro_score"], micro["shadow_score"], micro["applied"]) == (
        92.9,
        8.1,
        101.0,
        False,
    )
    assert record["final_score"] == 92.9  # the real decision is untouched
    # The entry went through on the same reads: one tape, one book, one mark; the second ticker is the guarded IOC's.
    paths = [path.split("?")[0] for _, path in rig.sim.requests]
    assert paths.count("/api/v1/level2/depth100") == 1
    assert paths.count("/api/v1/mark-price/ETHUSDTM/current") == 1
    assert paths.count("/api/v1/trade/history") == 1 and paths.count("/api/v1/funding-rate/ETHUSDTM/current") == 1
    assert paths.count("/api/v1/ticker") == 2
    assert [e.lots for e in events if isinstance(e, PositionOpened)] == [179]
    signal = next(e for e in events if isinstance(e, SignalEvaluated))
    card = format_event(signal)
    assert card is not None
    assert card.splitlines()[-1] == "shadow score +101.0 (micro +8.1, not applied, no data: buySellRatio)"


@pytest.mark.parametrize(
    ("bands", "direction", "strength", "pts"),
    [
        # top 5: 0.65, top 10: 0.625, top 25: 0.43 → two depths bullish, one neutral: moderate, 18 × 0.45 × 0.6
        (((5, 65, 35), (5, 60, 40), (15, 30, 70)), "bullish", "moderate", 4.86),
        # top 25 now 0.31: two bullish, one bearish → net one: weak, 18 × 0.45 × 0.3
        (((5, 65, 35), (5, 60, 40), (15, 10, 90)), "bullish", "weak", 2.43),
        (((25, 30, 70),), "bearish", "strong", -8.1),  # 0.30 everywhere
        (((25, 60, 40),), "neutral", None, 0.0),  # exactly 0.60 is not "> 0.60"
    ],
)
async def test_dom_strength_is_how_many_depths_agree(
    rig: Rig, bands: tuple[tuple[int, int, int], ...], direction: str, strength: str | None, pts: float
) -> None:
    rig.sim.books[SYM] = book(*bands)
    record, _ = await decided(rig)
    dom = record["micro"]["analyzers"]["dom"]
    assert (dom["direction"], dom["strength"], dom["points"]) == (direction, strength, pts)
    assert record["micro"]["micro_score"] == pts


async def test_every_analyzer_strong_bullish_sums_to_3735_and_is_clamped_to_35(rig: Rig) -> None:
    rig.sim.books[SYM] = book((25, 65, 35))  # dom +8.1
    rig.sim.public_trades[SYM] = [
        {"ts_ms": 1, "size": 75, "price": "2000", "side": "buy"},
        {"ts_ms": 2, "size": 25, "price": "2000", "side": "sell"},
    ]  # buy share 0.75 ≥ 0.70: strong, 25 × 0.45 = +11.25 (and inside the filter's [0.15, 0.85])
    rig.sim.funding_rates[SYM] = D("-0.0015")  # shorts pay 0.15 % ≥ 0.10 %: contrarian strong bullish, +9
    rig.sim.set_price(SYM, D("2000"), mark=D("2002.4"), index=D("2000"))  # premium 0.12 % ≥ 0.10 %: +9
    record, events = await decided(rig)
    assert points(record) == {"buySellRatio": 11.25, "priceRatio": 9.0, "fundingRate": 9.0, "dom": 8.1}
    assert record["micro"]["analyzers"]["priceRatio"]["value"] == 0.12
    assert record["micro"]["analyzers"]["fundingRate"]["value"] == -0.15
    assert record["micro"]["micro_score"] == 35.0  # 37.35 clamped to microstructureScoreCap
    assert record["micro"]["shadow_score"] == 127.9
    assert any(isinstance(e, PositionOpened) for e in events)


async def test_every_analyzer_bearish_is_clamped_to_minus_35_and_moderate_bands_score_06(rig: Rig) -> None:
    rig.sim.books[SYM] = book((25, 30, 70))  # −8.1
    rig.sim.public_trades[SYM] = [
        {"ts_ms": 1, "size": 35, "price": "2000", "side": "buy"},
        {"ts_ms": 2, "size": 65, "price": "2000", "side": "sell"},
    ]  # 0.35: bearish moderate, −25 × 0.45 × 0.6 = −6.75
    rig.sim.funding_rates[SYM] = D("0.0006")  # longs pay 0.06 %: bearish moderate, −5.4
    rig.sim.set_price(SYM, D("2000"), mark=D("1998.8"), index=D("2000"))  # −0.06 %: bearish moderate, −5.4
    record, _ = await decided(rig)
    assert points(record) == {"buySellRatio": -6.75, "priceRatio": -5.4, "fundingRate": -5.4, "dom": -8.1}
    assert record["micro"]["micro_score"] == -25.65  # inside the cap: not clamped
    assert record["micro"]["shadow_score"] == 67.25


def test_an_analyzer_total_is_clamped_to_its_weight() -> None:
    """With the full weight as base points a veryStrong reading (25 × 1.0 × 1.4 = 35) would pass W = 25."""
    cfg = CFG.model_copy(
        update={"scoring": CFG.scoring.model_copy(update={"microstructure_base_points_fraction": 1.0})}
    )
    flow = cfg.microstructure.analyzers.buy_sell_ratio
    assert analyzer_points(cfg, flow, Reading(Direction.BULLISH, "veryStrong")) == D(25)
    assert analyzer_points(cfg, flow, Reading(Direction.BEARISH, "veryStrong")) == D(-25)
    assert analyzer_points(cfg, flow, Reading(Direction.BULLISH, "strong")) == D(25)
    assert analyzer_points(CFG, flow, Reading(Direction.BULLISH, "veryStrong")) == D("15.750")  # 25 × 0.45 × 1.4


async def test_a_failed_book_read_scores_the_dom_zero_with_the_reason_and_the_entry_goes_on(rig: Rig) -> None:
    rig.client.max_attempts = 1
    rig.sim.faults.server_error_next(1, path_prefix="/api/v1/level2")
    rig.sim.faults.garble_reply_next(1, path_prefix="/api/v1/mark-price")
    record, events = await decided(rig)
    analyzers = record["micro"]["analyzers"]
    assert analyzers["dom"]["points"] == 0.0 and analyzers["dom"]["missing"].startswith("level-2 book not read: ")
    assert analyzers["priceRatio"]["points"] == 0.0
    assert analyzers["priceRatio"]["missing"].startswith("mark/index not read: ")
    assert record["micro"]["micro_score"] == 0.0 and record["micro"]["shadow_score"] == 92.9
    assert any(isinstance(e, PositionOpened) for e in events)
    card = format_event(next(e for e in events if isinstance(e, SignalEvaluated)))
    assert card is not None and card.endswith("(micro +0.0, not applied, no data: buySellRatio, priceRatio, dom)")


async def test_an_unread_funding_rate_still_refuses_the_entry_but_the_tape_is_scored(rig: Rig) -> None:
    rig.client.max_attempts = 1
    rig.sim.faults.garble_reply_next(1, path_prefix="/api/v1/funding-rate")
    rig.sim.public_trades[SYM] = [
        {"ts_ms": 1, "size": 65, "price": "2000", "side": "buy"},
        {"ts_ms": 2, "size": 35, "price": "2000", "side": "sell"},
    ]
    record, events = await decided(rig)
    analyzers = record["micro"]["analyzers"]
    assert analyzers["fundingRate"]["points"] == 0.0
    assert analyzers["fundingRate"]["missing"].startswith("funding rate not read: ")
    assert analyzers["buySellRatio"]["points"] == 6.75  # 0.65: moderate, 25 × 0.45 × 0.6
    reasons = [e.reason for e in events if isinstance(e, OrderRejected)]
    assert len(reasons) == 1 and reasons[0].startswith("avoid_entry (market data unavailable: ")  # fail closed
    assert not any(isinstance(e, PositionOpened) for e in events)


async def test_a_nan_funding_rate_is_unread_and_refuses_the_entry_instead_of_raising(rig: Rig) -> None:
    """KuCoin's JSON may carry NaN (json accepts it): the rate is no number, so gate 12 fails closed with the reason
    and the shadow's fundingRate is missing. Before, the shadow's comparison raised InvalidOperation out of
    on_decision: no decision stored, no entry, no word to the trader; and gate 12 read |NaN| > 0.1 as false."""
    rig.sim.funding_rates[SYM] = D("NaN")
    record, events = await decided(rig)
    funding = record["micro"]["analyzers"]["fundingRate"]
    assert funding["points"] == 0.0
    assert funding["missing"] == "funding rate not read: funding rate NaN is not a number"
    reasons = [e.reason for e in events if isinstance(e, OrderRejected)]
    assert reasons == ["avoid_entry (market data unavailable: funding rate NaN is not a number)"]
    assert not any(isinstance(e, PositionOpened) for e in events)


async def test_an_infinite_book_size_and_a_null_index_score_zero_and_the_entry_goes_on(rig: Rig) -> None:
    """Odd shadow-only payloads cost the shadow its analyzers, never the entry: a book level of Infinity lots
    (OverflowError before) and a mark-price answer whose indexPrice is null (InvalidOperation out of the client,
    raised through read_market before)."""
    rig.sim.books[SYM] = ([[1999.99, float("inf")]] * 25, [[2000.01, 5]] * 25)
    rig.sim.faults.garble_reply_next(1, path_prefix="/api/v1/mark-price", kind="null:indexPrice")
    record, events = await decided(rig)
    analyzers = record["micro"]["analyzers"]
    assert analyzers["dom"]["points"] == 0.0
    assert analyzers["dom"]["missing"] == (
        "level-2 book not understood: OverflowError: cannot convert float infinity to integer"
    )
    assert analyzers["priceRatio"]["points"] == 0.0
    assert analyzers["priceRatio"]["missing"].startswith("mark/index not read: InvalidOperation")
    assert record["micro"]["shadow_score"] == 92.9
    assert any(isinstance(e, PositionOpened) for e in events)


async def test_a_blocked_entry_reads_no_ticker_for_itself(rig: Rig) -> None:
    """Entries paused (here by /pause; a drift, a halt or KuCoin's maintenance alike): the decision's shadow is read
    and recorded, but the entry's own ticker and gate-12 tape are not read for an entry that is refused anyway
    (before: 1 ticker read, waited for by the symbol's lane, and in maintenance retried 5 times)."""
    rig.engine.set_paused(True)
    rig.sim.requests.clear()
    record, events = await decided(rig)
    assert record["micro"]["shadow_score"] == 92.9
    paths = [path.split("?")[0] for _, path in rig.sim.requests]
    assert "/api/v1/ticker" not in paths and paths.count("/api/v1/level2/depth100") == 1
    assert [e.reason for e in events if isinstance(e, OrderRejected)] == ["paused"]
    rig.engine.set_paused(False)  # unpaused: the next one reads and enters as before
    await rig.engine.on_decision(SYM, long_decision())
    await rig.bus.drain()
    assert any(isinstance(e, PositionOpened) for e in rig.events)


async def test_a_slow_book_never_holds_the_entry_past_its_own_round_trip(rig: Rig) -> None:
    rig.sim.faults.delay_next(1, 3000, path_prefix="/api/v1/level2")  # the book answers after 3 s
    began = time.perf_counter()
    record, events = await decided(rig)
    took = time.perf_counter() - began
    assert any(isinstance(e, PositionOpened) for e in events)
    assert took < 2.0  # the entry (and its stop and TP) did not wait the 3 s
    dom = record["micro"]["analyzers"]["dom"]
    assert dom["points"] == 0.0
    assert dom["missing"] == "level-2 book not read: not answered within the entry's round trip (+0.05 s)"


async def test_manual_mode_shows_the_shadow_score_on_the_approval_card(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir, control="manual")
        sim.books[SYM] = book((25, 30, 70))  # −8.1 against a long
        await rig.engine.on_decision(SYM, long_decision())
        await rig.bus.drain()
        asked = [e for e in rig.events if isinstance(e, ApprovalRequested)]
        assert len(asked) == 1
        assert (asked[0].micro_score, asked[0].shadow_score) == (-8.1, 84.8)
        card = format_event(asked[0])
        assert card is not None and "\nshadow score +84.8 (micro -8.1, not applied)\n" in card
        stored = await rig.engine.approvals.get(asked[0].approval_id)  # type: ignore[union-attr]
        assert stored is not None and stored["payload"]["micro"]["micro_score"] == -8.1
        # No entry read: the ticker is read when the card is approved, not for the card.
        paths = [path.split("?")[0] for _, path in sim.requests]
        assert "/api/v1/ticker" not in paths and paths.count("/api/v1/level2/depth100") == 1
        await rig.bus.stop()


async def test_a_slow_book_never_holds_the_approval_card_either(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    """Manual mode has no entry read to bound the shadow's reads: a book that hangs (the client's 10 s timeout and
    its retries) held the approval card, and every later bar in the symbol's lane, as long (3.0 s for a book
    answering after 3 s). They get SHADOW_ALONE_S (1 s), then the card goes out with the DOM unscored."""
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir, control="manual")
        sim.faults.delay_next(1, 3000, path_prefix="/api/v1/level2")
        began = time.perf_counter()
        await rig.engine.on_decision(SYM, long_decision())
        took = time.perf_counter() - began
        await rig.bus.drain()
        asked = [e for e in rig.events if isinstance(e, ApprovalRequested)]
        assert len(asked) == 1 and took < 2.0
        stored = await rig.engine.approvals.get(asked[0].approval_id)  # type: ignore[union-attr]
        assert stored is not None
        assert (
            stored["payload"]["micro"]["analyzers"]["dom"]["missing"]
            == "level-2 book not read: not answered within 1 s"
        )
        assert asked[0].shadow_score == 92.9
        await rig.bus.stop()


async def test_shadow_logging_off_reads_no_book_and_records_no_micro(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir)
        micro = CFG.microstructure.model_copy(update={"shadow_logging": False})
        rig.engine.cfg = CFG.model_copy(update={"microstructure": micro})
        record, events = await decided(rig)
        assert "micro" not in record
        paths = [path.split("?")[0] for _, path in sim.requests]
        assert "/api/v1/level2/depth100" not in paths and "/api/v1/mark-price/ETHUSDTM/current" not in paths
        assert paths.count("/api/v1/trade/history") == 1  # gate 12's tape, as before
        assert any(isinstance(e, PositionOpened) for e in events)
        await rig.bus.stop()


async def test_a_disabled_analyzer_contributes_zero_and_is_not_read(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    async with Database(tmp_path / "e.sqlite") as db:
        rig = await make_engine(sim, client, db, data_dir)
        a = CFG.microstructure.analyzers
        analyzers = a.model_copy(update={"dom": a.dom.model_copy(update={"enabled": False})})
        rig.engine.cfg = CFG.model_copy(
            update={"microstructure": CFG.microstructure.model_copy(update={"analyzers": analyzers})}
        )
        sim.books[SYM] = book((25, 65, 35))
        record, _ = await decided(rig)
        assert record["micro"]["analyzers"]["dom"] == {
            "value": None,
            "direction": "neutral",
            "strength": None,
            "points": 0.0,
            "disabled": True,
        }
        assert "/api/v1/level2/depth100" not in [path.split("?")[0] for _, path in sim.requests]
        await rig.bus.stop()


async def test_stale_reads_are_made_again_for_the_entry(rig: Rig) -> None:
    """The entry waited for the positions lock longer than a second: it prices and filters from a fresh ticker."""
    wide = {"bestBidPrice": "1990", "bestAskPrice": "2010", "price": "2000"}  # 1 % spread: gate 12 refuses it
    fresh = Market(time.monotonic(), ticker=wide, tape=Tape(0.01, None))
    assert await rig.engine.enter(SYM, long_decision(), market=fresh) is None  # used as it was read
    await rig.bus.drain()
    assert [e.reason for e in rig.events if isinstance(e, OrderRejected)] == ["avoid_entry (spread 1.0000% > 0.03%)"]
    old = Market(time.monotonic() - 5, ticker=wide, tape=Tape(0.01, None))
    assert await rig.engine.enter(SYM, long_decision(), market=old) is not None  # read again: 0.001 % wide


def test_the_shadow_score_is_finalscore_plus_microscore_for_a_short() -> None:
    market = Market(time.monotonic(), book={"bids": [[1, 30]] * 25, "asks": [[2, 70]] * 25})
    record = micro_shadow(CFG, -95.5, market)
    assert (record["micro_score"], record["shadow_score"]) == (-8.1, -103.6)
    assert record["analyzers"]["priceRatio"]["missing"] == "mark/index not read: None"


def test_apply_to_live_score_is_refused_by_the_engine_too() -> None:
    cfg = CFG.model_copy(update={"microstructure": CFG.microstructure.model_copy(update={"apply_to_live_score": True})})
    with pytest.raises(ValueError, match=r"^microstructure.applyToLiveScore = true is not implemented"):
        TradingEngine(cfg, None, {}, None, None, None, None, None, equity=D(1))  # type: ignore[arg-type]


def test_a_backtest_never_computes_or_reads_microstructure(tmp_path: Path, data_dir: Path) -> None:
    """Invariant 17: a backtest over real candles that trades runs without the module ever being imported (its
    decisions are made up front by the strategy core, which has no microstructure input at all)."""
    script = f"""
import json, sys
from engine.backtest.runner import Backtester
from engine.config import default_strategy_config
from engine.marketdata.candle_files import load_candles
from engine.risk.contract import load_contract_specs
from pathlib import Path
data = Path({str(data_dir)!r})
specs = load_contract_specs(data / "contracts.json")
bt = Backtester(default_strategy_config(), {{"SOLUSDTM": load_candles(data, "SOLUSDTM", "5min")}},
                {{"SOLUSDTM": specs["SOLUSDTM"]}})
result = bt.run()
print(json.dumps({{"trades": len(result.trades),
                  "imported": sorted(m for m in sys.modules if "microstructure" in m)}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["trades"] > 0
    assert got["imported"] == []


@pytest.mark.parametrize("depths", ["5,10,250", "5,,25", "five", "0,5"])
def test_dom_depths_the_book_cannot_serve_are_refused_at_load(depths: str) -> None:
    from engine.config.errors import ConfigError
    from engine.config.strategy import validate_strategy_config

    raw = json.loads((ROOT / "docs" / "STRATEGY_CONFIG.json").read_text())
    raw["microstructure"]["analyzers"]["dom"]["depthLevels"] = depths
    with pytest.raises(ConfigError, match=r"depthLevels .* must be comma-separated level counts from 1 to 100"):
        validate_strategy_config(raw)
    raw["microstructure"]["analyzers"]["dom"]["depthLevels"] = "5, 20"
    cfg = validate_strategy_config(raw)
    assert cfg.microstructure.analyzers.dom.depth_levels == "5, 20"
