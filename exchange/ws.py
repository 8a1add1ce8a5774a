"""KuCoin Futures WebSocket streams (reference §5): token, welcome, JSON ping, acknowledged subscriptions,
reconnect with backoff and a fresh token, resubscription, a REST backfill hook, and message hygiene
(malformed messages counted, duplicates and stale order updates dropped)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from traceback import format_exc
from typing import Any

import structlog
import websockets
from websockets.asyncio.client import ClientConnection

from engine.logging import Redactor
from engine.models import Candle, checked_candle
from exchange.errors import ExchangeError
from exchange.rest import KucoinFuturesClient

log = structlog.get_logger(__name__)
ERRORS_KEPT = 200
ORDERS_TRACKED = 10_000  # orders whose latest update time is remembered, to drop stale updates
UPLINK_LIMIT = (90, 10.0)  # KuCoin allows 100 uplink messages per 10 s a connection: keep a margin
YIELD_EVERY_S = 0.001  # how long the reader may parse a burst before the queued work gets the loop

MessageHandler = Callable[["StreamMessage"], Awaitable[None] | None]
BackfillHook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamMessage:
    topic: str
    subject: str
    data: dict[str, Any]
    private: bool
    connection: int = 0  # which connection of the stream delivered it (1 for the first, +1 per reconnect)


@dataclass
class StreamStats:
    """Counters the runtime exports to Prometheus."""

    connects: int = 0
    reconnects: int = 0
    malformed: int = 0
    duplicates: int = 0
    stale: int = 0
    messages: int = 0
    received: int = 0  # every topic message read, before duplicates and stale updates are dropped
    handler_failures: int = 0
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))  # the latest only: runs for months


def connect_url(endpoint: str, token: str, connect_id: str) -> str:
    """``{endpoint}?token=…&connectId=…`` with both values percent-encoded (reference §5.1). A real token ends in
    ``=`` padding and may carry ``+``/``/``: sent raw, a ``+`` reads back as a space and the token is refused."""
    sep = "&" if "?" in endpoint else "?"
    query = urllib.parse.urlencode({"token": token, "connectId": connect_id}, quote_via=urllib.parse.quote)
    return f"{endpoint}{sep}{query}"


class StreamClosedError(ExchangeError):
    """The socket ended; the run loop reconnects."""


class KucoinStream:
    """One WebSocket connection with its topics; ``run()`` keeps it alive until ``stop()``."""

    def __init__(
        self,
        client: KucoinFuturesClient,
        on_message: MessageHandler,
        *,
        private: bool = False,
        on_reconnect: BackfillHook | None = None,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        ack_timeout_s: float = 5.0,
        dedupe_window: int = 2048,
        rng: random.Random | None = None,
        uplink_limit: tuple[int, float] = UPLINK_LIMIT,
    ) -> None:
        self.client = client
        self.on_message = on_message
        self.private = private
        self.on_reconnect = on_reconnect
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.ack_timeout_s = ack_timeout_s
        self.rng = rng or random.Random()  # noqa: S311  # nosec B311
        self.topics: dict[str, bool] = {}
        self.stats = StreamStats()
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._pong = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe_window = dedupe_window
        self._order_ts: dict[str, int] = {}
        self._ids = 0
        self._uplink_limit = uplink_limit
        self._uplink: deque[float] = deque()  # when the last messages went up (kept across reconnects)
        self._uplink_lock = asyncio.Lock()
        self._token: str | None = None  # the current connection's: a credential, blanked from every error kept

    # ------------------------------------------------------------------ public API

    async def subscribe(self, topic: str, *, private: bool = False) -> None:
        """Remember ``topic`` (resubscribed after every reconnect) and subscribe now if connected."""
        self.topics[topic] = private
        if self._ws is not None and self.connected.is_set():
            await self._subscribe(topic, private)

    def subscribe_time_s(self) -> float:
        """How long subscribing every topic takes at the paced uplink rate (about 31 s for 280 topics)."""
        limit, window = self._uplink_limit
        return len(self.topics) / limit * window

    async def stop(self) -> None:
        self._stop_event.set()
        if self._ws is not None:
            await self._ws.close()

    async def run(self) -> None:
        """Connect, and reconnect with backoff until stopped. Never raises for a dropped connection."""
        attempt = 0
        while not self._stop_event.is_set():
            try:
                await self._session(first=self.stats.connects == 0)
            except asyncio.CancelledError:
                raise
            except (OSError, ExchangeError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
                if self._stop_event.is_set():  # our own close at shutdown: not a drop worth a warning
                    log.info("ws.closed", detail="stopped")
                    continue
                error = self._note_error(f"{type(exc).__name__}: {exc}")
                log.warning("ws.disconnected", error=error, attempt=attempt)
            except Exception as exc:  # a bug or a surprise in one session (e.g. the backfill hook): never the end
                error = self._note_error(f"{type(exc).__name__}: {exc}")
                # The traceback through the same cleaning: the log's own redactor does not know this token.
                log.error("ws.session_failed", error=error, attempt=attempt, traceback=self._clean(format_exc()))
            finally:
                if self.connected.is_set():
                    attempt = 0  # this connection came up: the next drop starts the backoff over
                self.connected.clear()
                self._ws = None
            if self._stop_event.is_set():
                break
            attempt += 1
            delay = self.rng.uniform(0.5, 1.0) * min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ one connection

    async def _session(self, *, first: bool) -> None:
        bullet = await self.client.bullet(private=self.private)  # a fresh token every time
        try:
            server = bullet["instanceServers"][0]
            endpoint, token = str(server["endpoint"]), str(bullet["token"])
            self._token = token
            ping_s, pong_s = float(server["pingInterval"]) / 1000, float(server["pingTimeout"]) / 1000
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise StreamClosedError(f"malformed token answer: {exc!r}") from exc
        connect_id = str(time.time_ns())
        url = connect_url(endpoint, token, connect_id)
        async with websockets.connect(url, ping_interval=None, max_size=2**22) as ws:
            self._ws = ws
            raw = await asyncio.wait_for(ws.recv(), timeout=5.0)
            try:
                welcome = json.loads(raw)
            except ValueError:
                welcome = None
            if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
                raise StreamClosedError(f"no welcome: {str(raw)[:120]!r}")
            self.stats.connects += 1
            reader = asyncio.create_task(self._read(ws), name="ws-reader")
            pinger = asyncio.create_task(self._ping(ws, ping_s, pong_s), name="ws-pinger")
            try:
                for topic, private in list(self.topics.items()):
                    await self._subscribe(topic, private)
                self.connected.set()
                if not first:
                    self.stats.reconnects += 1
                    if self.on_reconnect is not None:
                        await self.on_reconnect()
                done, _ = await asyncio.wait({reader, pinger}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                for task in (reader, pinger):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                for fut in self._acks.values():
                    if not fut.done():
                        fut.set_exception(StreamClosedError("connection closed before the ack"))
                self._acks.clear()

    def _clean(self, text: str) -> str:
        """``text`` with the account's key, secret and passphrase, the connection's token and any URL's
        credentials blanked: an error's text can quote the signed request or the connect URL with its token."""
        creds = self.client.credentials
        known = (creds.key, creds.secret, creds.passphrase) if creds is not None else ()
        return Redactor((*known, self._token or "")).text(text)

    def _note_error(self, text: str) -> str:
        """Keep ``text``, cleaned, in ``stats.errors`` (it outlives the log line and is read by whatever reports
        the stream's state); returns it for the log line."""
        clean = self._clean(text)
        self.stats.errors.append(clean)
        return clean

    def _next_id(self) -> str:
        self._ids += 1
        return f"{time.time_ns()}{self._ids}"

    async def _subscribe(self, topic: str, private: bool) -> None:
        ws = self._ws
        if ws is None:
            return
        req_id = self._next_id()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[req_id] = fut
        await self._send_paced(
            ws,
            json.dumps(
                {"id": req_id, "type": "subscribe", "topic": topic, "privateChannel": private, "response": True}
            ),
        )
        try:
            await asyncio.wait_for(fut, timeout=self.ack_timeout_s)
        finally:
            self._acks.pop(req_id, None)

    async def _send_paced(self, ws: ClientConnection, text: str) -> None:
        """Send within KuCoin's uplink limit (reference §5.3: 100 messages per 10 s a connection; over it, 509 and
        the message is dropped). Subscribing a few hundred topics at once went far over it: most subscriptions
        were refused and every reconnect refused them again."""
        limit, window = self._uplink_limit
        async with self._uplink_lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                while self._uplink and now - self._uplink[0] >= window:
                    self._uplink.popleft()
                if len(self._uplink) < limit:
                    break
                await asyncio.sleep(window - (now - self._uplink[0]) + 0.001)
            self._uplink.append(loop.time())
        await ws.send(text)

    async def _ping(self, ws: ClientConnection, interval_s: float, timeout_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self._pong.clear()
            await self._send_paced(ws, json.dumps({"id": self._next_id(), "type": "ping"}))
            try:
                await asyncio.wait_for(self._pong.wait(), timeout=timeout_s)
            except TimeoutError:
                raise StreamClosedError("no pong within pingTimeout") from None

    async def _read(self, ws: ClientConnection) -> None:
        yielded = time.monotonic()
        async for raw in ws:
            await self.handle_text(raw if isinstance(raw, str) else raw.decode(errors="replace"))
            # With frames buffered the loop never yields by itself: a burst of 542 would be parsed in full before
            # the work it queued (a stop replace, say) could start. Every millisecond, let that work run.
            if time.monotonic() - yielded >= YIELD_EVERY_S:
                await asyncio.sleep(0)
                yielded = time.monotonic()
        raise StreamClosedError("server closed the connection")

    async def handle_text(self, raw: str) -> None:
        """Parse and dispatch one frame; a malformed or unknown one is logged and counted, never fatal."""
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
        except ValueError:
            self.stats.malformed += 1
            log.warning("ws.malformed", preview=raw[:120])
            return
        kind = msg.get("type")
        if kind == "pong":
            self._pong.set()
        elif kind == "ack":
            fut = self._acks.get(str(msg.get("id")))
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "error":
            fut = self._acks.get(str(msg.get("id")))
            text = f"{msg.get('code')}: {msg.get('data')}"
            if fut is not None and not fut.done():
                fut.set_exception(ExchangeError(text, code=str(msg.get("code"))))
            if str(msg.get("code")) == "401" and self._ws is not None:
                await self._ws.close()  # token expired: reconnect with a fresh one
            self._note_error(text)
        elif kind == "message":
            self.stats.received += 1
            await self._dispatch(msg, raw)
        elif kind != "welcome":
            self.stats.malformed += 1
            log.warning("ws.unknown_type", type=kind)

    async def _dispatch(self, msg: dict[str, Any], raw: str) -> None:
        data = msg.get("data")
        topic, subject = msg.get("topic"), msg.get("subject")
        if not isinstance(data, dict) or not isinstance(topic, str) or not isinstance(subject, str):
            self.stats.malformed += 1
            return
        if raw in self._seen:
            self.stats.duplicates += 1
            return
        self._seen[raw] = None
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)
        if subject in ("orderChange", "symbolOrderChange", "stopOrder"):
            oid = str(data.get("orderId", ""))
            try:
                ts = int(data.get("ts", 0) or 0)
            except (TypeError, ValueError):
                self.stats.malformed += 1
                log.warning("ws.malformed_ts", preview=raw[:120])
                return
            if ts and ts < self._order_ts.get(oid, 0):
                self.stats.stale += 1  # an older state of this order arrived late
                return
            self._order_ts[oid] = max(ts, self._order_ts.get(oid, 0))
            if len(self._order_ts) > ORDERS_TRACKED:  # bounded: drop the orders heard of longest ago
                for old in list(self._order_ts)[: ORDERS_TRACKED // 2]:
                    del self._order_ts[old]
        self.stats.messages += 1
        try:
            result = self.on_message(
                StreamMessage(topic, subject, data, msg.get("channelType") == "private", self.stats.connects)
            )
            if result is not None:
                await result
        except Exception:  # e.g. a field that does not parse: this message is lost to the handler, not the stream
            self.stats.handler_failures += 1
            log.exception("ws.handler_failed", topic=topic, subject=subject)


MAX_TOPICS_PER_CONNECTION = 280  # KuCoin refuses more than 300 per connection (509, reference §5.3); room kept


class StreamGroup:
    """Several ``KucoinStream`` connections behind one subscribe / run / stop: KuCoin takes at most 300 topics on
    one connection, so a large universe needs several. Each topic lives on exactly one connection (no duplicate
    pushes); each connection reconnects, resubscribes and calls ``on_reconnect`` on its own."""

    def __init__(
        self,
        client: KucoinFuturesClient,
        on_message: MessageHandler,
        *,
        private: bool = False,
        on_reconnect: BackfillHook | None = None,
        max_topics: int = MAX_TOPICS_PER_CONNECTION,
        **stream_options: Any,
    ) -> None:
        self.client = client
        self.on_message = on_message
        self.private = private
        self.on_reconnect = on_reconnect
        self.max_topics = max_topics
        self.stream_options = stream_options
        self.streams: list[KucoinStream] = []
        self.connected = asyncio.Event()  # set while every connection is up
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    @property
    def stats(self) -> StreamStats:
        """The connections' counters, summed."""
        total = StreamStats()
        for s in self.streams:
            st = s.stats
            total.connects += st.connects
            total.reconnects += st.reconnects
            total.malformed += st.malformed
            total.duplicates += st.duplicates
            total.stale += st.stale
            total.messages += st.messages
            total.received += st.received
            total.handler_failures += st.handler_failures
            total.errors.extend(st.errors)
        return total

    @property
    def received(self) -> int:
        """Topic messages read over every connection (cheap: a max-speed replay asks at every step)."""
        return sum(s.stats.received for s in self.streams)

    def subscribe_time_s(self) -> float:
        """The connections subscribe in parallel: the longest of them."""
        return max((s.subscribe_time_s() for s in self.streams), default=0.0)

    async def subscribe(self, topic: str, *, private: bool = False) -> None:
        if any(topic in s.topics for s in self.streams):
            return
        target = next((s for s in self.streams if len(s.topics) < self.max_topics), None)
        if target is None:
            target = KucoinStream(
                self.client,
                self.on_message,
                private=self.private,
                on_reconnect=self.on_reconnect,
                **self.stream_options,
            )
            self.streams.append(target)
            if self._running:
                self._tasks.append(asyncio.create_task(target.run(), name=f"ws-stream-{len(self.streams)}"))
        await target.subscribe(topic, private=private)

    async def run(self) -> None:
        """Run every connection until stopped; ``connected`` follows whether all of them are up."""
        self._running = True
        self._tasks = [asyncio.create_task(s.run(), name=f"ws-stream-{i + 1}") for i, s in enumerate(self.streams)]
        try:
            while not all(t.done() for t in self._tasks):
                if self.streams and all(s.connected.is_set() for s in self.streams):
                    self.connected.set()
                else:
                    self.connected.clear()
                await asyncio.sleep(0.05)
        finally:
            self._running = False
            self.connected.clear()
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def stop(self) -> None:
        for s in self.streams:
            await s.stop()


class CandleCloser:
    """Turn ``candle.stick`` pushes into closed candles: a candle is final when one with a later start arrives."""

    def __init__(self) -> None:
        self.current: Candle | None = None
        self.connection = 0  # the stream connection that delivered ``current``
        self.dropped = 0  # candles cut by a reconnect, left to the REST backfill

    def push(self, data: dict[str, Any], connection: int = 0) -> Candle | None:
        """The closed candle this push completes, if any. ``connection`` (``StreamMessage.connection``): a candle
        last seen on an earlier connection may have missed its final pushes while the socket was down, so it is
        not emitted as closed; the engine's REST backfill fetches the real one when the next candle closes."""
        row = data["candles"]
        # Wire order: [start (seconds), open, close, high, low, x5, x6] — close before high/low.
        candle = checked_candle(
            int(row[0]) * 1000, float(row[1]), float(row[3]), float(row[4]), float(row[2]), float(row[6])
        )
        cur, cur_connection = self.current, self.connection
        if cur is not None and candle.ts < cur.ts:
            return None  # an out-of-order push for an older candle: ignore it
        self.current, self.connection = candle, connection
        if cur is not None and candle.ts > cur.ts:
            if cur_connection != connection:
                self.dropped += 1
                log.warning("ws.candle_cut_by_reconnect", start=cur.ts)
                return None
            return cur
        return None
