"""The database file itself: migrations from every earlier version, and a file the bot cannot use refused at start
with one line that says what is wrong (not a traceback in the log and silence on the terminal)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config.errors import EX_DATAERR
from storage.db import MIGRATIONS, Database, StorageError
from tests.conftest import ROOT


async def test_every_earlier_version_migrates_to_now_keeping_its_rows_and_twice_is_a_no_op(tmp_path: Path) -> None:
    latest = len(MIGRATIONS)
    for start in range(latest + 1):
        path = tmp_path / f"v{start}.sqlite"
        old = Database(path)
        old._conn = None
        import aiosqlite

        old._conn = await aiosqlite.connect(path)
        assert await old.migrate(target=start) == start
        if start >= 1:
            await old.execute("INSERT INTO settings (key, value) VALUES ('armed', 'true')")
            await old.execute("INSERT INTO events (ts_ms, kind, payload) VALUES (1, 'old', '{}')")
        await old.close()
        for _ in range(2):  # a second open finds nothing to do and changes nothing
            async with Database(path) as db:
                assert await db.schema_version() == latest
                if start >= 1:
                    row = await db.fetchone("SELECT value FROM settings WHERE key = 'armed'")
                    assert row is not None and row[0] == "true"
                    count = await db.fetchone("SELECT COUNT(*) FROM events")
                    assert count is not None and count[0] == 1


async def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    async with Database(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StorageError, match=f"schema version {len(MIGRATIONS) + 1}.*newer"):
        await Database(path).open()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1


async def test_a_file_that_is_not_a_database_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not an sqlite file at all" * 200)
    with pytest.raises(StorageError, match=r"garbage\.sqlite"):
        await Database(path).open()


def _run_bot(tmp_path: Path, db_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(
        BOT_MODE="paper",
        PAPER_EXCHANGE_URL="http://127.0.0.1:9",  # never reached: the database is opened first
        KUCOIN_API_KEY="sim-key",
        KUCOIN_API_SECRET="sim-secret",
        KUCOIN_API_PASSPHRASE="sim-pass",
        DB_PATH=str(db_path),
        HTTP_PORT="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "engine.runtime"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("problem", ["newer", "corrupt"])
def test_the_bot_refuses_an_unusable_database_with_one_line(tmp_path: Path, problem: str) -> None:
    db_path = tmp_path / "e.sqlite"
    if problem == "newer":
        with sqlite3.connect(db_path) as conn:
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 7}")
    else:
        db_path.write_bytes(os.urandom(8192))
    proc = _run_bot(tmp_path, db_path)
    assert proc.returncode == EX_DATAERR == 65, proc.stderr[-3000:]  # before: 1, which systemd restarted
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and str(db_path) in errors[0], proc.stderr[-3000:]
    if problem == "newer":
        assert "newer" in errors[0]
