"""SIGKILL the engine at the worst moments while a standalone simulator (another process) keeps the exchange
state; restart; the position must have exactly one live stop and no order may have been sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import ROUND_CEILING, ROUND_FLOOR
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.formatting import format_event
from engine.events import event_from_dict
from exchange.models import OrderRequest, OrderSide, StopDirection
from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from storage.db import Database
from storage.repos import Settings as SavedSwitches
from tests.bot.fake_telegram import FakeTelegram
from tests.conftest import ROOT, WebhookSink

KEY, SECRET, PASSPHRASE = "chaos-key", "chaos-secret", "chaos-pass"
CHAT = 111  # the trader's chat (and user id) when the engine runs with the fake Telegram server


def post(url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        data: dict[str, object] = json.loads(r.read())
        return data


class Rig:
    """The simulator and each engine start listen on a port the system chose at bind time (port 0), read back from
    their output. Picked beforehand (bind to 0, close, pass the number on), a port was free only until someone
    else took it: under load, with other test runs on the machine, the engine exited 1 at the start ("address
    already in use") instead of reaching its crash point."""

    def __init__(self, tmp: Path, data_dir: Path) -> None:
        self.tmp = tmp
        self.http_port = 0  # the running engine's, once it said so (``wait_ready``)
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exchange.simulator",
                "--port",
                "0",
                "--symbols",
                "ETHUSDTM",
            ],
            cwd=ROOT,
            env=os.environ | {"SIM_API_KEY": KEY, "SIM_API_SECRET": SECRET, "SIM_API_PASSPHRASE": PASSPHRASE},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.sim.stdout is not None
        first = self.sim.stdout.readline()
        assert "listening on http://" in first, first
        self.sim_url = first.split("listening on ")[1].split()[0]
        self.price(2000)
        self.engine: subprocess.Popen[str] | None = None
        self.logs: list[Path] = []  # each engine start's stdout and stderr, shown when a start ends unexpectedly

    def price(self, last: float) -> None:
        post(f"{self.sim_url}/sim/price", {"symbol": "ETHUSDTM", "last": str(last)})

    def start_engine(
        self, crash_at: str | None = None, telegram: FakeTelegram | None = None, webhook: str | None = None
    ) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "ENYGMA_"))}
        env.update(
            BOT_MODE="paper",
            PAPER_EXCHANGE_URL=self.sim_url,
            KUCOIN_API_KEY=KEY,
            KUCOIN_API_SECRET=SECRET,
            KUCOIN_API_PASSPHRASE=PASSPHRASE,
            DB_PATH=str(self.tmp / "e.sqlite"),
            HTTP_PORT="0",
            SYMBOLS="ETHUSDTM",
            RECONCILE_INTERVAL_S="5",
            KILL_SWITCH_FILE=str(self.tmp / "KILL"),
        )
        if crash_at:
            env["ENYGMA_CRASH_AT"] = crash_at
        if webhook:
            env["WEBHOOK_URL"] = webhook
        if telegram is not None:
            env.update(
                TELEGRAM_BOT_TOKEN=telegram.token,
                TELEGRAM_ALLOWED_USER_IDS=str(CHAT),
                TELEGRAM_CHAT_IDS=str(CHAT),
                TELEGRAM_API_BASE_URL=telegram.url,
            )
        self.http_port = 0
        path = self.tmp / f"engine-{time.monotonic_ns()}.log"
        self.logs.append(path)
        with path.open("w") as log:
            self.engine = subprocess.Popen(
                [sys.executable, "-m", "engine.runtime"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        return self.engine

    def log_tail(self, lines: int = 40) -> str:
        """The last engine start's output: a failed wait says why the process ended (it once exited 1 under
        load instead of reaching its crash point, and the test said only ``1 == -9``)."""
        if not self.logs:
            return "(no engine started)"
        text = self.logs[-1].read_text(errors="replace").splitlines()
        return "\n".join([f"--- {self.logs[-1].name}, last {lines} lines:", *text[-lines:]])

    def wait_exit(self, proc: subprocess.Popen[str], expected: int, timeout: float = 60) -> None:
        """Wait for ``proc`` to end with ``expected``; otherwise fail with the engine's log tail."""
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"engine still running after {timeout} s\n{self.log_tail()}") from None
        assert code == expected, f"engine exited {code}, expected {expected}\n{self.log_tail()}"

    def listening_port(self) -> int:
        """The port the last engine start said it listens on (its ``http.listening`` line), 0 until then."""
        for line in self.logs[-1].read_text(errors="replace").splitlines():
            if '"http.listening"' in line:
                return int(json.loads(line)["http"].rsplit(":", 1)[1])
        return 0

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.engine is not None and self.engine.poll() is not None:
                raise AssertionError(f"engine exited {self.engine.returncode} on its way up\n{self.log_tail()}")
            self.http_port = self.http_port or self.listening_port()
            if not self.http_port:
                time.sleep(0.2)
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health/live", timeout=2) as r:
                    if json.loads(r.read())["phase"] == "running":  # HTTP answers from before the warm-up
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"engine did not come up\n{self.log_tail()}")

    def stop_engine(self) -> None:
        if self.engine is not None and self.engine.poll() is None:
            self.engine.send_signal(signal.SIGTERM)
            self.wait_exit(self.engine, 0)

    def close(self) -> None:
        if self.engine is not None and self.engine.poll() is None:
            self.engine.kill()
        self.sim.send_signal(signal.SIGTERM)
        self.sim.wait(timeout=30)


@pytest.fixture
def rig(tmp_path: Path, data_dir: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, data_dir)
    yield r
    r.close()


async def until_protected(rig: Rig, what: str) -> None:
    """Wait until the position has its two exit orders on the exchange: the stop and the take-profit."""

    async def protected() -> bool:
        return len((await exchange_state(rig))[1]) == 2

    await until(protected, what)


async def exchange_state(rig: Rig) -> tuple[int, list[tuple[StopDirection | None, D | None]], int]:
    async with KucoinFuturesClient(rig.sim_url, Credentials(KEY, SECRET, PASSPHRASE)) as c:
        pos = await c.position("ETHUSDTM")
        stops = sorted(((o.stop, o.stop_price) for o in await c.open_stop_orders("ETHUSDTM")), key=str)
        buys = [f for f in await c.fills(symbol="ETHUSDTM") if f.side is OrderSide.BUY]
        return pos.lots, stops, len(buys)


async def enter_directly(rig: Rig, lots: int = 50) -> None:
    """The entry: filled on the exchange before the engine had a chance to protect it."""
    async with KucoinFuturesClient(rig.sim_url, Credentials(KEY, SECRET, PASSPHRASE)) as c:
        await c.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, lots, leverage=10))


async def until(cond: Callable[[], object], what: str, seconds: float = 60) -> None:
    import asyncio

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await cond():  # type: ignore[misc]
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def stored_events(rig: Rig, kind: str) -> list[dict[str, object]]:
    with contextlib.closing(sqlite3.connect(rig.tmp / "e.sqlite")) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def stored_stop_prices(rig: Rig) -> list[D]:
    return [D(str(e["price"])) for e in stored_events(rig, "stop_placed") if e["purpose"] == "stop"]


def downs(stops: list[tuple[StopDirection | None, D | None]]) -> list[D | None]:
    return [p for d, p in stops if d is StopDirection.DOWN]


async def test_sigkill_between_entry_and_stop_placement(rig: Rig) -> None:
    await enter_directly(rig)
    proc = rig.start_engine(crash_at="before_stop")
    rig.wait_exit(proc, -signal.SIGKILL)
    lots, stops, buys = await exchange_state(rig)
    assert (lots, stops, buys) == (50, [], 1)  # killed before any stop went out
    rig.start_engine()
    rig.wait_ready()

    await until_protected(rig, "stop and TP after the restart")
    lots, stops, buys = await exchange_state(rig)
    assert lots == 50 and buys == 1 and len(downs(stops)) == 1  # one position, exactly one stop, nothing doubled
    rig.stop_engine()


async def test_sigkill_between_the_take_profit_landing_and_its_save(rig: Rig) -> None:
    await enter_directly(rig)
    proc = rig.start_engine(crash_at="after_take_profit")
    rig.wait_exit(proc, -signal.SIGKILL)
    lots, stops, buys = await exchange_state(rig)
    assert lots == 50 and len(stops) == 2  # stop and TP both out; the TP's id never reached SQLite
    rig.start_engine()
    rig.wait_ready()
    await asyncio.sleep(6)  # past the first scheduled reconciliation (RECONCILE_INTERVAL_S=5)
    lots, after, buys = await exchange_state(rig)
    assert (lots, buys) == (50, 1) and after == stops  # the TP that landed is taken over, not placed again
    rig.stop_engine()


async def test_sigkill_mid_stop_replace(rig: Rig) -> None:
    await enter_directly(rig)
    rig.start_engine()
    rig.wait_ready()

    await until_protected(rig, "initial protection")
    initial = downs((await exchange_state(rig))[1])
    rig.stop_engine()
    proc = rig.start_engine(crash_at="mid_replace")
    rig.wait_ready()
    rig.price(2020)  # +10 % ROI at 10x: break-even and the first lock move the stop
    rig.wait_exit(proc, -signal.SIGKILL)
    during = downs((await exchange_state(rig))[1])
    assert len(during) == 2 and initial[0] in during  # the new stop is out, the old one not yet cancelled
    placed_new = [p for p in during if p != initial[0]]
    # The process died in the same step that announced the new stop: nothing had a chance to store the event.
    assert stored_stop_prices(rig) == initial
    rig.start_engine()
    rig.wait_ready()
    # ... and yet it is not lost: the journal written before the announcement puts it in storage at the restart.
    assert stored_stop_prices(rig)[:2] == [*initial, *placed_new]

    async def one_stop() -> bool:
        return len(downs((await exchange_state(rig))[1])) == 1

    await until(one_stop, "the old stop cancelled after the restart")
    lots, stops, buys = await exchange_state(rig)
    new = downs(stops)
    assert lots == 50 and buys == 1 and new[0] is not None and initial[0] is not None and new[0] > initial[0]
    rig.stop_engine()


async def test_sigkill_during_the_kill_switch(rig: Rig) -> None:
    await enter_directly(rig)
    proc = rig.start_engine(crash_at="in_kill_switch")
    rig.wait_ready()

    await until_protected(rig, "initial protection")
    with contextlib.suppress(OSError):  # the process dies while answering
        post(f"http://127.0.0.1:{rig.http_port}/killswitch")
    rig.wait_exit(proc, -signal.SIGKILL)
    lots, stops, _ = await exchange_state(rig)
    assert lots == 50 and stops == []  # orders cancelled, position not yet closed: the worst moment
    rig.start_engine()
    rig.wait_ready()
    await until_protected(rig, "the missing stop re-placed after the restart")
    lots, stops, buys = await exchange_state(rig)
    assert lots == 50 and buys == 1 and len(downs(stops)) == 1
    assert post(f"http://127.0.0.1:{rig.http_port}/killswitch")["outcome"] == "flat"
    lots, stops, _ = await exchange_state(rig)
    assert (lots, stops) == (0, [])
    rig.stop_engine()


async def stop_lots(rig: Rig) -> list[tuple[StopDirection | None, int]]:
    async with KucoinFuturesClient(rig.sim_url, Credentials(KEY, SECRET, PASSPHRASE)) as c:
        return sorted(((o.stop, o.lots) for o in await c.open_stop_orders("ETHUSDTM")), key=str)


@pytest.mark.parametrize("crash_at", ["resize_saved", "resize_stop_moved"])
async def test_sigkill_between_a_resize_and_its_announcement(rig: Rig, crash_at: str) -> None:
    """A person trims 20 of the 50 lots; the bot stores the new size and dies before it said so (and, at the
    second point, after its stop was already resized to 30). Before: the restart found the stored size equal to the
    exchange's, so it resized the stop but never told the trader: no PositionResized, ever. Now the restart compares
    the exchange's size with the last size the trader was told (the event log) and announces 50 -> 30."""
    await enter_directly(rig)
    proc = rig.start_engine(crash_at=crash_at)
    rig.wait_ready()

    await until_protected(rig, "initial protection")
    assert await stop_lots(rig) == [(StopDirection.DOWN, 50), (StopDirection.UP, 50)]
    async with KucoinFuturesClient(rig.sim_url, Credentials(KEY, SECRET, PASSPHRASE)) as c:
        await c.place_order(OrderRequest("ETHUSDTM", OrderSide.SELL, 20, reduce_only=True, client_oid="web-trim-1"))
    rig.wait_exit(proc, -signal.SIGKILL)
    assert stored_events(rig, "position_resized") == []  # died before the announcement
    with contextlib.closing(sqlite3.connect(rig.tmp / "e.sqlite")) as conn:
        assert conn.execute("SELECT lots FROM positions").fetchall() == [(30,)]  # the new size was stored
    if crash_at == "resize_stop_moved":
        assert (StopDirection.DOWN, 30) in await stop_lots(rig)
    rig.start_engine()
    rig.wait_ready()

    async def resized() -> bool:
        return await stop_lots(rig) == [(StopDirection.DOWN, 30), (StopDirection.UP, 30)]

    await until(resized, "stop and TP for the 30 lots left")
    told = stored_events(rig, "position_resized")
    assert [(e["old_lots"], e["new_lots"], e["cause"], e["covered"]) for e in told] == [(50, 30, "manual", True)]
    await asyncio.sleep(6)  # past the next scheduled reconciliation (RECONCILE_INTERVAL_S=5): said once
    assert len(stored_events(rig, "position_resized")) == 1
    lots, stops, buys = await exchange_state(rig)
    assert lots == 30 and buys == 1 and len(downs(stops)) == 1
    rig.stop_engine()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """The fake Telegram Bot API on this test's loop: the engine (another process) talks to it with the real
    python-telegram-bot, so the rig's blocking waits run in a thread (``asyncio.to_thread``)."""
    fake = FakeTelegram()
    await fake.start()
    yield fake
    await fake.stop()


def told(tg: FakeTelegram, marker: str) -> list[str]:
    """The texts of the messages the chat got (sent, or edited into) that carry ``marker``."""
    calls = tg.sent("sendMessage") + tg.sent("editMessageText")
    return [str(m["text"]) for m in calls if marker in str(m["text"]) and int(m["chat_id"]) == CHAT]


async def started_told(tg: FakeTelegram, runs: int) -> None:
    """Wait until the chat has the ``runs``-th "engine: started" (queued at the end of each start, after what the
    start caught up): by then every message queued before it went out, the chat's order being kept."""

    async def there() -> bool:
        return len(told(tg, "engine: started")) >= runs

    await until(there, f"start #{runs} told on Telegram")


LATE = "(delivered after a restart; happened at "


def happened(event: dict[str, object]) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(int(str(event["ts_ms"])) // 1000))


def as_told(event: dict[str, object]) -> str:
    """The message a stored event makes when it is told on time."""
    text = format_event(event_from_dict(event))
    assert text is not None
    return text


async def test_sigkill_between_the_journal_and_the_outbox_sends_the_message_late_once(
    rig: Rig, tg: FakeTelegram
) -> None:
    """The engine adopts a position it finds on KuCoin, journals "position opened" and dies before the Telegram
    side queued its message. Before: the event was in SQLite after the restart and the trader was never told (0
    "Opened" messages, the position already stored so never announced again). Now the restart queues it, marked
    late with the time it happened, exactly once, and a further restart does not send it again."""
    await enter_directly(rig)
    proc = rig.start_engine(crash_at="journaled:position_opened", telegram=tg)
    await asyncio.to_thread(rig.wait_exit, proc, -signal.SIGKILL)
    assert told(tg, "Opened") == []
    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await started_told(tg, 1)
    [opened] = stored_events(rig, "position_opened")  # recovered from the journal, not published again
    assert told(tg, "Opened") == [f"{as_told(opened)}\n<i>{LATE}{happened(opened)} UTC)</i>"]
    assert as_told(opened).startswith("✅ <b>Opened long ETHUSDTM</b> 50 lots @ 2000.4")
    await asyncio.to_thread(rig.stop_engine)
    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await started_told(tg, 2)
    assert len(told(tg, "Opened")) == 1 and len(stored_events(rig, "position_opened")) == 1
    await asyncio.to_thread(rig.stop_engine)


async def test_sigkill_after_the_outbox_has_the_message_sends_it_once_not_late(rig: Rig, tg: FakeTelegram) -> None:
    """Killed right after "position opened" reached the outbox (pending, not yet sent): the restart sends that row
    as it is and queues nothing more for the event."""
    await enter_directly(rig)
    proc = rig.start_engine(crash_at="outboxed:position_opened", telegram=tg)
    await asyncio.to_thread(rig.wait_exit, proc, -signal.SIGKILL)
    with contextlib.closing(sqlite3.connect(rig.tmp / "e.sqlite")) as conn:
        rows = conn.execute("SELECT text, event_seq FROM outbox WHERE text LIKE '%Opened%'").fetchall()
    assert len(rows) == 1 and rows[0][1] is not None  # in the outbox, with the event it came from
    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await started_told(tg, 1)
    assert told(tg, "Opened") == [rows[0][0]] and LATE not in rows[0][0]
    await asyncio.to_thread(rig.stop_engine)


async def test_sigkill_at_a_stop_move_sends_it_late_and_nothing_sent_before_again(rig: Rig, tg: FakeTelegram) -> None:
    """A run that told "Opened" (sent) dies as it journals a stop move: the restart sends the stop move, late, and
    not "Opened" a second time."""
    await enter_directly(rig)
    proc = rig.start_engine(crash_at="journaled:stop_moved", telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await started_told(tg, 1)
    assert len(told(tg, "Opened")) == 1
    rig.price(2020)  # +10 % ROI at 10x: the stop moves up, and the process dies as it journals that
    await asyncio.to_thread(rig.wait_exit, proc, -signal.SIGKILL)
    assert told(tg, "🔒") == []
    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await started_told(tg, 2)
    moves = stored_events(rig, "stop_moved")
    assert len(moves) == 1 and D(str(moves[0]["new"])) > D(str(moves[0]["old"]))
    assert told(tg, "🔒") == [f"{as_told(moves[0])}\n<i>{LATE}{happened(moves[0])} UTC)</i>"]
    assert len(told(tg, "Opened")) == 1
    await asyncio.to_thread(rig.stop_engine)


async def exit_orders(rig: Rig) -> list[tuple[StopDirection | None, D | None, str]]:
    """The live stop orders on the simulator: direction, trigger price and clientOid."""
    async with KucoinFuturesClient(rig.sim_url, Credentials(KEY, SECRET, PASSPHRASE)) as c:
        return sorted(((o.stop, o.stop_price, o.client_oid) for o in await c.open_stop_orders("ETHUSDTM")), key=str)


async def cancel_all_exit_orders(rig: Rig) -> None:
    async with KucoinFuturesClient(rig.sim_url, Credentials(KEY, SECRET, PASSPHRASE)) as c:
        for o in await c.open_stop_orders("ETHUSDTM"):
            await c.cancel_order(o.id)


def on_half(price: D, *, up: bool) -> D:
    """``price`` on a 0.5 tick grid, rounded up or down (as the test computes it, not the engine)."""
    return (price * 2).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR) / 2


def placed(rig: Rig, purpose: str) -> int:
    """How many orders the engine ever sent for ``purpose`` (one intent, one clientOid, each)."""
    with contextlib.closing(sqlite3.connect(rig.tmp / "e.sqlite")) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM order_intents WHERE purpose = ?", (purpose,)).fetchone()[0])


@pytest.mark.parametrize(
    ("crash_at", "tick_after"),
    [("after_stop", "0.5"), ("after_take_profit", "0.5"), ("after_stop", "0.1")],
)
async def test_sigkill_between_a_regridded_protection_landing_and_its_save(
    rig: Rig, crash_at: str, tick_after: str
) -> None:
    """KuCoin moves the contract to a 0.5 tick under the open position and its stop and TP go missing: the start
    re-places them rounded onto the new grid (stop up, TP toward the entry) and dies after one landed, before its
    id was saved (``tick_after`` 0.1: the tick changes again before the restart). Before: the rounded price was
    saved only with the id, so the restart looked for a live order at the old-grid price, found none, and placed
    a second stop (3 stop intents, 2 stops live until the reconciliation cancelled the one that had landed), or a
    second TP. Now the restart takes the landed order over: exactly one stop and one TP, nothing sent twice."""
    await enter_directly(rig)
    rig.start_engine()
    rig.wait_ready()

    await until_protected(rig, "initial protection")
    rig.stop_engine()
    [(_, first_stop, _), (_, first_tp, _)] = sorted(await exit_orders(rig), key=lambda o: str(o[0]))
    assert first_stop is not None and first_tp is not None
    assert first_stop % D("0.5") != 0 and first_tp % D("0.5") != 0  # off the grid about to come
    post(f"{rig.sim_url}/sim/contract", {"symbol": "ETHUSDTM", "fields": {"tickSize": 0.5}})
    await cancel_all_exit_orders(rig)  # gone (by hand) while nothing ran: the next start re-places them
    proc = rig.start_engine(crash_at=crash_at)
    rig.wait_exit(proc, -signal.SIGKILL)
    landed = await exit_orders(rig)
    stop_at = on_half(first_stop, up=True)  # on the new grid, tighter (never looser)
    assert [p for d, p, _ in landed if d is StopDirection.DOWN] == [stop_at]
    assert len(landed) == (1 if crash_at == "after_stop" else 2)
    post(f"{rig.sim_url}/sim/contract", {"symbol": "ETHUSDTM", "fields": {"tickSize": float(tick_after)}})
    rig.start_engine()
    rig.wait_ready()
    await asyncio.sleep(6)  # past the first scheduled reconciliation (RECONCILE_INTERVAL_S=5)
    after = await exit_orders(rig)
    lots, _, buys = await exchange_state(rig)
    assert (lots, buys) == (50, 1)
    stops = [p for d, p, _ in after if d is StopDirection.DOWN]
    tps = [p for d, p, _ in after if d is StopDirection.UP]
    assert stops == [stop_at]  # exactly one stop: the one that landed, never untrailed
    tick = D(tick_after) if crash_at == "after_stop" else D("0.5")  # the grid the TP was placed on
    assert tps == [(first_tp / tick).to_integral_value(ROUND_FLOOR) * tick]  # exactly one TP, toward the entry
    assert set(landed) <= set(after)  # the orders that landed before the crash are the ones kept (their clientOids)
    assert (placed(rig, "stop"), placed(rig, "take_profit")) == (2, 2)  # the first ones and one re-placement each
    rig.stop_engine()


async def test_what_the_start_itself_publishes_is_told_on_telegram(rig: Rig, tg: FakeTelegram) -> None:
    """The pause set from the cockpit before a restart is restored at the start (a ModeChanged event) before the
    Telegram service exists. Before: it was journaled but never told, neither then nor by a later catch-up (0
    messages; the start moved the chat's cursor past it). Now the Telegram subscriber is on the bus from its start,
    and the restored pause is told once, on time (not late), before "engine: started"; a restart after a clean stop
    tells it again only because the start restores it again."""
    async with Database(rig.tmp / "e.sqlite") as db:
        await SavedSwitches(db).set("paused", "true")  # as /pause leaves it
    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await started_told(tg, 1)
    [restored] = stored_events(rig, "mode_changed")
    assert told(tg, "paused") == [as_told(restored)] == ["⚙️ paused = <b>true</b> (by restored after restart)"]
    texts = [str(m["text"]) for m in tg.sent("sendMessage")]
    assert texts.index(as_told(restored)) < next(i for i, t in enumerate(texts) if "engine: started" in t)
    proc = rig.engine
    assert proc is not None
    proc.kill()  # no clean stop: nothing of this run may be sent twice at the next start
    await asyncio.to_thread(rig.wait_exit, proc, -signal.SIGKILL)
    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await started_told(tg, 2)
    assert len(told(tg, "paused")) == 2 and not any(LATE in t for t in told(tg, "paused"))
    await asyncio.to_thread(rig.stop_engine)


async def test_sigkill_between_the_journal_and_the_webhook_posts_the_event_late_once(
    rig: Rig, webhook_sink: WebhookSink
) -> None:
    """The generic webhook had the gap Telegram had: "position opened" journaled, the process killed before the
    POST, and nothing ever posted it (0 bodies). Now the restart posts it once with ``"late": true`` and its seq,
    and a further restart does not post it again."""
    bodies, url = webhook_sink.received, webhook_sink.url

    def opened() -> list[dict[str, object]]:
        return [b for b in bodies if b["kind"] == "position_opened"]

    def started() -> int:
        return sum(b["kind"] == "health_changed" and b.get("detail") == "started" for b in bodies)

    async def started_once() -> bool:
        return started() >= 1

    async def started_twice() -> bool:
        return started() >= 2

    await enter_directly(rig)
    proc = rig.start_engine(crash_at="journaled:position_opened", webhook=url)
    await asyncio.to_thread(rig.wait_exit, proc, -signal.SIGKILL)
    assert opened() == []
    rig.start_engine(webhook=url)
    await asyncio.to_thread(rig.wait_ready)
    await until(started_once, "engine: started posted")
    [stored] = stored_events(rig, "position_opened")
    [late] = opened()
    assert late["late"] is True and late["ts_ms"] == stored["ts_ms"] and isinstance(late["seq"], int)
    await asyncio.to_thread(rig.stop_engine)
    rig.start_engine(webhook=url)
    await asyncio.to_thread(rig.wait_ready)
    await until(started_twice, "second engine: started posted")
    assert len(opened()) == 1
    await asyncio.to_thread(rig.stop_engine)


def tp_cancels_owed(rig: Rig) -> list[str]:
    with contextlib.closing(sqlite3.connect(rig.tmp / "e.sqlite")) as conn:
        return [r[0] for r in conn.execute("SELECT key FROM retry_queue WHERE kind = 'tp_cancel'").fetchall()]


@pytest.mark.parametrize(
    "crash_at", ["unacked:take_profit", "tp_extension_landed", "tp_extension_saved", "tp_extension_done"]
)
async def test_sigkill_around_a_take_profit_extension(rig: Rig, tg: FakeTelegram, crash_at: str) -> None:
    """50 lots long at 2000.40, 10x: stop 1980.40 (-10 % ROI), TP 2060.41 (+30 %). The mark at 2030 (+14.8 %)
    trails the stop to 2020.41 (+10 %) and extends the TP to 2100.42 (+50 %: stop ROI + 30 + 10), and the process
    dies: after the new TP landed, before its intent was marked acked (``unacked``: the first run places the first
    TP and stops cleanly, so that the crash point meets the extension) or before its id was saved (``landed``),
    after the save before the old TP's
    cancel (``saved``), or after it (``done``). Before, ``landed``: the restart owed the extension, placed a
    second TP at 2100.42 under a new clientOid (3 TPs live for a moment, two of 50 lots at 2100.42), and the
    first reconciliation cancelled the one that had landed and told the trader "⚠️ Drift: duplicate take-profit
    ... at 2100.42 cancelled — new entries paused"; ``saved``: the old TP at 2060.41 was left to that
    reconciliation, told as the same drift. Now the restart takes the landed TP over and finishes the owed cancel
    itself: exactly one TP at 2100.42 under the clientOid that landed, the stop at 2020.41 throughout, two TP
    orders sent in all, and no drift told."""
    await enter_directly(rig)
    runs = 1
    if crash_at.startswith("unacked:"):
        rig.start_engine(telegram=tg)
        await asyncio.to_thread(rig.wait_ready)
        await until_protected(rig, "initial protection")
        await asyncio.to_thread(rig.stop_engine)
        runs = 2
    proc = rig.start_engine(crash_at=crash_at, telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await until_protected(rig, "initial protection")
    [(_, stop0, _), (_, tp0, tp0_oid)] = await exit_orders(rig)
    assert (stop0, tp0) == (D("1980.40"), D("2060.41"))
    rig.price(2030)
    await asyncio.to_thread(rig.wait_exit, proc, -signal.SIGKILL)
    landed = await exit_orders(rig)
    downs_at_crash = [p for d, p, _ in landed if d is StopDirection.DOWN]
    tps_at_crash = [(p, oid) for d, p, oid in landed if d is StopDirection.UP]
    assert downs_at_crash == [D("2020.41")]  # the stop move finished before the TP's: never without a stop
    extension = [(p, oid) for p, oid in tps_at_crash if p == D("2100.42")]
    assert len(extension) == 1
    assert tps_at_crash == ([(tp0, tp0_oid)] if crash_at != "tp_extension_done" else []) + extension
    with contextlib.closing(sqlite3.connect(rig.tmp / "e.sqlite")) as conn:
        [(stored_tp,)] = conn.execute("SELECT take_profit FROM positions").fetchall()
    assert D(stored_tp) == (tp0 if crash_at in ("unacked:take_profit", "tp_extension_landed") else D("2100.42"))
    drifts_before = len(stored_events(rig, "drift_detected"))  # the adoption of the position entered by hand

    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)  # recovered: past the start's own reconciliation
    expected = [(StopDirection.DOWN, D("2020.41")), (StopDirection.UP, D("2100.42"))]
    after_start = await exit_orders(rig)
    assert [(d, p) for d, p, _ in after_start] == expected
    assert after_start[1][2] == extension[0][1]  # the TP that landed, taken over: not placed again
    await asyncio.sleep(6)  # past the first scheduled reconciliation (RECONCILE_INTERVAL_S=5)
    assert await exit_orders(rig) == after_start
    lots, _, buys = await exchange_state(rig)
    assert (lots, buys) == (50, 1)
    assert placed(rig, "take_profit") == 2  # the first TP and the extension: nothing sent twice
    assert tp_cancels_owed(rig) == []
    with contextlib.closing(sqlite3.connect(rig.tmp / "e.sqlite")) as conn:
        assert conn.execute("SELECT take_profit FROM positions").fetchall() == [("2100.42",)]
    assert len(stored_events(rig, "drift_detected")) == drifts_before  # nothing to tell as drift
    await started_told(tg, runs + 1)
    assert not any("take-profit" in t for t in told(tg, "Drift"))
    # Told once, by the run that saved it (before: never; the stop move's "🔒" was all the phone got). A crash
    # before the save leaves it to the restart, one after it leaves nothing to tell again.
    [moved] = stored_events(rig, "take_profit_moved")
    assert (moved["old"], moved["new"], moved["reason"], moved["lots"]) == ("2060.41", "2100.42", "extended", 50)
    await until_told(tg, TP_TOLD)
    [text] = told(tg, "🎯")
    assert text.startswith(TP_TOLD), text
    await asyncio.to_thread(rig.stop_engine)


TP_TOLD = "🎯 ETHUSDTM take-profit 2060.41 → <b>2100.42</b> (extended)"


async def until_told(tg: FakeTelegram, marker: str) -> None:
    async def there() -> bool:
        return bool(told(tg, marker))

    await until(there, f"{marker!r} told on Telegram")


async def test_a_trailing_long_whose_take_profit_extends_tells_it_once_on_telegram(rig: Rig, tg: FakeTelegram) -> None:
    """50 lots long at 2000.40, 10x: the mark at 2030 trails the stop 1980.40 → 2020.41 and extends the TP
    2060.41 → 2100.42. Before, the chat got only "🔒 ETHUSDTM stop 1980.40 → 2020.41 (trailing)"; the new TP showed
    in /positions alone. Now one "🎯" message with both prices, beside the stop's."""
    await enter_directly(rig)
    rig.start_engine(telegram=tg)
    await asyncio.to_thread(rig.wait_ready)
    await until_protected(rig, "initial protection")
    rig.price(2030)

    async def extended() -> bool:
        return [(d, p) for d, p, _ in await exit_orders(rig)] == [
            (StopDirection.DOWN, D("2020.41")),
            (StopDirection.UP, D("2100.42")),
        ]

    await until(extended, "the stop trailed and the TP extended")
    await until_told(tg, TP_TOLD)
    await until_told(tg, "🔒 ETHUSDTM stop 1980.40 → <b>2020.41</b>")
    await asyncio.sleep(6)  # past a reconciliation and a retry pass: nothing tells it again
    assert told(tg, "🎯") == [TP_TOLD]
    [moved] = stored_events(rig, "take_profit_moved")
    assert (moved["old"], moved["new"], moved["reason"], moved["lots"]) == ("2060.41", "2100.42", "extended", 50)
    await asyncio.to_thread(rig.stop_engine)
