"""One SQLite file in WAL mode, versioned by migrations applied in order at open."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

MIGRATIONS: list[str] = [
    # 1: events, order intents, stop state, retry queue, settings
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_kind_ts ON events(kind, ts_ms);
    CREATE TABLE order_intents (
        client_oid TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        purpose TEXT NOT NULL,
        side TEXT NOT NULL,
        lots INTEGER NOT NULL,
        price TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'acked', 'failed', 'done')),
        order_id TEXT,
        created_ms INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE positions (
        symbol TEXT PRIMARY KEY,
        side TEXT NOT NULL,
        lots INTEGER NOT NULL,
        entry TEXT NOT NULL,
        leverage INTEGER NOT NULL,
        stop TEXT NOT NULL,
        stop_reason TEXT NOT NULL,
        take_profit TEXT NOT NULL,
        tp_roi TEXT NOT NULL,
        trailing INTEGER NOT NULL DEFAULT 0,
        stop_order_id TEXT,
        tp_order_id TEXT,
        replace_state TEXT NOT NULL DEFAULT 'STEADY'
            CHECK (replace_state IN ('STEADY', 'PLACING_NEW', 'CONFIRMED_NEW', 'CANCELLING_OLD')),
        pending_client_oid TEXT,
        pending_price TEXT,
        opened_ms INTEGER NOT NULL
    );
    CREATE TABLE retry_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: approvals: only one transition out of PENDING can ever succeed (conditional UPDATE)
    """
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'EXECUTED', 'REJECTED', 'EXPIRED',
                                             'FAILED_RECHECK')),
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        resolved_ms INTEGER
    );
    """,
    # 3: the notification outbox: a message queued before a crash is sent after it
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chat_id INTEGER NOT NULL,
        text TEXT NOT NULL,
        silent INTEGER NOT NULL DEFAULT 0,
        reply_markup TEXT,
        coalesce_key TEXT,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
        due_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        message_id INTEGER,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX outbox_due ON outbox(state, due_ms);
    """,
    # 4: events carry the sequence number of the write-ahead journal, so a recovered line is stored once
    """
    ALTER TABLE events ADD COLUMN seq INTEGER;
    CREATE UNIQUE INDEX events_seq ON events(seq);
    """,
    # 5: while Telegram is unreachable the outbox keeps only the newest less urgent messages per chat; one pending
    # message per chat counts the ones dropped
    """
    ALTER TABLE outbox ADD COLUMN droppable INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: a message remembers the event it came from (``events.seq``), and per chat ``telegram_cursor`` holds the
    # newest event the Telegram side has handled; the start queues, marked late, what an unclean stop left between
    # the journal and the outbox. Kept by triggers, so a row and its cursor move in one statement: another task's
    # commit on the shared connection between two statements cannot leave one without the other.
    """
    ALTER TABLE outbox ADD COLUMN event_seq INTEGER;
    CREATE TABLE telegram_cursor (
        chat_id INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    CREATE TRIGGER outbox_event_queued AFTER INSERT ON outbox WHEN NEW.event_seq IS NOT NULL
    BEGIN
        INSERT INTO telegram_cursor (chat_id, seq) VALUES (NEW.chat_id, NEW.event_seq)
            ON CONFLICT (chat_id) DO UPDATE SET seq = MAX(seq, excluded.seq);
    END;
    CREATE TRIGGER outbox_event_replaced AFTER UPDATE OF event_seq ON outbox WHEN NEW.event_seq IS NOT NULL
    BEGIN
        INSERT INTO telegram_cursor (chat_id, seq) VALUES (NEW.chat_id, NEW.event_seq)
            ON CONFLICT (chat_id) DO UPDATE SET seq = MAX(seq, excluded.seq);
    END;
    """,
]


class StorageError(Exception):
    """The database file cannot be used (corrupt, read-only, from a newer ENYGMA): one line saying why."""


class Database:
    """``async with Database(path) as db`` opens, sets WAL and migrates; ``db.conn`` is the connection."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self) -> None:
        if self.path.parent and str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path)
        self._conn.row_factory = aiosqlite.Row
        try:
            await self._conn.execute("PRAGMA journal_mode=WAL")
            await self._conn.execute("PRAGMA synchronous=NORMAL")
            version = await self.schema_version()
            if version > len(MIGRATIONS):
                raise StorageError(
                    f"database {self.path} has schema version {version}, newer than this ENYGMA knows "
                    f"({len(MIGRATIONS)}): it was written by a later release; run that release or restore a backup"
                )
            await self.migrate()
        except BaseException as exc:
            await self.close()  # an open connection's thread would keep the process from exiting
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"database {self.path} cannot be used: {exc}") from exc
            raise

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def schema_version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self, target: int | None = None) -> int:
        """Apply every migration above the stored version (up to ``target``), each in one transaction."""
        version = await self.schema_version()
        goal = len(MIGRATIONS) if target is None else target
        for number in range(version + 1, goal + 1):
            await self.conn.executescript(f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
        return await self.schema_version()

    async def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            row: aiosqlite.Row | None = await cur.fetchone()
            return row

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run and commit one statement; returns the number of rows changed."""
        cur = await self.conn.execute(sql, params)
        await self.conn.commit()
        return cur.rowcount

    async def delete_batched(self, table: str, where: str, params: tuple[Any, ...], batch: int = 5_000) -> int:
        """Delete the rows of ``table`` matching ``where`` in batches, each its own short transaction, so the
        engine's own writes (a stop step, an intent) are never held up behind one long delete; returns how many.
        ``table`` and ``where`` are the caller's constants, never input. By ``rowid``: every table here has one
        (``order_intents`` is keyed by its clientOid and has no ``id``)."""
        sql = f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT ?)"  # noqa: S608  # nosec B608
        removed = 0
        while True:
            n = await self.execute(sql, (*params, batch))
            removed += n
            if n < batch:
                return removed
            await asyncio.sleep(0)  # let the engine's writes in between batches
