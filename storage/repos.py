"""Repositories: small typed doors onto the tables. They store and fetch; deciding is the engine's job."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.events import Event, FundingBooked, PositionClosed, event_from_dict, with_funding_booked
from storage.db import Database


class EventLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, event: Event) -> None:
        await self.db.execute(
            "INSERT INTO events (ts_ms, kind, payload) VALUES (?, ?, ?)",
            (event.ts_ms, event.kind, json.dumps(event.to_dict())),
        )

    async def recent(
        self, limit: int = 50, kind: str | Sequence[str] | None = None, *, since_ms: int | None = None
    ) -> list[Event]:
        """The newest events first (in the order they were stored); of one ``kind`` or several, optionally only
        those stamped at or after ``since_ms``."""
        if kind is None:
            rows = await self.db.fetchall("SELECT payload FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            kinds = (kind,) if isinstance(kind, str) else tuple(kind)
            marks = ", ".join("?" for _ in kinds)
            rows = await self.db.fetchall(
                f"SELECT payload FROM events WHERE kind IN ({marks}) AND ts_ms >= ? ORDER BY id DESC LIMIT ?",  # noqa: S608  # nosec B608
                (*kinds, -(2**62) if since_ms is None else since_ms, limit),
            )
        return [event_from_dict(json.loads(r["payload"])) for r in rows]

    async def closed_trades(self, since_ms: int | None = None, limit: int = 10_000) -> list[PositionClosed]:
        """The closed trades stamped at or after ``since_ms``, newest first, each with the funding booked for it
        after its close (a FundingBooked is stamped later than its close, so the same bound finds it)."""
        closes = [
            e for e in await self.recent(limit, "position_closed", since_ms=since_ms) if isinstance(e, PositionClosed)
        ]
        booked = [
            e for e in await self.recent(limit, "funding_booked", since_ms=since_ms) if isinstance(e, FundingBooked)
        ]
        return with_funding_booked(closes, booked)

    async def prune_decisions(self, before_ms: int, batch: int = 5_000) -> int:
        """Delete the per-bar decision records (``signal_evaluated``) older than ``before_ms``; returns how many.

        They are the one part of the history that grows with the universe (542 symbols: ~156,000 rows, ~88 MB a
        day); trades, stops, halts and every other kind are kept. Deleted in batches, each its own short
        transaction, so the engine's own writes (a stop step, an intent) are never held up behind one long delete.
        SQLite reuses the freed pages; the file itself shrinks only with ``VACUUM`` (bot stopped)."""
        return await self.db.delete_batched("events", "kind = 'signal_evaluated' AND ts_ms < ?", (before_ms,), batch)

    async def between(
        self, after_seq: int, through_seq: int, limit: int = 1_000
    ) -> tuple[list[tuple[int, Event]], int | None]:
        """Up to ``limit`` events with ``after_seq`` < seq <= ``through_seq``, oldest first, each with its seq, and
        the seq to page on from (None at the end). Left out: the per-bar decisions that did not pass (nobody is told
        of those; a quiet hour is thousands of them) and a row this release cannot read (a kind it does not know)."""
        rows = await self.db.fetchall(
            "SELECT seq, payload FROM events WHERE seq > ? AND seq <= ?"
            " AND (kind != 'signal_evaluated' OR json_extract(payload, '$.decision.passed') = 1)"
            " ORDER BY seq LIMIT ?",
            (after_seq, through_seq, limit),
        )
        out: list[tuple[int, Event]] = []
        for r in rows:
            try:
                out.append((int(r["seq"]), event_from_dict(json.loads(r["payload"]))))
            except (ValueError, TypeError, KeyError):
                continue
        return out, (int(rows[-1]["seq"]) if len(rows) == limit else None)

    async def count(self, kind: str | None = None) -> int:
        if kind is None:
            row = await self.db.fetchone("SELECT COUNT(*) FROM events")
        else:
            row = await self.db.fetchone("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,))
        return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class Intent:
    client_oid: str
    symbol: str
    purpose: str
    side: str
    lots: int
    price: Decimal | None
    status: str
    order_id: str | None


class Intents:
    """Every order the engine means to send, written BEFORE it is sent: a restart finds it by clientOid."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self, client_oid: str, symbol: str, purpose: str, side: str, lots: int, price: Decimal | None, now_ms: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO order_intents (client_oid, symbol, purpose, side, lots, price, status, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
            (client_oid, symbol, purpose, side, lots, None if price is None else str(price), now_ms),
        )

    async def mark(self, client_oid: str, status: str, order_id: str | None = None, detail: str = "") -> None:
        await self.db.execute(
            "UPDATE order_intents SET status = ?, order_id = COALESCE(?, order_id), detail = ? WHERE client_oid = ?",
            (status, order_id, detail, client_oid),
        )

    async def pending(self) -> list[Intent]:
        rows = await self.db.fetchall("SELECT * FROM order_intents WHERE status = 'pending' ORDER BY created_ms")
        return [_intent(r) for r in rows]

    async def pending_for(self, symbol: str, purpose: str) -> list[Intent]:
        """Intents of one symbol and purpose still waiting for the exchange's answer (sent, reply never seen)."""
        rows = await self.db.fetchall(
            "SELECT * FROM order_intents WHERE status = 'pending' AND symbol = ? AND purpose = ? ORDER BY created_ms",
            (symbol, purpose),
        )
        return [_intent(r) for r in rows]

    async def acked_for(self, symbol: str, purpose: str, price: Decimal) -> list[Intent]:
        """Intents of one symbol and purpose at ``price`` the exchange acknowledged (answered with an order id),
        newest first: an order whose id the position row never got (the process died before the save) is here."""
        rows = await self.db.fetchall(
            "SELECT * FROM order_intents WHERE status = 'acked' AND symbol = ? AND purpose = ? AND price IS NOT NULL"
            " ORDER BY created_ms DESC",
            (symbol, purpose),
        )
        return [i for i in map(_intent, rows) if i.price == price]

    async def get(self, client_oid: str) -> Intent | None:
        row = await self.db.fetchone("SELECT * FROM order_intents WHERE client_oid = ?", (client_oid,))
        return None if row is None else _intent(row)

    async def prune_finished(self, before_ms: int, live_ids: Collection[str], batch: int = 5_000) -> int:
        """Delete the intents recorded before ``before_ms`` whose order is over; returns how many.

        One row per order (every stop move adds one) was kept for good. Kept, whatever their age: ``pending``
        ones (the restart resolves them with the exchange, a stop placement asks about them before sending
        another); every intent of a symbol with a managed position (its stop, TP and a replace's other stop may
        be live, and ``acked`` never changes when a stop is later cancelled or triggered) or with work in the retry
        queue; and any whose clientOid or order id is in ``live_ids``, the exchange's open orders and stop orders
        (the orphan sweep and the adoption recognise the engine's own live orders by their intent)."""
        live = json.dumps(sorted(live_ids))
        return await self.db.delete_batched(
            "order_intents",
            "status <> 'pending' AND created_ms < ?"
            " AND symbol NOT IN (SELECT symbol FROM positions)"
            " AND symbol NOT IN (SELECT json_extract(payload, '$.symbol') FROM retry_queue"
            " WHERE json_extract(payload, '$.symbol') IS NOT NULL)"
            " AND client_oid NOT IN (SELECT value FROM json_each(?))"
            " AND COALESCE(order_id, '') NOT IN (SELECT value FROM json_each(?))",
            (before_ms, live, live),
            batch,
        )


def _intent(r: Any) -> Intent:
    return Intent(
        r["client_oid"],
        r["symbol"],
        r["purpose"],
        r["side"],
        int(r["lots"]),
        None if r["price"] is None else Decimal(r["price"]),
        r["status"],
        r["order_id"],
    )


POSITION_FIELDS = (
    "symbol",
    "side",
    "lots",
    "entry",
    "leverage",
    "stop",
    "stop_reason",
    "take_profit",
    "tp_roi",
    "trailing",
    "stop_order_id",
    "tp_order_id",
    "replace_state",
    "pending_client_oid",
    "pending_price",
    "opened_ms",
)


class Positions:
    """The engine's managed positions with their stop/TP and the persisted stop-replace step."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, row: dict[str, Any]) -> None:
        values = tuple(
            None if row.get(f) is None else (str(row[f]) if isinstance(row[f], Decimal) else row[f])
            for f in POSITION_FIELDS
        )
        cols = ", ".join(POSITION_FIELDS)
        marks = ", ".join("?" for _ in POSITION_FIELDS)
        await self.db.execute(f"INSERT OR REPLACE INTO positions ({cols}) VALUES ({marks})", values)  # noqa: S608

    async def delete(self, symbol: str) -> None:
        await self.db.execute("DELETE FROM positions WHERE symbol = ?", (symbol,))

    async def all(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.db.fetchall("SELECT * FROM positions ORDER BY symbol")]


@dataclass(frozen=True, slots=True)
class RetryItem:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    due_ms: int
    attempts: int


class RetryQueue:
    """Work that failed and must be retried with backoff; survives restarts; one row per key."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, kind: str, key: str, payload: dict[str, Any], due_ms: int, error: str = "") -> None:
        await self.db.execute(
            "INSERT INTO retry_queue (kind, key, payload, due_ms, last_error) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET payload = excluded.payload, due_ms = excluded.due_ms,"
            " attempts = attempts + 1, last_error = excluded.last_error",
            (kind, key, json.dumps(payload), due_ms, error),
        )

    async def due(self, now_ms: int) -> list[RetryItem]:
        rows = await self.db.fetchall("SELECT * FROM retry_queue WHERE due_ms <= ? ORDER BY due_ms", (now_ms,))
        return [
            RetryItem(r["id"], r["kind"], r["key"], json.loads(r["payload"]), r["due_ms"], r["attempts"]) for r in rows
        ]

    async def done(self, key: str) -> None:
        await self.db.execute("DELETE FROM retry_queue WHERE key = ?", (key,))

    async def depth(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM retry_queue")
        return int(row[0]) if row else 0


class Settings:
    """Mode switches (control mode, armed, paused) that must survive a restart."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str, default: str | None = None) -> str | None:
        row = await self.db.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else str(row["value"])

    async def set(self, key: str, value: str) -> None:
        await self.db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))


class WebhookCursor:
    """The newest event (its journal ``seq``) the webhook was handed, kept in ``settings``. No row: nothing is owed
    (the first start with a webhook, or after a run without one), rather than the whole history."""

    KEY = "webhook_seq"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self) -> int | None:
        row = await self.db.fetchone("SELECT value FROM settings WHERE key = ?", (self.KEY,))
        return None if row is None else int(row["value"])

    async def advance(self, seq: int) -> None:
        """Past ``seq``, never back (events are handed on in order, but a late one must not pull it back)."""
        await self.db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value ="
            " CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
            (self.KEY, str(seq)),
        )

    async def start(self, seq: int) -> None:
        """A cursor at ``seq`` unless there is one already."""
        await self.db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (self.KEY, str(seq)))

    async def set(self, seq: int) -> None:
        await self.db.execute("UPDATE settings SET value = ? WHERE key = ?", (str(seq), self.KEY))

    async def forget(self) -> None:
        if await self.get() is not None:  # a read, not a write, on each start without a webhook
            await self.db.execute("DELETE FROM settings WHERE key = ?", (self.KEY,))


class TelegramCursors:
    """Per chat, the newest event (its journal ``seq``) the Telegram side has handled. A message queued for an event
    moves it in the same statement (a trigger on ``outbox``); a start moves it past what it queued late. No row means
    unknown (the first start of this release, a chat just added or put back, a run without Telegram since): nothing
    is replayed for that chat, rather than its whole history."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, chat_ids: Collection[int]) -> dict[int, int]:
        """The chats of ``chat_ids`` that have a cursor, with it."""
        rows = await self.db.fetchall("SELECT chat_id, seq FROM telegram_cursor")
        return {int(r["chat_id"]): int(r["seq"]) for r in rows if int(r["chat_id"]) in chat_ids}

    async def advance(self, chat_ids: Collection[int], seq: int, *, exact: bool = False) -> None:
        """Every chat of ``chat_ids`` has handled the events up to ``seq``: a cursor never moves back, except
        ``exact`` (at a start, where ``seq`` is known to be the last handled: a database restored from a backup
        older than its cursors would otherwise never have its next crash's events caught up)."""
        await self.db.conn.executemany(
            "INSERT INTO telegram_cursor (chat_id, seq) VALUES (?, ?)"
            " ON CONFLICT (chat_id) DO UPDATE SET seq = CASE WHEN ? THEN excluded.seq ELSE MAX(seq, excluded.seq) END",
            [(chat_id, seq, int(exact)) for chat_id in chat_ids],
        )
        await self.db.conn.commit()

    async def start(self, chat_ids: Collection[int], seq: int) -> None:
        """A cursor at ``seq`` for each chat of ``chat_ids`` that has none, the others left as they are: a chat just
        added owes nothing of the runs before, and is owed this run's events (from ``seq`` on) should it die."""
        await self.db.conn.executemany(
            "INSERT OR IGNORE INTO telegram_cursor (chat_id, seq) VALUES (?, ?)", [(c, seq) for c in chat_ids]
        )
        await self.db.conn.commit()

    async def keep_only(self, chat_ids: Collection[int]) -> None:
        """Forget the cursors of chats not configured now: a chat taken out of the configuration and later put back
        is a chat just added (no history), not one owed every message of the runs without it."""
        gone = [(int(r["chat_id"]),) for r in await self.db.fetchall("SELECT chat_id FROM telegram_cursor")]
        gone = [g for g in gone if g[0] not in chat_ids]
        if gone:
            await self.db.conn.executemany("DELETE FROM telegram_cursor WHERE chat_id = ?", gone)
            await self.db.conn.commit()

    async def move(self, old: int, new: int) -> None:
        """A group became a supergroup: its cursor goes with it (its messages from now on carry the new id)."""
        await self.db.execute("UPDATE OR REPLACE telegram_cursor SET chat_id = ? WHERE chat_id = ?", (new, old))

    async def forget(self) -> None:
        """A run without Telegram: its events are nobody's messages, and a later run with Telegram must not send
        them late. Writes only when there is something to forget (a bot that never had Telegram writes nothing)."""
        if await self.db.fetchone("SELECT 1 FROM telegram_cursor LIMIT 1") is not None:
            await self.db.execute("DELETE FROM telegram_cursor")


class Approvals:
    """Approval cards; the state leaves PENDING exactly once, enforced by a conditional UPDATE."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, approval_id: str, symbol: str, payload: dict[str, Any], now_ms: int, expires_ms: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO approvals (id, symbol, payload, state, created_ms, expires_ms)"
            " VALUES (?, ?, ?, 'PENDING', ?, ?)",
            (approval_id, symbol, json.dumps(payload), now_ms, expires_ms),
        )

    async def transition(self, approval_id: str, old: str, new: str, now_ms: int) -> bool:
        """Move ``old`` → ``new``; False when another transition already happened (a double tap)."""
        changed = await self.db.execute(
            "UPDATE approvals SET state = ?, resolved_ms = ? WHERE id = ? AND state = ?",
            (new, now_ms, approval_id, old),
        )
        return changed == 1

    async def get(self, approval_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        if row is None:
            return None
        out = dict(row)
        out["payload"] = json.loads(out["payload"])
        return out

    async def prune_finished(self, before_ms: int, batch: int = 5_000) -> int:
        """Delete the cards that reached a final state (executed, rejected, expired, refused at the re-check)
        before ``before_ms``; returns how many. One row per card was kept for good. PENDING and APPROVED
        (executing) cards stay whatever their age; a tap on a deleted card's button is answered "expired", as
        for any unknown card."""
        return await self.db.delete_batched(
            "approvals",
            "state IN ('EXECUTED', 'REJECTED', 'EXPIRED', 'FAILED_RECHECK') AND COALESCE(resolved_ms, created_ms) < ?",
            (before_ms,),
            batch,
        )

    async def expired(self, now_ms: int) -> list[str]:
        rows = await self.db.fetchall("SELECT id FROM approvals WHERE state = 'PENDING' AND expires_ms <= ?", (now_ms,))
        return [r["id"] for r in rows]
