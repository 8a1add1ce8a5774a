"""The runtime against the simulator: entry and protection, coordinated stop moves, retries, exits,
kill switch, file kill switch, shadow mode, and restart recovery."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path

from engine.events import ApprovalResolved
from engine.gates.result import GateResult
from engine.runtime.protection import Protected
from engine.runtime.trading_state import IllegalTransitionError, TradingState, check_transition
from engine.scoring.pipeline import Decision
from engine.scoring.signals import Direction
from exchange.models import OrderRequest, OrderSide, StopDirection, StopPriceType
from storage.db import MIGRATIONS, Database
from tests.runtime.conftest import Rig, make_engine


def long_decision(score: float = 92.9) -> Decision:
    return Decision(
        "ETHUSDTM", 0, 2000.0, score, "STRONG_BUY", Direction.BULLISH, 0.98, 0.35, [GateResult("all", True)]
    )


def long_stop(lots: int, price: D, client_oid: str | None = None) -> OrderRequest:
    """A reduce-only stop-market on mark below a long, as the engine places them."""
    req = OrderRequest(
        "ETHUSDTM",
        OrderSide.SELL,
        lots,
        reduce_only=True,
        stop=StopDirection.DOWN,
        stop_price=price,
        stop_price_type=StopPriceType.MARK,
    )
    return req if client_oid is None else dataclasses.replace(req, client_oid=client_oid)


async def live_stops(rig: Rig) -> list[tuple[StopDirection | None, D | None]]:
    return sorted(((o.stop, o.stop_price) for o in await rig.client.open_stop_orders("ETHUSDTM")), key=str)


async def test_entry_places_stop_and_take_profit_at_once(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    pos = await rig.client.position("ETHUSDTM")
    assert pos.lots == p.lots == 179  # floor(200 USDT margin × 18 / (2000.01 best ask × 0.01))
    # Fill 2000.40 (0.02 % slippage); SL at −10 % ROI and TP at +30 % ROI at 18x, tick-rounded.
    assert (p.entry, p.leverage, p.stop, p.take_profit) == (D("2000.40"), 18, D("1989.29"), D("2033.74"))
    assert await live_stops(rig) == [(StopDirection.DOWN, D("1989.29")), (StopDirection.UP, D("2033.74"))]
    stops = await rig.client.open_stop_orders("ETHUSDTM")
    assert all(o.reduce_only for o in stops)
    await rig.bus.drain()
    assert rig.kinds()[:4] == ["order_placed", "position_opened", "stop_placed", "stop_placed"]
    assert await rig.log.count("position_opened") == 1


async def test_stop_moves_place_confirm_cancel_and_never_untrail(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    seen = []
    for step, mark in enumerate(("2010.00", "2012.00", "2014.50", "2020.00", "2016.00")):
        now = 1_800_000_000_000 + step * 10_000  # each tick past the debounce window
        rig.engine.clock = lambda now=now: now
        rig.sim.set_price("ETHUSDTM", D(mark))
        await rig.engine.on_mark("ETHUSDTM", D(mark))
        seen.append(p.stop)
        assert len([s for s in await live_stops(rig) if s[0] is StopDirection.DOWN]) == 1  # exactly one stop
    assert seen == sorted(seen) and seen[-1] > p.entry
    await rig.bus.drain()
    reasons = [e.reason for e in rig.events if e.kind == "stop_moved"]  # type: ignore[attr-defined]
    assert reasons[0] == "break_even" and "trailing_stop" in reasons
    assert rig.engine.coordinator.replaces == len(reasons)


async def failed_stop_move(rig: Rig) -> tuple[Protected, D]:
    """A position whose stop move (on a +0.6 % mark) the exchange refused: queued for retry, the old stop kept."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    old_stop = p.stop
    rig.sim.faults.server_error_next(30)
    rig.sim.set_price("ETHUSDTM", D("2012.00"))
    rig.engine.clock = lambda: 1_800_000_000_000
    await rig.engine.on_mark("ETHUSDTM", D("2012.00"))
    assert p.replace_state == "PLACING_NEW" and p.stop == old_stop
    assert await rig.engine.retry.depth() == 1
    rig.sim.faults.reset()
    return p, old_stop


async def test_failed_replace_is_queued_and_retried(rig: Rig) -> None:
    p, old_stop = await failed_stop_move(rig)
    assert [s for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [(StopDirection.DOWN, old_stop)]
    rig.engine.clock = lambda: 1_800_000_100_000
    assert await rig.engine.run_retries() == 1
    assert p.replace_state == "STEADY" and p.stop > old_stop
    assert [s[1] for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [p.stop]
    assert await rig.engine.retry.depth() == 0


async def test_stop_hit_closes_accounts_and_cleans_up(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    rig.sim.set_price("ETHUSDTM", D("1985.00"))
    await rig.engine.sync_positions()
    assert "ETHUSDTM" not in rig.engine.managed
    assert await rig.client.open_stop_orders("ETHUSDTM") == []  # the TP leg was cancelled
    await rig.bus.drain()
    closed = next(e for e in rig.events if e.kind == "position_closed")
    assert closed.exit_reason == "stop_loss"  # type: ignore[attr-defined]
    assert closed.net < 0  # type: ignore[attr-defined]
    assert rig.engine.risk.consecutive_losses == 1


async def test_kill_switch_flattens_halts_and_is_idempotent(rig: Rig) -> None:
    await rig.engine.enter("ETHUSDTM", long_decision())
    report = await rig.engine.kill_switch()
    assert report.flat and report.closed_positions == ["ETHUSDTM"] and report.cancelled_orders == 2
    assert rig.engine.state is TradingState.HALTED
    assert (await rig.client.position("ETHUSDTM")).lots == 0
    again = await rig.engine.kill_switch()
    assert again.flat and again.closed_positions == [] and again.cancelled_orders == 0
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None  # no entries while halted


async def test_file_kill_switch_blocks_new_orders(rig: Rig, tmp_path: Path) -> None:
    flag = tmp_path / "KILL"
    rig.engine.options.kill_switch_file = flag
    flag.touch()
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert rig.sim.state.orders == {}
    flag.unlink()
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is not None


async def test_shadow_mode_validates_and_places_nothing(rig: Rig) -> None:
    rig.engine.options.mode = "shadow"
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None
    assert rig.sim.state.orders == {}
    rig.engine.options.mode, rig.engine.options.armed = "live", False
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None  # live but not armed behaves as shadow
    assert rig.sim.state.orders == {}


async def test_restart_mid_replace_resumes_with_one_stop_and_no_duplicates(
    rig: Rig, tmp_path: Path, data_dir: Path
) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    # The engine persisted PLACING_NEW and sent the new stop, then died before it heard back.
    p.replace_state, p.pending_client_oid, p.pending_price = "PLACING_NEW", "sl-crash-0001", D("1995.00")
    await rig.engine.positions_repo.save(p.row())
    await rig.client.place_order(long_stop(p.lots, D("1995.00"), "sl-crash-0001"))
    orders_before = len(rig.sim.state.orders)
    fresh = await make_engine(rig.sim, rig.client, rig.db, data_dir)
    diffs = await fresh.engine.recover()
    restored = fresh.engine.managed["ETHUSDTM"].protection
    assert diffs == [] and restored.replace_state == "STEADY" and restored.stop == D("1995.00")
    downs = [s for s in await live_stops(rig) if s[0] is StopDirection.DOWN]
    assert downs == [(StopDirection.DOWN, D("1995.00"))]  # exactly one live stop: the new one
    assert len(rig.sim.state.orders) == orders_before  # nothing re-sent
    await fresh.bus.stop()


async def test_missing_stop_is_an_alarm_and_is_replaced(rig: Rig) -> None:
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    await rig.client.cancel_all_stop_orders("ETHUSDTM")  # someone removed the protection behind our back
    diffs = await rig.engine.sync_positions()
    assert "ETHUSDTM: stop missing" in diffs
    assert len(await rig.client.open_stop_orders("ETHUSDTM")) == 2
    await rig.bus.drain()
    assert "stop_missing" in rig.kinds()


async def test_unmanaged_exchange_position_is_adopted_and_protected(rig: Rig) -> None:
    await rig.client.place_order(OrderRequest("ETHUSDTM", OrderSide.SELL, 20, leverage=10))
    diffs = await rig.engine.sync_positions()
    assert diffs == ["ETHUSDTM: unmanaged position of -20 lots adopted"]
    p: Protected = rig.engine.managed["ETHUSDTM"].protection
    assert p.lots == 20 and p.stop > p.entry and len(await rig.client.open_stop_orders("ETHUSDTM")) == 2


def test_trading_state_table() -> None:
    check_transition(TradingState.ACTIVE, TradingState.REDUCING)
    check_transition(TradingState.HALTED, TradingState.REDUCING)
    try:
        check_transition(TradingState.HALTED, TradingState.ACTIVE)
    except IllegalTransitionError as exc:
        assert "HALTED to ACTIVE" in str(exc)
    else:
        raise AssertionError("HALTED must not jump back to ACTIVE")


async def test_database_migrates_from_empty_and_from_version_one(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.sqlite")
    db._conn = None
    import aiosqlite

    conn = await aiosqlite.connect(tmp_path / "m.sqlite")
    await conn.close()
    async with Database(tmp_path / "m.sqlite") as fresh:
        assert await fresh.schema_version() == len(MIGRATIONS) == 6
        assert (await fresh.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
    partial = Database(tmp_path / "p.sqlite")
    partial._conn = await aiosqlite.connect(tmp_path / "p.sqlite")
    assert await partial.migrate(target=1) == 1
    await partial.execute("INSERT INTO events (ts_ms, kind, payload) VALUES (1, 'old', '{}')")
    assert await partial.migrate() == 6
    row = await partial.fetchone("SELECT kind, seq FROM events")
    assert row is not None and (row[0], row[1]) == ("old", None)  # history from before the journal is kept
    await partial.close()


async def test_manual_approval_executes_exactly_once(rig: Rig) -> None:
    rig.engine.options.control = "manual"
    approval_id = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert approval_id is not None and rig.sim.state.orders == {}
    assert await rig.engine.approve(approval_id, by="phone") == "executed"
    assert await rig.engine.approve(approval_id, by="tablet") == "expired"  # a double tap does nothing
    assert len([o for o in rig.sim.state.orders.values() if not o.stop]) == 1
    await rig.bus.drain()
    outcomes = [e.outcome for e in rig.events if e.kind == "approval_resolved"]  # type: ignore[attr-defined]
    assert outcomes == ["executed"]
    asked = next(e for e in rig.events if e.kind == "approval_requested")
    # The card shows why: the decision's score, confidence and the gates it passed (kept when resolved).
    assert (asked.score, asked.confidence, asked.gates) == (92.9, 0.98, ["all"])  # type: ignore[attr-defined]


async def test_approval_reject_expire_drift_and_restart(rig: Rig, data_dir: Path) -> None:
    a = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert a is not None and await rig.engine.reject(a) and not await rig.engine.reject(a)
    assert await rig.engine.approve(a) == "expired"
    b = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert b is not None
    rig.engine.clock = lambda: 2_000_000_000_000  # long after the card's expiry
    assert await rig.engine.expire_approvals() == [b]
    assert await rig.engine.approve(b) == "expired"
    rig.engine.clock = lambda: int(__import__("time").time() * 1000)
    c = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert c is not None
    rig.sim.set_price("ETHUSDTM", D("2020.00"))  # 1 % away from the signal: more than the 0.3 % allowed
    assert await rig.engine.approve(c) == "failed_recheck"
    rig.sim.set_price("ETHUSDTM", D("2000.00"))
    d = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert d is not None
    restarted = await make_engine(rig.sim, rig.client, rig.db, data_dir)  # the card survives a restart
    assert await restarted.engine.approve(d) == "executed"
    assert await restarted.engine.approve(d) == "expired"
    assert (await rig.client.position("ETHUSDTM")).lots > 0
    await restarted.bus.stop()
    assert rig.sim.state.orders  # traded exactly once


async def test_console_approver_over_loopback_http(rig: Rig) -> None:
    import aiohttp
    from aiohttp import web

    from engine.runtime.http import Health, Metrics, build_app

    async def approver(approval_id: str, action: str) -> str:
        return await rig.engine.approve(approval_id) if action == "approve" else "rejected"

    runner = web.AppRunner(build_app(Metrics(), Health(), lambda: {"mode": "paper"}, approver))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        a = await rig.engine.request_approval("ETHUSDTM", long_decision())
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/approvals/{a}/approve") as r:
                assert (await r.json()) == {"outcome": "executed"}
            async with http.post(f"http://127.0.0.1:{port}/approvals/{a}/approve") as r:
                assert (await r.json()) == {"outcome": "expired"}
            async with http.get(f"http://127.0.0.1:{port}/health/ready") as r:
                assert r.status == 503  # no candle yet: not ready
    finally:
        await runner.cleanup()


async def test_console_approval_with_an_unknown_id_says_so(rig: Rig) -> None:
    """README: approve from the server with curl and the id from the log. A mistyped id used to answer
    {"outcome": "expired"} with 200, as if the trade had been missed; now 404 'unknown', and the real id works."""
    import aiohttp
    from aiohttp import web

    from engine.runtime.http import Health, Metrics, build_app

    runner = web.AppRunner(build_app(Metrics(), Health(), lambda: {"mode": "paper"}, rig.engine.console_decide))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        a = await rig.engine.request_approval("ETHUSDTM", long_decision())
        assert a is not None
        async with aiohttp.ClientSession() as http:
            for action in ("approve", "reject"):
                async with http.post(f"http://127.0.0.1:{port}/approvals/{a}x/{action}") as r:
                    body = await r.json()
                    assert r.status == 404 and body["outcome"] == "unknown" and "approval_requested" in body["error"]
            async with http.post(f"http://127.0.0.1:{port}/approvals/{a}/approve") as r:
                assert r.status == 200 and (await r.json()) == {"outcome": "executed"}
            async with http.post(f"http://127.0.0.1:{port}/approvals/{a}/reject") as r:
                assert r.status == 200 and (await r.json()) == {"outcome": "expired"}  # used: nothing happens
        assert (await rig.client.position("ETHUSDTM")).lots > 0
    finally:
        await runner.cleanup()


async def test_hedge_mode_engine_names_the_position_side(rig: Rig) -> None:
    await rig.client.set_position_mode(hedge=True)
    rig.engine.options.hedge = rig.engine.coordinator.hedge = True
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    sides = {x.position_side: x.lots for x in await rig.client.symbol_positions("ETHUSDTM")}
    assert sides == {"LONG": p.lots}
    assert {o.position_side for o in rig.sim.state.orders.values()} == {"LONG"}
    report = await rig.engine.kill_switch()
    assert report.flat


async def test_warm_up_from_rest_and_backfill_of_missed_candles(rig: Rig, data_dir: Path) -> None:
    from engine.marketdata.candle_files import load_candles

    candles = load_candles(data_dir, "ETHUSDTM", "5min")[:1400]
    for c in candles[:1300]:
        rig.sim.push_candle("ETHUSDTM", "5min", c)
    rows = await rig.client.klines("ETHUSDTM", 5, candles[0].ts, candles[1299].ts)
    history = [type(candles[0])(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]
    assert await rig.engine.warm_up("ETHUSDTM", history) == 1300
    assert await rig.engine.warm_up("ETHUSDTM", history[-10:]) == 0  # never applied twice
    assert rig.engine.last_decision["ETHUSDTM"].failing != ["data_not_ready"]
    for c in candles[1300:1305]:
        rig.sim.push_candle("ETHUSDTM", "5min", c)  # the exchange has them; the stream missed them
    d = await rig.engine.backfill_and_close("ETHUSDTM", candles[1305])
    assert rig.engine.pipelines["ETHUSDTM"].primary.last_ts == candles[1305].ts
    assert d.failing != ["data_not_ready"]  # bridged with real candles, not reset
    d = await rig.engine.backfill_and_close("ETHUSDTM", candles[1320])  # 1306–1319 exist nowhere
    assert d.failing == ["data_not_ready"]
    await rig.bus.drain()
    gaps = [e for e in rig.events if e.kind == "candle_gap"]
    assert len(gaps) == 1 and gaps[0].missing == 14  # type: ignore[attr-defined]


async def test_funding_paid_enters_the_closed_trade(rig: Rig) -> None:
    rig.engine.clock = lambda: 1_766_016_000_000  # the engine's clock and the market's agree in this test
    rig.sim.state.clock = lambda: 1_766_016_000_000  # ... and so does the exchange's (it stamps the entry)
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    rig.sim.set_price("ETHUSDTM", D("2000.00"), ts_ms=1_766_016_000_000)
    rig.sim.set_price("ETHUSDTM", D("2000.00"), ts_ms=1_766_016_000_000 + 5 * 3_600_000)  # 04:00 passed
    rig.sim.set_price("ETHUSDTM", D("1985.00"), ts_ms=1_766_016_000_000 + 6 * 3_600_000)  # through the stop
    await rig.engine.sync_positions()
    await rig.bus.drain()
    closed = next(e for e in rig.events if e.kind == "position_closed")
    # A long pays 2000 × 179 lots × 0.01 × 0.0001 = 0.358 USDT at 04:00.
    assert closed.funding == D("0.35800000")  # type: ignore[attr-defined]
    assert closed.net == closed.gross - closed.fees - closed.funding  # type: ignore[attr-defined]


async def test_every_bar_is_recorded_and_candidates_are_explained_in_full(rig: Rig, data_dir: Path) -> None:
    from engine.marketdata.candle_files import load_candles

    candles = load_candles(data_dir, "ETHUSDTM", "5min")[:1500]
    await rig.engine.warm_up("ETHUSDTM", candles[:1300])
    assert rig.engine.explain_from == 80.0  # STRICT: the entry threshold
    rig.engine.explain_from = 30.0  # lower, so both kinds occur within 200 real bars
    decisions = [await rig.engine.on_closed_candle("ETHUSDTM", c) for c in candles[1300:]]
    await rig.bus.drain()
    recorded = [e.decision for e in rig.events if e.kind == "signal_evaluated"]  # type: ignore[attr-defined]
    assert len(recorded) == len(decisions) == 200
    for d, r in zip(decisions, recorded, strict=True):
        assert (r["ts"], r["final_score"], r["passed"], r["failing"]) == (d.ts, d.final_score, d.passed, d.failing)
        assert r["explained"] is (d.passed or abs(d.final_score) >= 30.0)
        assert ("gates" in r) is r["explained"]
    full = [r for r in recorded if r["explained"]]
    short = [r for r in recorded if not r["explained"]]
    assert full and short
    assert {g["code"] for g in full[0]["gates"]} >= {"dead_zone", "min_score", "min_confidence"}
    stored = await rig.log.recent(limit=200, kind="signal_evaluated")
    assert len(stored) == 200


async def test_open_margins_use_each_positions_own_contract(rig: Rig, data_dir: Path) -> None:
    from engine.models import Side
    from engine.risk.contract import load_contract_specs

    specs = load_contract_specs(data_dir / "contracts.json")
    rig.engine.specs["XBTUSDTM"] = specs["XBTUSDTM"]
    assert specs["XBTUSDTM"].multiplier != specs["ETHUSDTM"].multiplier
    await rig.engine.adopt("XBTUSDTM", Side.LONG, 20, D("90000"), 10)
    await rig.engine.adopt("ETHUSDTM", Side.LONG, 30, D("2000"), 5)
    margins = rig.engine.open_margins()
    assert margins["XBTUSDTM"] == D("90000") * specs["XBTUSDTM"].multiplier * 20 / 10  # 180 USDT at 0.001 BTC
    assert margins["ETHUSDTM"] == D("2000") * specs["ETHUSDTM"].multiplier * 30 / 5
    assert margins["XBTUSDTM"] == D("180")


async def test_a_close_is_accounted_from_the_exchanges_fills_even_when_the_engine_clock_runs_ahead(rig: Rig) -> None:
    import time

    ahead = 3_600_000  # a paper replay clock, or a badly synced host: one hour ahead of the exchange
    rig.engine.clock = lambda: int(time.time() * 1000) + ahead
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    assert abs(p.opened_ms - time.time() * 1000) < 60_000  # the exchange's time of the entry, not the engine's
    rig.sim.set_price("ETHUSDTM", D("2040.00"))  # through the take-profit at 2033.74
    await rig.engine.sync_positions()
    await rig.bus.drain()
    closed = next(e for e in rig.events if e.kind == "position_closed")
    assert closed.exit_reason == "take_profit"  # type: ignore[attr-defined]
    assert closed.exit >= D("2033.74") and closed.net > 0  # type: ignore[attr-defined]  # not booked at the stop


async def test_kill_switch_costs_a_few_requests_however_large_the_universe(rig: Rig, data_dir: Path) -> None:
    """Per-symbol cancels over 542 symbols would wait minutes on KuCoin's rate limit: the kill switch works
    account-wide, and still catches an order on a symbol the bot does not even trade."""
    from exchange.models import OrderType

    spec = rig.engine.specs["ETHUSDTM"]
    for i in range(541):
        rig.engine.specs[f"X{i}USDTM"] = spec  # a universe the size of KuCoin's
    await rig.engine.enter("ETHUSDTM", long_decision())
    rig.sim.set_price("SOLUSDTM", D("150"))
    await rig.client.place_order(
        OrderRequest("SOLUSDTM", OrderSide.BUY, 3, leverage=5, type=OrderType.LIMIT, price=D("100"))
    )
    before = len(rig.sim.requests)
    report = await rig.engine.kill_switch()
    made = rig.sim.requests[before:]
    assert report.flat, report.leftovers
    assert report.cancelled_orders == 3  # ETH's stop and TP, SOL's limit order
    assert len(made) <= 16, made  # symbol by symbol it was > 2,000; closing ETH and accounting for it is most of these
    assert (await rig.client.position("ETHUSDTM")).lots == 0


async def test_kill_switch_sweeps_a_stop_that_lands_while_it_runs(rig: Rig) -> None:
    """A stop replace already on its way when the kill switch fires can land after the first cancel-all. The
    kill switch moves no stop itself meanwhile, and sweeps the stops again after closing, so it ends flat."""
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    client = rig.engine.client
    real_cancel = client.cancel_all_stop_orders
    moved_during: list[bool] = []

    async def cancel_then_a_late_stop_lands(symbol: str | None = None) -> list[str]:
        ids = await real_cancel(symbol)
        if not moved_during:  # the first sweep: now the in-flight replace lands on the exchange
            await rig.client.place_order(long_stop(p.lots, D("1995.00")))
            moved_during.append(await rig.engine.on_mark("ETHUSDTM", D("2030.00")))  # deep in profit
        return ids

    client.cancel_all_stop_orders = cancel_then_a_late_stop_lands  # type: ignore[method-assign]
    report = await rig.engine.kill_switch()
    assert moved_during == [False]  # no stop move while the kill switch closes everything
    assert report.flat, report.leftovers
    assert await rig.client.open_stop_orders("ETHUSDTM") == []
    assert (await rig.client.position("ETHUSDTM")).lots == 0


async def _history_and_live(rig: Rig, data_dir: Path, live_volume_factor: float) -> tuple[list[object], list[object]]:
    from engine.marketdata.candle_files import load_candles
    from engine.models import Candle

    candles = load_candles(data_dir, "ETHUSDTM", "5min")[:1306]
    for c in candles:
        rig.sim.candles.setdefault(("ETHUSDTM", 5), []).append([c.ts, c.open, c.high, c.low, c.close, c.volume])
    await rig.engine.warm_up("ETHUSDTM", candles[:1300])
    live = [Candle(c.ts, c.open, c.high, c.low, c.close, c.volume * live_volume_factor) for c in candles[1300:]]
    return list(candles[1300:]), list(live)


async def test_stream_volumes_that_agree_with_rest_are_trusted_after_three_checks(rig: Rig, data_dir: Path) -> None:
    _rest, live = await _history_and_live(rig, data_dir, 1.0)
    before = len(rig.sim.requests)
    for c in live:
        await rig.engine.backfill_and_close("ETHUSDTM", c)  # type: ignore[arg-type]
    klines = [r for r in rig.sim.requests[before:] if r[1].startswith("/api/v1/kline/query")]
    assert len(klines) == 3 and rig.engine.stream_volume == "trusted"  # then no more requests
    assert rig.engine.recent_candles["ETHUSDTM"][-1] == live[-1]


async def test_stream_volumes_that_disagree_switch_closes_to_rest_with_an_alarm(rig: Rig, data_dir: Path) -> None:
    rest, live = await _history_and_live(rig, data_dir, 37.0)  # as if x6 were a turnover, not lots
    for c in live:
        await rig.engine.backfill_and_close("ETHUSDTM", c)  # type: ignore[arg-type]
    assert rig.engine.stream_volume == "rest"
    assert list(rig.engine.recent_candles["ETHUSDTM"])[-6:] == rest  # every live close taken from REST
    await rig.bus.drain()
    alarms = [e for e in rig.events if e.kind == "health_changed" and not e.healthy]  # type: ignore[attr-defined]
    assert len(alarms) == 1 and "differs from REST" in alarms[0].detail  # type: ignore[attr-defined]


async def test_the_retry_loop_retries_a_failed_stop_move_without_waiting_for_a_reconciliation(rig: Rig) -> None:
    """The queue was worked only by the reconciliation (every 30 s): a stop that failed to go out waited that long
    whatever its backoff. The runtime now runs a retry loop every second."""
    import asyncio

    p, old_stop = await failed_stop_move(rig)
    loop = asyncio.create_task(rig.engine.retry_forever(interval_s=0.05))
    try:
        rig.engine.clock = lambda: 1_800_000_001_000  # the backoff is over
        async with asyncio.timeout(5):
            while p.replace_state != "STEADY" or await rig.engine.retry.depth():
                await asyncio.sleep(0.02)
    finally:
        loop.cancel()
    assert p.stop > old_stop
    assert [s[1] for s in await live_stops(rig) if s[0] is StopDirection.DOWN] == [p.stop]


async def test_an_approval_whose_price_check_fails_is_closed_not_left_approved(rig: Rig) -> None:
    a = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert a is not None and rig.engine.approvals is not None
    rig.client.max_attempts = 1
    rig.sim.faults.server_error_next(1)  # the exchange is down at the moment of the tap
    assert await rig.engine.approve(a, by="phone") == "failed_recheck"
    card = await rig.engine.approvals.get(a)
    assert card is not None and card["state"] == "FAILED_RECHECK"  # not APPROVED for ever ("executing...")
    await rig.bus.drain()
    resolved = [e for e in rig.events if isinstance(e, ApprovalResolved)]
    assert [(e.outcome, e.detail.startswith("price check failed")) for e in resolved] == [("failed_recheck", True)]
    assert rig.sim.state.orders == {}  # nothing was traded


async def test_an_approval_whose_entry_fails_is_closed_not_left_approved(rig: Rig) -> None:
    a = await rig.engine.request_approval("ETHUSDTM", long_decision())
    assert a is not None and rig.engine.approvals is not None
    rig.client.max_attempts = 1
    real_ticker = rig.client.ticker
    calls = 0

    async def ticker_then_down(symbol: str) -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls > 1:  # the re-check passes; the entry's own price request finds the exchange down (two: the
            rig.sim.faults.server_error_next(2)  # avoid-entry filter's funding read goes out beside it)
        return await real_ticker(symbol)

    rig.client.ticker = ticker_then_down  # type: ignore[method-assign]
    assert await rig.engine.approve(a, by="phone") == "failed_recheck"
    card = await rig.engine.approvals.get(a)
    assert card is not None and card["state"] == "FAILED_RECHECK"
    await rig.bus.drain()
    resolved = [e for e in rig.events if isinstance(e, ApprovalResolved)]
    # The entry's price read failed: refused before any order, and the card says why.
    assert [(e.outcome, "market data unavailable" in e.detail) for e in resolved] == [("failed_recheck", True)]
    assert rig.sim.state.orders == {}


async def test_manual_mode_and_pause_set_from_the_cockpit_survive_a_restart(rig: Rig, data_dir: Path) -> None:
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl, restore_switches
    from storage.repos import Settings as SavedSwitches

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    control = EngineControl(rig.engine, settings, saved=SavedSwitches(rig.db))
    await control.set_control_mode("manual", by="telegram:1")
    await control.pause(by="telegram:1")
    restarted = await make_engine(rig.sim, rig.client, rig.db, data_dir, control="auto")  # .env says auto
    await restore_switches(restarted.engine, SavedSwitches(rig.db))
    # A restart must not quietly turn approve-each-trade back into automatic trading, nor lift a pause.
    assert restarted.engine.options.control == "manual" and restarted.engine.paused
    await EngineControl(restarted.engine, settings, saved=SavedSwitches(rig.db)).resume(by="telegram:1")
    again = await make_engine(rig.sim, rig.client, rig.db, data_dir, control="auto")
    await restore_switches(again.engine, SavedSwitches(rig.db))
    assert again.engine.options.control == "manual" and not again.engine.paused
    for r in (restarted, again):
        await r.bus.stop()


async def test_hedge_mode_a_hand_opened_other_side_is_announced_once_as_unprotected(rig: Rig) -> None:
    """Hedge mode: a short opened by hand beside the managed long has no stop from the bot; it was only a log line."""
    from engine.events import HealthChanged

    await rig.client.set_position_mode(hedge=True)
    rig.engine.options.hedge = rig.engine.coordinator.hedge = True
    p = await rig.engine.enter("ETHUSDTM", long_decision())
    assert p is not None
    await rig.client.place_order(OrderRequest("ETHUSDTM", OrderSide.SELL, 7, leverage=5, position_side="SHORT"))
    await rig.engine.sync_positions()
    await rig.engine.sync_positions()  # once, not on every reconciliation
    await rig.bus.drain()
    alarms = [e for e in rig.events if isinstance(e, HealthChanged) and e.component == "position ETHUSDTM"]
    assert [(e.healthy, e.detail) for e in alarms] == [
        (
            False,
            "a short position of 7 lots beside the managed long is not managed by ENYGMA: it has no stop from the "
            "bot (protect it yourself or close it)",
        )
    ]
    assert rig.engine.managed["ETHUSDTM"].protection.side.value == "long"  # the managed one is untouched


async def test_an_entry_whose_price_read_outlasts_the_retries_is_refused_not_raised(rig: Rig) -> None:
    """Found by the fault soak: a 429 storm longer than the client's five attempts hit the ticker read that sizes
    an entry. It was outside the entry's error handling, so the exception left the symbol's lane (lane.job_failed
    with a traceback) and the decision vanished without an order_rejected. Now it is a refused entry."""
    from tests.runtime.test_equity_marks import long_decision

    rig.sim.set_price("ETHUSDTM", D("2000"))
    rig.sim.faults.rate_limit_next(15)  # every attempt of the reads: ticker, funding rate and tape, five each
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is None  # before: RateLimitedError raised
    await rig.bus.drain(timeout_s=5)
    refused = [e for e in rig.events if e.kind == "order_rejected"]
    assert len(refused) == 1 and "429" in refused[0].reason  # type: ignore[attr-defined]
    assert "ETHUSDTM" not in rig.engine.managed and rig.sim.state.position("ETHUSDTM").qty == 0
    assert await rig.engine.enter("ETHUSDTM", long_decision()) is not None  # the next signal enters as usual
