"""A write-ahead file for events, so that a SIGKILL loses none of them.

``EventBus.publish`` is synchronous and storage is asynchronous: without this, the last events queued for
SQLite die with the process. ``record`` writes one JSON line with a single ``write`` syscall before anything
else sees the event (the kernel keeps it across a process kill; power loss is the WAL's business, not ours),
a task moves the lines into the ``events`` table in batches and empties the file once everything is in, and
``open`` inserts whatever a previous run journaled but never stored. Each event carries a sequence number
(unique in the table), so a line that did reach SQLite is never stored twice.

Memory is bounded: at most ``max_pending`` events wait in memory. While SQLite refuses writes for longer (disk
full, locked, a failing trigger), further events live only in the file (``spilling``) and are read back from it
in batches once SQLite takes them again, so an outage of any length costs at most ``max_pending`` rows of memory.
The one exception is an event the file could not take either (the journal's disk full too): memory is then its
only copy, and past ``max_pending`` it is counted in ``lost`` and reported, rather than growing until the kernel
kills the process (which would lose all of them and stop the bot).
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
MAX_PENDING = 10_000  # events held in memory while SQLite refuses them; the rest wait in the journal file


def journal_path_for(db_path: Path) -> Path:
    """The journal lives next to the database it feeds."""
    return db_path.with_name(db_path.name + ".events-journal")


class EventJournal:
    def __init__(self, db: Database, path: Path, retry_delay_s: float = 1.0, max_pending: int = MAX_PENDING) -> None:
        self.db = db
        self.path = path
        self.retry_delay_s = retry_delay_s
        self.max_pending = max(1, max_pending)
        self._fd: int | None = None
        self._seq = 0
        self._pending: deque[Row] = deque()
        # Spilling: events from ``_spill_from`` on are in the file only; ``_read_offset`` is how far the catch-up
        # has read it back. ``_spilled`` counts those not yet stored.
        self._spilling = False
        self._spill_from = 0
        self._spilled = 0
        self._read_offset = 0
        self._torn_tail = False  # a short write left half a line at the end of the file: start the next on its own
        self.lost = 0  # events neither the file nor memory could keep (both full): reported, never silent
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
        top, offset = 0, 0
        while True:  # in batches: a file left by a long outage and a crash can hold millions of lines
            rows, offset = self._read_batch(offset)
            if not rows:
                break
            await self._insert(rows)
            self.recovered += len(rows)
            top = max(top, *(r[0] for r in rows))
        if self.recovered:
            log.warning("journal.recovered", events=self.recovered, torn_lines=self.torn_lines)
        row = await self.db.fetchone("SELECT MAX(seq) FROM events")
        self._seq = max(int(row[0]) if row and row[0] is not None else 0, top)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(self._fd, 0)  # everything in it is stored now
        self._task = asyncio.create_task(self._run(), name="event-journal")
        return self.recovered

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event journaled (after ``open``: of the newest stored one)."""
        return self._seq

    def record(self, event: Event) -> int:
        """Journal one event now, synchronously; storing it in SQLite follows shortly. Returns its sequence number
        (``events.seq``), by which the Telegram outbox remembers which events it has turned into messages."""
        if self._fd is None:
            raise RuntimeError("event journal is not open")
        self._seq += 1
        payload = json.dumps(event.to_dict())
        line = json.dumps({"seq": self._seq, "ts_ms": event.ts_ms, "kind": event.kind, "payload": payload})
        data = (("\n" if self._torn_tail else "") + line + "\n").encode()
        journaled = False
        try:
            written = os.write(self._fd, data)
            if written < len(data):
                self._torn_tail = True  # half a line on disk: it is skipped when read back, the event is not
                raise OSError(f"short write ({written} of {len(data)} bytes)")
            self._torn_tail = False
            self._write_error = None
            journaled = True
        except OSError as exc:  # a full disk must not stop trading: the event still goes to SQLite from memory
            self.write_failures += 1
            self._write_error = f"event journal {self.path} cannot be written: {exc.strerror or exc}"
            log.error("journal.write_failed", error=str(exc), kind=event.kind)
        row = (self._seq, event.ts_ms, event.kind, payload)
        if journaled and (self._spilling or len(self._pending) >= self.max_pending):
            if not self._spilling:  # memory is full: from here on the file alone holds them until SQLite is back
                self._spilling, self._spill_from, self._read_offset = True, self._seq, 0
                # The catch-up reads from this line on (the lines before it went from memory).
                with contextlib.suppress(OSError):  # (else from the start: the seq filter skips the rest)
                    self._read_offset = max(0, os.fstat(self._fd).st_size - len(data))
                log.warning("journal.spilling", in_memory=len(self._pending), from_seq=self._seq)
            self._spilled += 1
        elif len(self._pending) < self.max_pending:
            self._pending.append(row)
        else:  # neither on disk nor room in memory
            self.lost += 1
            if self.lost == 1 or self.lost % 1_000 == 0:
                log.error("journal.event_lost", kind=event.kind, lost=self.lost)
        self._idle.clear()
        self._wake.set()
        return self._seq

    def backlog(self) -> int:
        """Events published but not yet in SQLite (in memory and in the file only); the ``/metrics`` gauge."""
        return len(self._pending) + self._spilled

    def problem(self) -> str | None:
        """What is wrong with storing events right now (read by /health/ready), or None."""
        problems = [e for e in (self._store_error, self._write_error) if e]
        if self._store_error and self.backlog():
            problems[0] += f" ({self.backlog()} events waiting)"
        elif self.backlog() >= self.max_pending:  # SQLite takes them again, but the history is far behind
            problems.append(f"{self.backlog()} events waiting to be stored in {self.db.path}")
        if self.lost:
            problems.append(f"{self.lost} events lost: neither the journal file nor memory could keep them")
        return "; ".join(problems) or None

    async def flush(self) -> None:
        """Wait until every journaled event is in SQLite."""
        if self._pending or self._spilling:
            self._wake.set()
            await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            if self._pending or self._spilling:
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
            while self._pending or self._spilling:
                try:
                    if self._pending:
                        batch = list(self._pending)
                        await self._insert(batch)
                        for _ in batch:
                            self._pending.popleft()
                    else:
                        await self._catch_up()
                except Exception as exc:  # the lines stay in the file (and memory): try again, never drop them
                    self._store_error = f"events cannot be stored in {self.db.path}: {exc}"
                    log.exception("journal.store_failed", waiting=self.backlog())
                    await asyncio.sleep(self.retry_delay_s)
                    continue
                self._store_error = None
            # No await since the last check: nothing can have been journaled in between, so all of it is stored.
            if self._fd is not None:
                try:
                    os.ftruncate(self._fd, 0)
                except OSError as exc:  # (a file system gone read-only) the task must live on: stored all the same
                    self._write_error = f"event journal {self.path} cannot be emptied: {exc.strerror or exc}"
                    log.error("journal.truncate_failed", error=str(exc))
            self._idle.set()

    async def _catch_up(self) -> None:
        """Store the next batch of the events that only the file holds; at its end, stop spilling."""
        rows, offset = self._read_batch(self._read_offset)
        fresh = [r for r in rows if r[0] >= self._spill_from]  # the earlier lines went from memory
        if fresh:
            await self._insert(fresh)
            self._spilled = max(0, self._spilled - len(fresh))
        self._read_offset = offset
        if not rows:  # the end of the file, with no await since reading it: every spilled event is stored
            log.info("journal.caught_up", from_seq=self._spill_from, to_seq=self._seq)
            self._spilling, self._spilled, self._read_offset = False, 0, 0

    async def _insert(self, rows: list[Row]) -> None:
        await self.db.conn.executemany(
            "INSERT OR IGNORE INTO events (seq, ts_ms, kind, payload) VALUES (?, ?, ?, ?)", rows
        )
        await self.db.conn.commit()

    def _read_batch(self, offset: int) -> tuple[list[Row], int]:
        """Up to ``max_pending`` events from byte ``offset`` on, and the offset after them (bounded memory however
        long the file). A line that does not parse, or a last one without its newline (a write cut short by a crash
        or a full disk), is counted in ``torn_lines`` and skipped: every write is one whole line."""
        if not self.path.exists():
            return [], offset
        rows: list[Row] = []
        with self.path.open("rb") as f:
            f.seek(offset)
            while len(rows) < self.max_pending:
                raw = f.readline()
                if not raw.endswith(b"\n"):
                    if raw:  # the torn end of the file: skipped now and later (a new line starts on its own)
                        self.torn_lines += 1
                        offset += len(raw)
                    break
                offset += len(raw)
                if not raw.strip():
                    continue
                try:
                    d = json.loads(raw)
                    rows.append((int(d["seq"]), int(d["ts_ms"]), str(d["kind"]), str(d["payload"])))
                except (ValueError, KeyError, TypeError):
                    self.torn_lines += 1  # a write cut short: its event is in memory, or was lost with the crash
        return rows, offset
