"""The paper Runtime under the faults the soak (tests/chaos/test_soak.py) threw at it: a dropped WebSocket during a
max-speed replay, a 429 storm at a reconciliation, funding paid while a replayed position was open."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
import structlog.testing

from engine.config.settings import Settings
from engine.runtime.app import RunOptions, Runtime
from exchange.models import OrderRequest, OrderSide

BAR_MS = 300_000


def paper_settings(tmp: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        symbols=["ETHUSDTM"],
        db_path=tmp / "p.sqlite",
        http_port=0,
        kill_switch_file=tmp / "KILL",
        reconcile_interval_s=3600,  # called by the tests, not by the scheduler
    )


@pytest.fixture
async def running(request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path) -> AsyncIterator[Runtime]:
    """A paper Runtime up and replaying at ``request.param`` speed."""
    rt = Runtime(paper_settings(tmp_path), RunOptions(replay_dir=data_dir, speed=request.param))
    run = asyncio.create_task(rt.run())
    async with asyncio.timeout(30):
        while rt.health.phase != "running":
            assert not run.done(), run
            await asyncio.sleep(0.02)
    yield rt
    rt.stop_event.set()
    assert await asyncio.wait_for(run, 30) == 0


@pytest.mark.parametrize("running", ["max"], indirect=True)
async def test_a_dropped_websocket_does_not_stall_a_max_speed_replay(running: Runtime) -> None:
    """Pushes sent to a connection as it dropped never arrive; the replay waited for them at every later step
    (5 s each, the settle limit), so after one drop a month's replay would have taken 12 hours: the soak saw 21
    bars in 45 s. They are written off once the connection is back and nothing more comes."""
    rt = running
    async with asyncio.timeout(10):
        while rt.market_clock.now_ms == 0 or rt.stream is None or rt.stream.received < 20:
            await asyncio.sleep(0.02)
    rt.sim.drop_ws_connections()
    rt.sim.set_price("ETHUSDTM", Decimal("3000"))  # pushed to the closing connection: lost
    rt.sim.set_price("ETHUSDTM", Decimal("3001"))
    await asyncio.sleep(0.5)
    assert rt.stream is not None and rt.stream.received < rt.sim.pushed
    at_drop = rt.market_clock.now_ms
    await asyncio.sleep(8)
    assert (rt.market_clock.now_ms - at_drop) // BAR_MS >= 100  # before: 0 (one bar every ~25 s)


@pytest.mark.parametrize("running", ["1"], indirect=True)
async def test_a_rate_limit_storm_at_a_reconciliation_is_a_warning_not_a_crashed_job(running: Runtime) -> None:
    """The positions listing answered 429 past the client's five attempts: the error escaped the scheduled job
    (an apscheduler traceback in the log) and the retries, marks and gauges of that round were skipped."""
    rt = running
    assert rt.reconcile is not None
    rt.sim.faults.rate_limit_next(5)  # the listing's five attempts, nothing after it
    with structlog.testing.capture_logs() as logs:
        await rt.reconcile()  # before: raised RateLimitedError
    assert rt.sim.faults.rate_limit_remaining == 0
    failed = [e for e in logs if e["event"] == "reconcile.failed"]
    assert [e["step"] for e in failed] == ["positions"] and "RateLimitedError" in failed[0]["error"]
    assert rt.sim.requests[-1][1].startswith("/api/v1/account-overview")  # the marks still ran after it
    await rt.reconcile()
    assert rt.health.reconciliation_clean


async def test_the_paper_exchange_stamps_its_books_on_the_replay_clock(tmp_path: Path, data_dir: Path) -> None:
    """The in-process simulator settled funding at the replay's instants but stamped orders and fills with the wall
    clock: every paper trade looked opened after the funding it paid, the engine booked 0 funding, and the soak's
    closed trades summed 1.41 USDT off the simulator's balance. Its books now follow the replay's clock."""
    rt = Runtime(paper_settings(tmp_path), RunOptions(replay_dir=data_dir, speed="max"))
    client = await rt._exchange()
    try:
        start = rt.market_clock.now_ms
        rt.sim.set_price("ETHUSDTM", Decimal("3000"), ts_ms=start)
        order = await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 10, leverage=5))
        assert order.created_at == start  # before: today's wall clock, a year after the replayed candles
        rt.market_clock.now_ms = start + 9 * 3_600_000
        rt.sim.set_price("ETHUSDTM", Decimal("3000"), ts_ms=rt.market_clock.now_ms)  # a funding instant passes
        paid = await client.funding_history("ETHUSDTM", start_ms=order.created_at)
        assert len(paid) >= 1 and all(Decimal(str(r["funding"])) < 0 for r in paid)
        assert abs(order.created_at - int(time.time() * 1000)) > 86_400_000  # the replay's time, not the wall's
    finally:
        await client.close()
        await rt.sim.stop()


@pytest.mark.parametrize("running", ["1"], indirect=True)
async def test_a_rate_limit_storm_at_a_position_push_is_a_warning_not_a_failed_lane_job(running: Runtime) -> None:
    """A position push sets off a reconciliation on the account lane; its listing answered 429 past the retries
    and the error left the lane as lane.job_failed with a traceback."""
    rt = running
    rt.sim.set_price("ETHUSDTM", Decimal("3000"))
    with structlog.testing.capture_logs() as logs:
        rt.sim.faults.rate_limit_next(5)
        body = {"clientOid": "push-test-1", "symbol": "ETHUSDTM", "side": "buy", "type": "market", "size": 1}
        rt.sim.state.place(body | {"leverage": 5, "marginMode": "ISOLATED"})  # a person's order: a push, no REST
        async with asyncio.timeout(10):
            while rt.sim.faults.rate_limit_remaining or not any(e["event"] == "reconcile.failed" for e in logs):
                assert not any(e["event"] == "lane.job_failed" for e in logs), logs  # before
                await asyncio.sleep(0.05)
    assert [e["step"] for e in logs if e["event"] == "reconcile.failed"] == ["positions (push)"]


async def start_paper(tmp: Path, data_dir: Path) -> tuple[Runtime, asyncio.Task[int]]:
    rt = Runtime(paper_settings(tmp), RunOptions(replay_dir=data_dir, speed="1"))
    run = asyncio.create_task(rt.run())
    async with asyncio.timeout(30):
        while rt.health.phase != "running":
            assert not run.done(), run
            await asyncio.sleep(0.02)
    return rt, run


async def reconciliation_held_mid_query(rt: Runtime) -> tuple[asyncio.Event, asyncio.Event]:
    """Start the scheduled reconciliation now, through the scheduler, and hold it inside ``refresh_gauges``'s
    SQLite query (the retry queue's depth) until the returned ``release`` is set: the interleaving the soak hit."""
    assert rt.engine is not None
    entered, release = asyncio.Event(), asyncio.Event()
    depth = rt.engine.retry.depth

    async def held_depth() -> int:
        entered.set()
        await release.wait()
        return await depth()

    rt.engine.retry.depth = held_depth  # type: ignore[method-assign]
    rt.jobs.scheduler.modify_job("reconcile", next_run_time=datetime.now(UTC))
    await asyncio.wait_for(entered.wait(), 10)
    return entered, release


async def test_a_stop_waits_for_a_reconciliation_in_flight_before_closing(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The soak's stop cancelled the scheduled reconciliation halfway through its SQLite query: APScheduler logged
    the CancelledError as 'Job "reconcile" raised an exception' with a traceback. Now the stop lets it finish."""
    rt, run = await start_paper(tmp_path, data_dir)
    _, release = await reconciliation_held_mid_query(rt)
    rt.metrics.retry_depth.set(-1)
    with caplog.at_level(logging.WARNING):
        rt.stop_event.set()
        await asyncio.sleep(0.5)
        assert not run.done()  # waiting for the job, the database still open
        release.set()
        assert await asyncio.wait_for(run, 30) == 0
    depth = rt.metrics.registry.get_sample_value("enygma_retry_queue_depth")
    assert depth == 0  # the job ran to its end: its query answered 0 (the gauge was -1 before it)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records)  # before: 'Job "reconcile" raised an exception' + traceback


async def test_a_reconciliation_hung_past_the_grace_is_cut_short_quietly(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that does not finish within the grace (an exchange hanging) is cancelled by the stop: one warning,
    no traceback, and the stop still ends cleanly (exit 0) within the grace."""
    rt, run = await start_paper(tmp_path, data_dir)
    rt.jobs.grace_s = 0.5
    await reconciliation_held_mid_query(rt)  # never released
    with caplog.at_level(logging.WARNING), structlog.testing.capture_logs() as logs:
        rt.stop_event.set()
        assert await asyncio.wait_for(run, 30) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # before: the traceback
    assert not any(r.exc_info for r in caplog.records)
    assert [e["job"] for e in logs if e["event"] == "job.cut_short"] == ["reconcile"]
