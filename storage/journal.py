"""A write-ahead file for events, so that a SIGKILL loses none of them.

``EventBus.publish`` is synchronous and storage is asynchronous: without this, the last events queued for
SQLite die with the process. ``record`` writes one JSON line with a single ``write`` syscall before anything
else sees the event (the kernel keeps it across a process kill; power loss is the WAL's business, not ours),
a task moves the lines into the ``events`` table in batches and empties the file once everything is in, and
``open`` inserts whatever a previous run journaled but never stored. Each event carries a sequence number
(unique in the table), so a line that did reach SQLite is never stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from pathlib import Path

import structlog

from engine.events import Event
from storage.db import Database

log = structlog.get_logger(__name__)

Row = tuple[int, int, str, str]  # seq, ts_ms, kind, payload


def journal_path_for(db_path: Path) -> Path:
    """The journal lives next to the database it feeds."""
    return db_path.with_name(db_path.name + ".events-journal")


class EventJournal:
    def __init__(self, db: Database, path: Path, retry_delay_s: float = 1.0) -> None:
        self.db = db
        self.path = path
        self.retry_delay_s = retry_delay_s
        self._fd: int | None = None
        self._seq = 0
        self._pending: deque[Row] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.recovered = 0
        self.torn_lines = 0
        self.write_failures = 0
        self._write_error: str | None = None  # the last journal write failed (cleared by one that succeeds)
        self._store_error: str | None = None  # the last SQLite insert failed (cleared by one that succeeds)

    async def open(self) -> int:
        """Store what an earlier run journaled but never stored, then start; returns how many were recovered."""
        rows = self._read_file()
        if rows:
            await self._insert(rows)
            self.recovered = len(rows)
            log.warning("journal.recovered", events=len(rows), torn_lines=self.torn_lines)
        row = await self.db.fetchone("SELECT MAX(seq) FROM events")
        self._seq = max([int(row[0]) if row and row[0] is not None else 0, *(r[0] for r in rows)])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(self._fd, 0)  # everything in it is stored now
        self._task = asyncio.create_task(self._run(), name="event-journal")
        return self.recovered

    def record(self, event: Event) -> None:
        """Journal one event now, synchronously; storing it in SQLite follows shortly."""
        if self._fd is None:
            raise RuntimeError("event journal is not open")
        self._seq += 1
        payload = json.dumps(event.to_dict())
        line = json.dumps({"seq": self._seq, "ts_ms": event.ts_ms, "kind": event.kind, "payload": payload})
        try:
            os.write(self._fd, (line + "\n").encode())
            self._write_error = None
        except OSError as exc:  # a full disk must not stop trading: the event still goes to SQLite from memory
            self.write_failures += 1
            self._write_error = f"event journal {self.path} cannot be written: {exc.strerror or exc}"
            log.error("journal.write_failed", error=str(exc), kind=event.kind)
        self._pending.append((self._seq, event.ts_ms, event.kind, payload))
        self._idle.clear()
        self._wake.set()

    def problem(self) -> str | None:
        """What is wrong with storing events right now (read by /health/ready), or None."""
        return "; ".join(e for e in (self._store_error, self._write_error) if e) or None

    async def flush(self) -> None:
        """Wait until every journaled event is in SQLite."""
        if self._pending:
            self._wake.set()
            await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            if self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.flush(), timeout=10)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending)
                try:
                    await self._insert(batch)
                except Exception as exc:  # the lines stay in the file and in memory: try again, never drop them
                    self._store_error = (
                        f"events cannot be stored in {self.db.path} ({len(self._pending)} waiting): {exc}"
                    )
                    log.exception("journal.store_failed", events=len(batch))
                    await asyncio.sleep(self.retry_delay_s)
                    continue
                self._store_error = None
                for _ in batch:
                    self._pending.popleft()
            # No await since the last check: nothing can have been journaled in between, so all of it is stored.
            if self._fd is not None:
                try:
                    os.ftruncate(self._fd, 0)
                except OSError as exc:  # (a file system gone read-only) the task must live on: stored all the same
                    self._write_error = f"event journal {self.path} cannot be emptied: {exc.strerror or exc}"
                    log.error("journal.truncate_failed", error=str(exc))
            self._idle.set()

    async def _insert(self, rows: list[Row]) -> None:
        await self.db.conn.executemany(
            "INSERT OR IGNORE INTO events (seq, ts_ms, kind, payload) VALUES (?, ?, ?, ?)", rows
        )
        await self.db.conn.commit()

    def _read_file(self) -> list[Row]:
        if not self.path.exists():
            return []
        rows: list[Row] = []
        for raw in self.path.read_bytes().splitlines():
            try:
                d = json.loads(raw)
                rows.append((int(d["seq"]), int(d["ts_ms"]), str(d["kind"]), str(d["payload"])))
            except (ValueError, KeyError, TypeError):
                self.torn_lines += 1  # a write cut short by the crash: nothing after it can exist
        return rows
