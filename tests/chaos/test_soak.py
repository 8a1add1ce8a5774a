"""Fault soak: the real Runtime in paper mode over a max-speed replay of four symbols' shared candles, while a seeded
schedule throws the simulator's faults at it all along (5xx bursts, 429 storms, lost, garbled, delayed and
gateway-timed-out order replies, order-query lag, dropped WebSockets, expired tokens, bad welcomes).

What is asserted is what a trader's money depends on, not trade counts: every open position carries exactly one
reduce-only stop of ours on its exit side (at most one TP); no entry intent produced two orders and no order of
ours shares a clientOid; every exit is reduce-only; the bot still answers /health/live; nothing died unhandled; and
the event log's closed trades add up to what the simulator's books say, to the cent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import random
import sqlite3
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from engine.config.settings import Settings
from engine.events import FundingBooked, PositionClosed, event_from_dict, with_funding_booked
from engine.logging import configure_logging
from engine.runtime.app import RunOptions, Runtime
from exchange.rest import KucoinFuturesClient
from exchange.simulator.server import SimulatorServer

SYMBOLS = ["ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM"]
SEED = int(os.environ.get("SOAK_SEED", "20261130"))  # fixed in CI; another seed explores another schedule
FAULT_RATE = 0.008  # per replay step (5 a bar): ~160 faults injected over the 20,000 steps
CHECKPOINT_STEPS = 1500  # 300 bars
TARGET_STEPS = 20_000  # 4,000 bars (about two weeks, the first four of them warming up): ~45 s under the faults
WALL_BUDGET_S = 55.0  # a slower machine stops there and checks what it got through
ZERO = Decimal(0)
# WebSocket faults cost a reconnect (~1 s of wall time, the replay waits for it): fewer of them.
FAULT_WEIGHTS = {
    "5xx": 10,
    "429": 10,
    "429-endpoint": 4,
    "lost-order-reply": 10,
    "lost-reply-any": 6,
    "gateway-timeout": 8,
    "slow-order": 6,
    "garbled": 6,
    "truncated": 6,
    "order-lag": 6,
    "ws-drop": 1,
    "token-expiry": 1,
    "bad-welcome": 1,
}


class SoakRuntime(Runtime):
    """The real Runtime; only the client's waits are shortened so a lost reply costs ~1 s of wall time, not the
    30 s of production's resend grace (the logic that uses them is unchanged). The fault schedule follows the
    replay's steps (seeded), so the same faults fall on the same stretch of market at every run."""

    def __init__(self, settings: Settings, opts: RunOptions) -> None:
        super().__init__(settings, opts)
        self.rng = random.Random(SEED)
        self.tally: Counter[str] = Counter()
        self.faulting = True
        self.steps = 0
        self.done = asyncio.Event()  # TARGET_STEPS reached
        self.checkpoints = 0
        self.violations: list[str] = []
        self.hits: Counter[str] = Counter()  # faults that met a request (an injection can wait for one, or be replaced)

    async def _exchange(self) -> KucoinFuturesClient:
        client = await super()._exchange()
        take = self.sim.faults.take

        def counted(attr: str) -> bool:
            hit: bool = take(attr)
            if hit:
                self.hits[attr.removesuffix("_remaining")] += 1
            return hit

        self.sim.faults.take = counted
        client.timeout = aiohttp.ClientTimeout(total=0.5)
        client.resend_grace_s = 1.5  # production's ratio: three times the timeout
        client.endpoint_block_s = 0.3
        client.backoff_cap_s = 0.5
        return client

    async def _replay_settled(self) -> None:
        """The replay waits here after every step: a fault may follow, and every CHECKPOINT_STEPS the market is held
        until the bot is quiet (lanes and retry queue empty) and the protection of every position is checked."""
        await super()._replay_settled()
        self.steps += 1
        if self.steps == TARGET_STEPS:
            self.faulting = False
            self.done.set()
        if self.faulting and self.steps % CHECKPOINT_STEPS == 0:
            await wait_quiet(self, 10)
            self.checkpoints += 1
            self.violations += [f"step {self.steps}: {p}" for p in protection_faults(self.sim)]
        if self.faulting and self.rng.random() < FAULT_RATE:
            inject(self.sim, self.rng, self.tally)


def inject(sim: SimulatorServer, rng: random.Random, tally: Counter[str]) -> None:
    """One fault of the schedule, picked by the seeded ``rng``."""
    f = sim.faults
    kind = rng.choices(list(FAULT_WEIGHTS), weights=list(FAULT_WEIGHTS.values()))[0]
    if kind == "5xx":
        f.server_error_next(rng.randint(1, 4))
    elif kind == "429":
        f.rate_limit_next(rng.randint(1, 6))
    elif kind == "429-endpoint":
        f.rate_limit_next(rng.randint(1, 2), code="200002")
    elif kind == "lost-order-reply":
        f.lose_reply_next(1, "/api/v1/orders")
    elif kind == "lost-reply-any":
        f.lose_reply_next(1, "/api/v1/")
    elif kind == "gateway-timeout":
        f.gateway_timeout_next(1, rng.choice([100, 300, 600]), "/api/v1/orders")
    elif kind == "slow-order":
        f.delay_next(1, 700, "/api/v1/orders")  # past the client's 0.5 s timeout: executed after it gave up
    elif kind == "garbled":
        f.garble_reply_next(1, "/api/v1/orders", kind="no_data")
    elif kind == "truncated":
        f.garble_reply_next(1, "/api/v1/orders", kind="truncated")
    elif kind == "order-lag":
        # Lag is a read right after a placement: the queries of the next 0.3 s, not whichever come next (a count
        # left standing through a quiet minute would hide an order for good, which no exchange does).
        f.order_lag_next(rng.randint(1, 2))
        asyncio.get_running_loop().call_later(0.3, setattr, f, "order_lag_remaining", 0)
    elif kind == "ws-drop":
        sim.drop_ws_connections()
    elif kind == "token-expiry":
        f.expire_tokens()
        sim.drop_ws_connections()
    elif kind == "bad-welcome":
        f.bad_welcome_next(1)
        sim.drop_ws_connections()
    tally[kind] += 1


def protection_faults(sim: SimulatorServer) -> list[str]:
    """Every open position: exactly one pending reduce-only stop-loss on its exit side, at most one TP, nothing on
    the wrong side; a flat symbol: no pending stop of ours."""
    book = sim.state
    problems = []
    for sym in SYMBOLS:
        pos = book.position(sym)
        pending = [o for o in book.orders.values() if o.symbol == sym and o.is_stop_pending]
        if pos.qty == 0:
            if pending:
                problems.append(f"{sym}: flat with {len(pending)} pending stop(s)")
            continue
        exit_side = "sell" if pos.qty > 0 else "buy"
        loss_dir, tp_dir = ("down", "up") if pos.qty > 0 else ("up", "down")
        wrong = [o for o in pending if o.side != exit_side or not o.reduce_only]
        stops = [o for o in pending if o not in wrong and o.stop == loss_dir]
        tps = [o for o in pending if o not in wrong and o.stop == tp_dir]
        if wrong or len(stops) != 1 or len(tps) > 1:
            problems.append(f"{sym}: {pos.qty} lots, stops {len(stops)}, TPs {len(tps)}, wrong {len(wrong)}")
    return problems


async def wait_quiet(rt: Runtime, seconds: float) -> None:
    """Until the lanes and the retry queue are empty and protection holds (or ``seconds`` passed)."""
    assert rt.engine is not None and rt.lanes is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if rt.lanes.depth() == 0 and await rt.engine.retry.depth() == 0 and not protection_faults(rt.sim):
            return
        await asyncio.sleep(0.25)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


async def test_fault_soak_keeps_every_position_protected_and_every_order_single(tmp_path: Path, data_dir: Path) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(json_output=True)  # the bot's own log, JSON lines, read back below
    captured = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(captured)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        symbols=SYMBOLS,
        db_path=tmp_path / "soak.sqlite",
        http_port=0,
        kill_switch_file=tmp_path / "KILL",
        reconcile_interval_s=5,
        strict_mode=False,  # several trades a symbol over the month, not one or two
    )
    rt = SoakRuntime(settings, RunOptions(replay_dir=data_dir, speed="max"))
    run = asyncio.create_task(rt.run())
    violations: list[str] = []
    started = time.monotonic()
    try:
        while rt.health.phase != "running":
            assert not run.done(), captured.getvalue()[-3000:]
            await asyncio.sleep(0.05)
        sim: SimulatorServer = rt.sim
        replay = next(t for t in rt.tasks if t.get_name() == "replay")
        with contextlib.suppress(TimeoutError):  # a slow machine checks what it got through
            await asyncio.wait_for(rt.done.wait(), WALL_BUDGET_S - (time.monotonic() - started))
        rt.faulting = False
        sim.faults.reset()
        assert not replay.done() or replay.exception() is None, replay.exception()
        replay.cancel()  # the market stops; what the bot has in hand settles
        await wait_quiet(rt, 15)
        violations = rt.violations + [f"end: {p}" for p in protection_faults(sim)]
        assert rt.engine is not None
        port = next(a[1] for a in rt._http.addresses if isinstance(a, tuple)) if rt._http else 0
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health/live") as r:
            live = (r.status, await r.json())
        open_at_end = {s: sim.state.position(s).qty for s in SYMBOLS if sim.state.position(s).qty}
        report = await rt.engine.kill_switch()  # everything flat: the books can be compared trade for trade
    finally:
        rt.stop_event.set()
        code = await asyncio.wait_for(run, 60)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = captured.getvalue()
    book = sim.state
    db = tmp_path / "soak.sqlite"
    orders = list(book.orders.values())
    intents = {oid: purpose for oid, purpose in rows(db, "SELECT client_oid, purpose FROM order_intents")}
    entry_intents = rows(db, "SELECT symbol, created_ms FROM order_intents WHERE purpose = 'entry'")
    decisions = [
        json.loads(p)["decision"] for (p,) in rows(db, "SELECT payload FROM events WHERE kind = 'signal_evaluated'")
    ]
    entry_orders = [o for o in orders if not o.reduce_only and not o.close_order]
    # Each close with the funding booked for it after it (a funding read that outlasted the client's retries).
    late = [
        e
        for (p,) in rows(db, "SELECT payload FROM events WHERE kind = 'funding_booked'")
        if isinstance(e := event_from_dict(json.loads(p)), FundingBooked)
    ]
    closes = [
        e
        for (p,) in rows(db, "SELECT payload FROM events WHERE kind = 'position_closed'")
        if isinstance(e := event_from_dict(json.loads(p)), PositionClosed)
    ]
    closed = [c.to_dict() for c in with_funding_booked(closes, late)]
    opened = rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'position_opened'")[0][0]
    summary = (
        f"{sum(rt.tally.values())} faults injected {dict(rt.tally)}, met by requests {dict(rt.hits)}, over "
        f"{rt.steps} steps with {rt.checkpoints} checkpoints; "
        f"{len(orders)} orders, {len(entry_orders)} entries, {opened} opened, {len(closed)} closed, "
        f"{open_at_end} open at the end; {time.monotonic() - started:.0f} s"
    )
    print(summary)
    if os.environ.get("SOAK_LOG"):  # exploring: keep the bot's log for reading
        Path(os.environ["SOAK_LOG"]).write_text(out)  # noqa: ASYNC240
    assert code == 0, out[-3000:]
    assert live == (200, {"live": True, "phase": "running"}), summary
    assert report.flat, report.leftovers
    # Every position protected at every checkpoint and at the end: one stop on its exit side, at most one TP.
    assert violations == [], f"{violations}; {summary}"
    # One order per intent, every clientOid once.
    # Known, not fixed (see docs/OPERATIONS.md): a reduce-only stop whose placement the gateway timed out is re-sent
    # at once (a missing stop is worse than a late one); when the stop is moved again before the first copy lands,
    # that copy lands under the same clientOid as an extra stop at the old level, until the next reconciliation
    # cancels it (the checkpoints above prove none outlives one). Entries are never re-sent that way.
    twice = {oid for oid, n in Counter(o.client_oid for o in orders).items() if n > 1}
    late = [o for o in orders if o.client_oid in twice]
    assert all(o.reduce_only and o.stop for o in late), [(o.client_oid, o.id, o.reduce_only, o.stop) for o in late]
    print(f"late copies of re-sent stops: {len(twice)}")
    # Without an intent only the kill switch's closes (reduce-only: re-sent safely, they cannot add exposure).
    assert [o.client_oid for o in orders if o.client_oid not in intents and not o.reduce_only] == [], summary
    # One entry attempt per passing decision (per symbol and bar), and only entry intents add exposure.
    assert max(Counter(entry_intents).values(), default=0) == 1, summary
    assert len(entry_intents) <= sum(1 for d in decisions if d.get("passed")), summary
    assert all(intents[o.client_oid] == "entry" for o in entry_orders), summary
    assert opened <= len(entry_orders) and opened >= 3, summary
    # Every exit reduce-only: a fill that closed exposure came from a reduce-only (or closeOrder) order.
    by_id = {o.id: o for o in orders}
    assert [
        f for f in book.fills if not f.opening and not (by_id[f.order_id].reduce_only or by_id[f.order_id].close_order)
    ] == []
    # The event log's closed trades add up to the exchange's books, to the cent (everything flat after the kill
    # switch: the balance moved by the trades' net, funding included).
    logged = sum((Decimal(str(c["net"])) for c in closed), ZERO)
    booked = book.balance - Decimal(str(settings.paper_initial_balance))
    per_symbol = {
        sym: (
            sum((Decimal(str(c["net"])) for c in closed if c["symbol"] == sym), ZERO),
            sum((f.value if f.side == "sell" else -f.value for f in book.fills if f.symbol == sym), ZERO)
            - sum((f.fee for f in book.fills if f.symbol == sym), ZERO),
        )
        for sym in SYMBOLS
    }
    assert abs(logged - booked) < Decimal("0.01"), (
        f"log {logged} vs books {booked} (per symbol {per_symbol}); {summary}"
    )
    # Nothing died unhandled: no traceback, no task exception left unretrieved, no background task stopped.
    for bad in ("Traceback", "Task exception was never retrieved", "task.died"):
        assert bad not in out, out[max(0, out.index(bad) - 1500) : out.index(bad) + 4000]
