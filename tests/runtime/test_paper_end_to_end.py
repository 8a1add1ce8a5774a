"""``python -m engine.runtime`` in paper mode, as ./start.sh runs it: replay → signals → fills → stops → exits,
visible in /metrics, /health and SQLite; SIGTERM ends it cleanly and a restart picks up where it left off."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from engine.logging import configure_logging
from tests.conftest import ROOT


class Bot:
    """A ``python -m engine.runtime`` started on HTTP_PORT=0 with its log (stderr) merged into stdout, which a thread
    keeps; the port it got is read from its ``http.listening`` line. A port picked beforehand (bind to 0, close,
    pass the number on) was free only until another process took it: under load the bot then failed at the start
    with "address already in use"."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.runtime", *args],
            cwd=ROOT,
            env={**env, "HTTP_PORT": "0"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)  # a full pipe would stall the bot
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def port(self, timeout: float = 60) -> int:
        """The port from the bot's ``http.listening`` line; fails with its output if it ends or stays silent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if '"http.listening"' in line:
                    return int(json.loads(line)["http"].rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"bot exited {self.proc.returncode} before listening\n{self.output()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"bot not listening after {timeout} s\n{self.output()[-2000:]}")

    def stop(self, timeout: float = 60) -> str:
        """SIGTERM (if still running), wait for the end, and the whole output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        self._reader.join(timeout)
        return self.output()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the developer's bot, exchange and Telegram settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_"))}
    env.update(extra)
    return env


def start(tmp: Path, data_dir: Path) -> Bot:
    env = clean_env(
        DB_PATH=str(tmp / "e.sqlite"), KILL_SWITCH_FILE=str(tmp / "KILL"), RECONCILE_INTERVAL_S="5", SYMBOLS="ETHUSDTM"
    )
    return Bot(["--replay", str(data_dir), "--speed", "max"], env)


def count(db: Path, kind: str) -> int:
    """Stored events of ``kind``; 0 while the starting bot has created the file but not yet its tables."""
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return 0


def protection_delays_ms(db: Path) -> list[int]:
    """For each opened position, simulated time from its opening to its stop's placement."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, ts_ms, payload FROM events WHERE kind IN ('position_opened', 'stop_placed') ORDER BY seq"
        ).fetchall()
    delays, opened = [], None
    for kind, ts, payload in rows:
        if kind == "position_opened":
            opened = ts
        elif opened is not None and json.loads(payload)["purpose"] == "stop":
            delays.append(ts - opened)
            opened = None
    return delays


def test_paper_run_trades_the_replay_and_restarts_cleanly(tmp_path: Path, data_dir: Path) -> None:
    bot = start(tmp_path, data_dir)
    db = tmp_path / "e.sqlite"
    try:
        port = bot.port()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if db.exists() and count(db, "position_closed") >= 1 and count(db, "signal_evaluated") > 8000:
                break
            assert bot.proc.poll() is None, bot.output()[-2000:]
            time.sleep(0.5)
        assert count(db, "position_opened") >= 1 and count(db, "stop_placed") >= 2
        # --speed max waits for the bot: every stop is placed before the replayed market moves on (without the
        # wait the stops of this replay went in 15 to 50 simulated minutes after their entries).
        delays = protection_delays_ms(db)
        assert delays and delays == [0] * len(delays)
        status, body = get(f"http://127.0.0.1:{port}/health/live")
        assert status == 200 and json.loads(body) == {"live": True, "phase": "running"}
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert 'enygma_events_total{kind="position_opened"}' in metrics
        entries = [ln for ln in metrics.splitlines() if ln.startswith("enygma_candle_to_entry_seconds_count")]
        assert entries and float(entries[0].split()[-1]) >= 1
        backlog = [ln for ln in metrics.splitlines() if ln.startswith("enygma_lane_backlog ")]
        assert backlog  # exported (its value is tested in test_lanes)
        status, page = get(f"http://127.0.0.1:{port}/dashboard")
        assert status == 200 and "ENYGMA" in page and "paper-secret" not in page
    finally:
        out = bot.stop()
    assert bot.proc.returncode == 0, out[-2000:]
    assert "paper-secret-local-only" not in out
    opened = count(db, "position_opened")
    again = start(tmp_path, data_dir)
    try:
        again.port()
        time.sleep(4)
        assert again.proc.poll() is None
    finally:
        out2 = again.stop()
    assert again.proc.returncode == 0, out2[-2000:]
    assert count(db, "position_opened") >= opened  # the same database, continued


def test_logs_never_show_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    import structlog

    secrets = ["key-AAAA1111", "secret-BBBB2222", "pass-CCCC3333", "123456:tok-DDDD4444"]
    configure_logging(secrets=secrets, json_output=True)
    structlog.get_logger("t").info(
        "connecting",
        api_secret="secret-BBBB2222",
        url="https://x/bot123456:tok-DDDD4444/get",
        note="key is key-AAAA1111",
        nested={"passphrase": "pass-CCCC3333"},
    )
    logging.getLogger("aiohttp.client").warning("header KC-API-KEY=key-AAAA1111 and pass-CCCC3333")
    err = capsys.readouterr().err
    assert "connecting" in err and "KC-API-KEY=***" in err
    for s in secrets:
        assert s not in err


async def test_paper_bot_with_telegram_answers_and_notifies(tmp_path: Path, data_dir: Path) -> None:
    import asyncio

    from tests.bot.fake_telegram import FakeTelegram

    tg = FakeTelegram()
    await tg.start()
    env = clean_env(
        DB_PATH=str(tmp_path / "t.sqlite"),
        KILL_SWITCH_FILE=str(tmp_path / "KILL"),
        SYMBOLS="ETHUSDTM",
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_ALLOWED_USER_IDS="111",
        TELEGRAM_CHAT_IDS="111",
        TELEGRAM_API_BASE_URL=tg.url,
        RECONCILE_INTERVAL_S="5",
    )
    bot = Bot(["--replay", str(data_dir), "--speed", "max"], env)
    try:
        port = await asyncio.to_thread(bot.port)  # in a thread: the fake Telegram server runs on this loop
        await tg.wait_for("setMyCommands", timeout=30)
        tg.push_message(666, "/status")  # a stranger: no answer
        tg.push_message(111, "/status")
        async with asyncio.timeout(30):
            while not any("<b>Status</b>" in m["text"] for m in tg.sent()):
                await asyncio.sleep(0.1)
        status = next(m for m in tg.sent() if "<b>Status</b>" in m["text"])
        assert "PAPER" in status["text"] and status["chat_id"] == 111
        async with asyncio.timeout(60):
            while not any("Opened" in m["text"] for m in tg.sent()):
                await asyncio.sleep(0.2)
        assert all(m["chat_id"] == 111 for m in tg.sent())
        assert tg.token not in "".join(m["text"] for m in tg.sent())
        tg.push_message(111, "/mode")  # switched from the phone: the dashboard must show it too
        async with asyncio.timeout(30):
            while not (card := [m for m in tg.sent() if m["text"] == "Entries:"]):
                await asyncio.sleep(0.1)
        tg.push_callback(111, card[0]["reply_markup"]["inline_keyboard"][0][1]["callback_data"])
        await tg.wait_for("editMessageText", timeout=30)
        _, page = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/dashboard")
        assert "<th>control</th><td>manual</td>" in page, page
        code, metrics = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and "enygma_telegram_dropped 0.0" in metrics
        assert "enygma_telegram_unreachable_chats 0.0" in metrics
        assert "enygma_telegram_unauthorized_updates_total 1.0" in metrics  # the stranger's /status
        _, ready = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/health/ready")
        for text in (page, metrics, ready):  # what the HTTP side shows never carries the bot token
            assert tg.token not in text and tg.token.split(":")[1] not in text
        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/nope"))[0] == 404
    finally:
        out = await asyncio.to_thread(bot.stop)
        await tg.stop()
    assert bot.proc.returncode == 0, out[-2000:]
    assert tg.token not in out and "TEST-token" not in out  # the bot token never reaches the log


def test_metrics_show_the_equity_from_the_start_not_after_the_first_reconciliation(
    tmp_path: Path, data_dir: Path
) -> None:
    """The gauges were set only by the reconciliation job: for RECONCILE_INTERVAL_S after a start /metrics said
    enygma_equity_usdt 0.0 while the dashboard showed the account."""
    env = clean_env(
        DB_PATH=str(tmp_path / "e.sqlite"),
        KILL_SWITCH_FILE=str(tmp_path / "KILL"),
        RECONCILE_INTERVAL_S="3600",
        PAPER_INITIAL_BALANCE="2500",
        SYMBOLS="ETHUSDTM",
    )
    bot = Bot(["--replay", str(data_dir), "--speed", "60"], env)
    try:
        port = bot.port()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert bot.proc.poll() is None, bot.output()[-2000:]
            try:
                if json.loads(get(f"http://127.0.0.1:{port}/health/live")[1]).get("phase") == "running":
                    break
            except OSError:
                pass
            time.sleep(0.2)
        metrics = get(f"http://127.0.0.1:{port}/metrics")[1].splitlines()
        assert "enygma_equity_usdt 2500.0" in metrics
        assert "enygma_open_positions 0.0" in metrics and "enygma_retry_queue_depth 0.0" in metrics
    finally:
        out = bot.stop()
    assert bot.proc.returncode == 0, out[-2000:]
