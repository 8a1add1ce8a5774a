"""Asyncio KuCoin Futures REST client (aiohttp): signing, envelope, typed errors, bounded retries with full
jitter, and idempotent order placement (a lost reply is resolved by asking for the clientOid, never by
blindly sending the order again)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog
from yarl import URL

from exchange.errors import (
    DuplicateClientOidError,
    ExchangeError,
    ExchangeTimeoutError,
    InvalidRequestError,
    NoAnswerError,
    OrderNotFoundError,
    PermissionRefusedError,
    RateLimitedError,
    RetryableError,
    TimestampError,
    error_for,
)
from exchange.models import (
    AccountOverview,
    ClosedPosition,
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
)
from exchange.ratelimit import RateBudget, weight_for
from exchange.signing import Credentials, compact_json, sign_headers

log = structlog.get_logger(__name__)

GATEWAY_GAVE_UP = (502, 504)  # answered by a gateway, not by the exchange: the request's fate is unknown
CLOUDFLARE_BLOCK_MS = 30_000  # 1015: the legacy per-IP limit blocks for 30 s (reference §3.2)
MAX_PAGES = 50  # a bound on any paged listing: 50,000 fills, 5,000 funding records, 2,500 open (stop) orders
# Open orders and stop orders asked per page: KuCoin's default (the order listing allows up to 1000, the stop-order
# listing documents no maximum).
LIST_PAGE_SIZE = 50


# The reference is unsure of the exact strings (Transfer? Withdrawal? InnerTransfer? FlexTransfers?): any
# permission whose letters contain one of these roots can move money and is refused.
_MONEY_MOVING = ("transfer", "withdraw")


def _permission_list(raw: Any) -> list[str]:
    """The key's permissions from the ``permission`` field: a comma string (the documented shape), another
    separator, spaces only, or a JSON list."""
    if isinstance(raw, list | tuple):
        items = [str(x) for x in raw]
    else:
        text = str(raw or "")
        items = re.split(r"[,;|]", text) if re.search(r"[,;|]", text) else text.split()
    return [p.strip() for p in items if p.strip()]


_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~/-]*", re.ASCII)
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._~,-]*", re.ASCII)  # RFC 3986 unreserved, plus "," for lists


def _letters(permission: str) -> str:
    return re.sub(r"[^a-z]", "", permission.lower())


def _found(data: Any, what: str) -> Order:
    if data is None:
        raise OrderNotFoundError(f"{what} unknown to the exchange (empty answer)", code="100004")
    return Order.from_api(data)


class KucoinFuturesClient:
    """One client per account; ``async with`` owns its aiohttp session."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        spot_base_url: str | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 8.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        budget: RateBudget | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
        resend_grace_s: float | None = None,
        endpoint_block_s: float = 10.0,
    ) -> None:
        self.budget = budget or RateBudget()
        self.trace_configs = list(trace_configs)  # aiohttp request tracing (benchmarks, diagnostics)
        self.base_url = base_url.rstrip("/")
        self.spot_base_url = (spot_base_url or base_url).rstrip("/")
        self.credentials = credentials
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        # How long an unanswered order that can add exposure may still land: it is not re-sent before that.
        self.resend_grace_s = 3 * timeout_s if resend_grace_s is None else resend_grace_s
        self.endpoint_block_s = endpoint_block_s  # 200002: the endpoint is blocked this long (reference §3.4)
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311  # nosec B311
        self.offset_ms = 0
        self.retries = 0
        self.last_signed_ok_ms = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = self._new_session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._new_session()
        return self._session

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=self.timeout, trace_configs=self.trace_configs or None)

    # ------------------------------------------------------------------ transport

    def _now_ms(self) -> int:
        return int(self.clock() * 1000) + self.offset_ms

    async def sync_time(self) -> int:
        """Measure the server-time offset so a skewed local clock does not break signatures."""
        before = self.clock()
        server_ms = int(await self._send("GET", "/api/v1/timestamp", signed=False))
        after = self.clock()
        self.offset_ms = server_ms - int((before + after) / 2 * 1000)
        return self.offset_ms

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        signed: bool = True,
        base: str | None = None,
    ) -> Any:
        """One HTTP exchange, no retries: returns ``data`` or raises the classified error."""
        pairs = [(k, str(v)) for k, v in (params or {}).items() if v is not None]
        if not _PLAIN_PATH.fullmatch(path) or not all(_PLAIN_VALUE.fullmatch(k + v) for k, v in pairs):
            # Reference §2.2: the query is signed un-encoded and must be sent as signed, so only values that need
            # no percent-encoding may go out (symbols, numbers, ids). Sent raw, "A B" broke the request and
            # "X&status=done" smuggled in a parameter.
            raise InvalidRequestError(f"{method} {path} {pairs!r}: a path or query value needs percent-encoding")
        query = "&".join(f"{k}={v}" for k, v in pairs)
        target = path + (f"?{query}" if query else "")
        body_str = "" if body is None else compact_json(body)
        headers = {"Content-Type": "application/json"}
        pool, weight = weight_for(method, path, signed=signed)
        await self.budget.acquire(pool, weight)  # before signing, so a wait never stales the timestamp
        if signed:
            if self.credentials is None:
                raise InvalidRequestError(f"{path} needs API credentials")
            headers = sign_headers(self.credentials, method, target, body_str, self._now_ms())
        url = URL((base or self.base_url) + target, encoded=True)
        try:
            async with self.session.request(method, url, data=body_str or None, headers=headers) as resp:
                status = resp.status
                reset = resp.headers.get("gw-ratelimit-reset")
                self.budget.observe(pool, resp.headers.get("gw-ratelimit-remaining"), reset)
                try:
                    payload = await resp.json(content_type=None)
                except (aiohttp.ContentTypeError, ValueError):
                    payload = None
        except TimeoutError as exc:
            raise ExchangeTimeoutError(f"{method} {path} timed out") from exc
        except aiohttp.ClientConnectorError as exc:  # no connection: the request never left
            raise RetryableError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:  # sent, then the connection failed: executed or not, nobody knows
            raise NoAnswerError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if not isinstance(payload, dict):
            # 502/504: a gateway gave up on the exchange behind it, which may still execute the request; a 2xx whose
            # JSON is cut short was executed. Either way nobody knows: unanswered, not refused.
            cls = NoAnswerError if status in GATEWAY_GAVE_UP or status < 300 else RetryableError
            raise cls(f"{method} {path}: HTTP {status} without a JSON body", http_status=status)
        code = str(payload.get("code", ""))
        if code == "200000" and status < 400:
            if "data" not in payload:  # reference §3.1: a "success" without data is seen in the wild; the
                # request may or may not have been executed, so it is treated like a lost reply (an order that can
                # add exposure is re-sent only after the grace and a second look, as a lost reply is)
                raise NoAnswerError(f"{method} {path}: success code without data: {payload}", http_status=status)
            if signed:
                self.last_signed_ok_ms = self._now_ms()
            return payload.get("data")
        err = error_for(code or str(status), str(payload.get("msg", "")), status)
        if status in GATEWAY_GAVE_UP and type(err) is RetryableError:
            err = NoAnswerError(err.message, code=err.code, http_status=status)
        if isinstance(err, RateLimitedError) and reset is not None and reset.isdigit():
            err.reset_ms = int(reset)
        elif isinstance(err, RateLimitedError) and err.code == "200002":
            err.reset_ms = int(self.endpoint_block_s * 1000)
        elif isinstance(err, RateLimitedError) and err.code == "1015":
            err.reset_ms = CLOUDFLARE_BLOCK_MS
        raise err

    async def _call(self, method: str, path: str, *, retry: bool = True, **kw: Any) -> Any:
        """``_send`` with bounded retries for transient failures (reads and safe writes only)."""
        resynced = False
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await self._send(method, path, **kw)
            except TimestampError:
                if resynced:
                    raise
                resynced = True
                await self.sync_time()
            except RetryableError as exc:
                if not retry or attempt == self.max_attempts:
                    raise
                await self._backoff(attempt, exc)
        raise ExchangeError(f"{method} {path}: retries exhausted")  # pragma: no cover - loop always returns/raises

    async def _backoff(self, attempt: int, exc: RetryableError) -> None:
        """Exponential backoff with full jitter; a 429 waits at least until the pool resets."""
        self.retries += 1
        delay = self.rng.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)))
        if isinstance(exc, RateLimitedError) and exc.reset_ms is not None:
            delay = max(delay, exc.reset_ms / 1000)
        log.warning("exchange.retry", attempt=attempt, delay_s=round(delay, 3), error=str(exc))
        await asyncio.sleep(delay)

    # ------------------------------------------------------------------ market data

    async def server_time(self) -> int:
        return int(await self._call("GET", "/api/v1/timestamp", signed=False))

    async def contracts(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/api/v1/contracts/active", signed=False)
        return list(data)

    async def contract(self, symbol: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/api/v1/contracts/{symbol}", signed=False))

    async def ticker(self, symbol: str) -> dict[str, Any]:
        return dict(await self._call("GET", "/api/v1/ticker", params={"symbol": symbol}, signed=False))

    async def system_status(self) -> tuple[str, str]:
        """KuCoin Futures' own status: ``open``, ``close`` (maintenance) or ``cancelonly``, and its message."""
        data = await self._call("GET", "/api/v1/status", signed=False)
        return str(data["status"]), str(data.get("msg") or "")

    async def trade_history(self, symbol: str) -> list[dict[str, Any]]:
        """The last 100 public trades, newest first; ``side`` is the taker's."""
        return list(await self._call("GET", "/api/v1/trade/history", params={"symbol": symbol}, signed=False))

    async def funding_rate(self, symbol: str) -> Decimal:
        """The current funding cycle's rate as a fraction (0.0001 = 0.01 %)."""
        data = await self._call("GET", f"/api/v1/funding-rate/{symbol}/current", signed=False)
        return Decimal(str(data["value"]))

    async def mark_price(self, symbol: str) -> Decimal:
        data = await self._call("GET", f"/api/v1/mark-price/{symbol}/current", signed=False)
        return Decimal(str(data["value"]))

    async def mark_and_index(self, symbol: str) -> tuple[Decimal, Decimal]:
        """The mark price and the spot index it is built from (reference §4.1.9: ``value``, ``indexPrice``)."""
        data = await self._call("GET", f"/api/v1/mark-price/{symbol}/current", signed=False)
        return Decimal(str(data["value"])), Decimal(str(data["indexPrice"]))

    async def level2_depth(self, symbol: str, depth: int = 100) -> dict[str, Any]:
        """The top ``depth`` (20 or 100) levels of the book (reference §4.1.5): ``bids`` high→low, ``asks``
        low→high, each ``[price, size in lots]``."""
        if depth not in (20, 100):
            raise ValueError(f"level-2 depth is 20 or 100, not {depth}")
        return dict(await self._call("GET", f"/api/v1/level2/depth{depth}", params={"symbol": symbol}, signed=False))

    async def klines(self, symbol: str, granularity_min: int, start_ms: int, end_ms: int) -> list[list[float]]:
        """Candles in [start, end], ascending, paging by time. One answer is capped (500 rows now, 200 in the
        legacy docs) and the reference leaves open which end of a larger range the cap keeps, so whatever a page
        did not cover, on either side of it, is asked for again until a range comes back empty."""
        got: dict[int, list[float]] = {}
        step = granularity_min * 60_000
        todo = [(start_ms, end_ms)]
        while todo:
            lo, hi = todo.pop()
            page = await self._call(
                "GET",
                "/api/v1/kline/query",
                signed=False,
                params={"symbol": symbol, "granularity": granularity_min, "from": lo, "to": hi},
            )
            rows = [r for r in page or () if lo <= int(r[0]) <= hi]
            if not rows:
                continue  # nothing in this range (a gap, or before the contract was listed)
            for r in rows:
                got[int(r[0])] = r
            first, last = int(rows[0][0]), int(rows[-1][0])
            if last + step <= hi:
                todo.append((last + step, hi))
            if first - step >= lo:
                todo.append((lo, first - step))
        return [got[t] for t in sorted(got)]

    # ------------------------------------------------------------------ account and positions

    async def account_overview(self) -> AccountOverview:
        data = await self._call("GET", "/api/v1/account-overview", params={"currency": "USDT"})
        return AccountOverview.from_api(data)

    async def position(self, symbol: str) -> Position:
        return Position.from_api(await self._call("GET", "/api/v1/position", params={"symbol": symbol}))

    async def symbol_positions(self, symbol: str) -> list[Position]:
        """Every position of ``symbol`` (two in hedge mode), from ``/api/v2/position``."""
        data = await self._call("GET", "/api/v2/position", params={"symbol": symbol})
        return [Position.from_api(p) for p in data]

    async def positions(self) -> list[Position]:
        data = await self._call("GET", "/api/v1/positions", params={"currency": "USDT"})
        return [Position.from_api(p) for p in data]

    async def position_mode(self) -> int:
        data = await self._call("GET", "/api/v2/position/getPositionMode")
        return int(data["positionMode"])

    async def set_position_mode(self, hedge: bool) -> None:
        await self._call("POST", "/api/v2/position/switchPositionMode", body={"positionMode": "1" if hedge else "0"})

    async def margin_mode(self, symbol: str) -> str:
        data = await self._call("GET", "/api/v2/position/getMarginMode", params={"symbol": symbol})
        return str(data["marginMode"])

    async def set_margin_mode(self, symbol: str, mode: str) -> None:
        await self._call("POST", "/api/v2/position/changeMarginMode", body={"symbol": symbol, "marginMode": mode})

    async def ensure_margin_mode(self, symbol: str, mode: str) -> bool:
        """Make ``symbol``'s margin mode ``mode`` (True when it had to be switched). Every order carries its
        ``marginMode`` and KuCoin refuses one that differs from the symbol's (330005, reference §4.3.3): a symbol
        left in CROSS from the app made every ISOLATED entry and stop fail. The switch itself is refused while the
        symbol has a position or open orders (50002)."""
        if await self.margin_mode(symbol) == mode:
            return False
        await self.set_margin_mode(symbol, mode)
        log.warning("exchange.margin_mode_switched", symbol=symbol, margin_mode=mode)
        return True

    async def cross_leverage(self, symbol: str) -> int:
        data = await self._call("GET", "/api/v2/getCrossUserLeverage", params={"symbol": symbol})
        return int(str(data["leverage"]))

    async def set_cross_leverage(self, symbol: str, leverage: int) -> None:
        await self._call("POST", "/api/v2/changeCrossUserLeverage", body={"symbol": symbol, "leverage": str(leverage)})

    async def api_key_permissions(self) -> list[str]:
        return (await self._api_key_info())[0]

    async def _api_key_info(self) -> tuple[list[str], str]:
        data = await self._call("GET", "/api/v1/user/api-key", base=self.spot_base_url)
        version = data.get("apiVersion")
        if self.credentials is not None and version is not None and str(version) != str(self.credentials.version):
            # Reference §2.1: KC-API-KEY-VERSION is the version shown for the key. What KuCoin does with another
            # one is not documented (a refusal, or a v2 treatment of a v3 key): say so before trading.
            log.warning(
                "api_key.version_mismatch",
                key_version=str(version),
                sent=str(self.credentials.version),
                detail="set KUCOIN_KEY_VERSION to the version KuCoin shows for this key",
            )
        return _permission_list(data.get("permission")), str(data.get("ipWhitelist") or "").strip()

    async def check_key_permissions(self) -> list[str]:
        """Refuse a key that can move money out; require Futures; warn when the key works from any IP (the
        reference asks for it: a leaked key then trades from anywhere). Returns the permissions."""
        perms, ip_whitelist = await self._api_key_info()
        if not ip_whitelist:
            log.warning(
                "api_key.no_ip_restriction",
                detail="this API key works from any IP address: restrict it to this server's IP in KuCoin",
            )
        lowered = {_letters(p) for p in perms}
        bad = [p for p in perms if any(root in _letters(p) for root in _MONEY_MOVING)]
        if bad:
            raise PermissionRefusedError(f"API key has the {', '.join(bad)} permission; create a trade-only key")
        if "futures" not in lowered:
            raise PermissionRefusedError("API key lacks the Futures permission")
        return perms

    async def fills(
        self, *, symbol: str | None = None, order_id: str | None = None, start_ms: int | None = None
    ) -> list[Fill]:
        """Every fill (of ``order_id``, or of ``symbol`` since ``start_ms``), newest first. One answer holds a page
        (50 fills unless asked for up to 1000): a position closed in many fills, or a symbol traded often, spans
        several, and reading only the first booked the close at the wrong price."""
        out: dict[str, Fill] = {}
        params = {"symbol": symbol, "orderId": order_id, "startAt": start_ms}
        for row in await self._page_rows("/api/v1/fills", params, 1000):
            fill = Fill.from_api(row)
            out.setdefault(fill.trade_id, fill)  # a fill arriving meanwhile shifts the pages: never twice
        return sorted(out.values(), key=lambda f: f.ts_ms, reverse=True)

    async def closed_positions(self, symbol: str, *, start_ms: int | None = None) -> list[ClosedPosition]:
        """KuCoin's closed-position history of ``symbol`` (closed since ``start_ms``), newest first: how the exchange
        booked each close (its type, close price, net PnL, fees), paged by ``pageId`` 200 at a time. A record that
        cannot be read is logged and left out."""
        out: list[ClosedPosition] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"symbol": symbol, "from": start_ms, "limit": 200, "pageId": page}
            data = await self._call("GET", "/api/v1/history-positions", params=params)
            items = list(data.get("items") or [])
            for row in items:
                try:
                    out.append(ClosedPosition.from_api(row))
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    log.warning("exchange.closed_position_unreadable", symbol=symbol, error=f"{exc!r}")
            if not items or page >= int(data.get("totalPage") or 1):
                break
        return sorted(out, key=lambda r: r.close_ms, reverse=True)

    async def funding_history(
        self, symbol: str, *, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """Every funding record of ``symbol`` in [start, end], oldest first. One answer holds 10 by default (three
        funding times a day: a position held four days has more), so the range is paged by time until
        ``hasMore`` is false, from whichever end the answer covered."""
        got: dict[str, dict[str, Any]] = {}
        lo, hi = start_ms, end_ms
        for _ in range(MAX_PAGES):
            params = {"symbol": symbol, "startAt": lo, "endAt": hi, "maxCount": 100}
            data = await self._call("GET", "/api/v1/funding-history", params=params)
            rows = list(data.get("dataList") or [])
            for r in rows:
                got[str(r.get("id", r.get("timePoint")))] = r
            if not rows or not data.get("hasMore"):
                break
            times = [int(r["timePoint"]) for r in rows]
            if times[0] >= times[-1]:  # newest first: what is missing is older
                hi = min(times) - 1
            else:
                lo = max(times) + 1
        return sorted(got.values(), key=lambda r: int(r["timePoint"]))

    async def bullet(self, *, private: bool) -> dict[str, Any]:
        path = "/api/v1/bullet-private" if private else "/api/v1/bullet-public"
        return dict(await self._call("POST", path, signed=private))

    # ------------------------------------------------------------------ orders

    async def place_order(self, req: OrderRequest, *, test: bool = False, urgent: bool = True) -> Order:
        """Place ``req`` exactly once. After a timeout or lost reply the exchange is asked whether it knows the
        clientOid; the order is re-sent only when it does not.

        ``urgent=False``: a reduce-only order that nothing waits for (a replacement stop while the old one still
        protects, a take-profit) is re-sent only after the grace, like an entry. Sent again at once, a first copy
        that was still on its way could land later beside it, after the copy had been moved on: an extra stop."""
        path = "/api/v1/orders/test" if test else "/api/v1/orders"
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.max_attempts + 1):
            sent = loop.time()
            try:
                data = await self._send("POST", path, body=req.body())
                order_id = data.get("orderId") if isinstance(data, dict) else None
                if not order_id:  # executed or not, we cannot tell: resolved below by the clientOid
                    raise NoAnswerError(f"POST {path}: answer without an orderId: {data!r}")
                if test:
                    return _accepted(req, str(order_id))
                return await self._placed(req, str(order_id))
            except DuplicateClientOidError:
                return await self._known(req)
            except TimestampError:
                await self.sync_time()
            except RetryableError as exc:
                if test:
                    if attempt == self.max_attempts:
                        raise
                    await self._backoff(attempt, exc)
                    continue
                if not isinstance(exc, RateLimitedError):
                    known = await self._find(req.client_oid)
                    if known is not None:
                        log.info("exchange.order_recovered", client_oid=req.client_oid, order_id=known.id)
                        return known
                    if isinstance(exc, ExchangeTimeoutError | NoAnswerError) and (
                        not (req.reduce_only or req.close_order) or not urgent
                    ):
                        # Unanswered, and unknown to the exchange *so far*: it may still be on its way. Sent again at
                        # once, both could execute (the same clientOid does not stop the second once the first, a
                        # filled market order, is no longer active): a doubled position. So an order that can add
                        # exposure is re-sent only after the grace, and after one more look.
                        wait = sent + self.resend_grace_s - loop.time()
                        if wait > 0:
                            log.warning("exchange.order_unanswered", client_oid=req.client_oid, wait_s=round(wait, 3))
                            await asyncio.sleep(wait)
                        known = await self._find(req.client_oid)
                        if known is not None:
                            log.info("exchange.order_recovered", client_oid=req.client_oid, order_id=known.id)
                            return known
                if attempt == self.max_attempts:
                    raise
                await self._backoff(attempt, exc)
        raise ExchangeError(f"placing {req.client_oid}: retries exhausted")  # pragma: no cover

    async def _placed(self, req: OrderRequest, order_id: str) -> Order:
        """The order the exchange has just accepted. Its query side may not show it yet (100004 right after the
        placement): ask again with backoff; in the end answer with what was accepted rather than "not found"."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await self.order_by_id(order_id)
            except OrderNotFoundError:
                await asyncio.sleep(self.rng.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2**attempt)))
        log.warning("exchange.order_not_visible", order_id=order_id, client_oid=req.client_oid)
        return _accepted(req, order_id, status=OrderStatus.OPEN)

    async def _find(self, client_oid: str) -> Order | None:
        try:
            return await self.order_by_client_oid(client_oid)
        except OrderNotFoundError:
            return None

    async def _known(self, req: OrderRequest) -> Order:
        found = await self._find(req.client_oid)
        if found is None:
            raise DuplicateClientOidError(f"clientOid {req.client_oid} reported as repeated but not found")
        return found

    async def place_bracket(self, req: OrderRequest, *, take_profit: Decimal, stop_loss: Decimal) -> Order:
        """``POST /api/v1/st-orders``: entry with attached reduce-only TP and SL (mark price)."""
        up, down = (take_profit, stop_loss) if req.side is OrderSide.BUY else (stop_loss, take_profit)
        body = req.body() | {
            "triggerStopUpPrice": format(up, "f"),  # str() gives "2.06E+3" for some Decimals: never on the wire
            "triggerStopDownPrice": format(down, "f"),
            "stopPriceType": req.stop_price_type.value,
        }
        try:
            data = await self._send("POST", "/api/v1/st-orders", body=body)
            order_id = data.get("orderId") if isinstance(data, dict) else None
            if not order_id:
                raise RetryableError(f"POST /api/v1/st-orders: answer without an orderId: {data!r}")
        except RetryableError:
            known = await self._find(req.client_oid)
            if known is None:
                raise
            return known
        return await self.order_by_id(str(order_id))

    async def market_entry_guarded(
        self,
        symbol: str,
        side: OrderSide,
        lots: int,
        leverage: int,
        max_slippage_pct: Decimal,
        tick: Decimal,
        *,
        client_oid: str | None = None,
        position_side: str | None = None,
    ) -> Order:
        """A market entry that cannot fill far away: a limit IOC at the best price ± ``max_slippage_pct``, kept
        inside the contract's price band (reference §6.1: ``buyLimit``/``sellLimit``, about mark ± 5 %). Past the
        band KuCoin refuses the order (300011/300012): with a 5 % setting every entry off a best price above the
        mark was refused."""
        t, contract = await asyncio.gather(self.ticker(symbol), self.contract(symbol))
        best = Decimal(t["bestAskPrice"] if side is OrderSide.BUY else t["bestBidPrice"])
        factor = 1 + max_slippage_pct / 100 if side is OrderSide.BUY else 1 - max_slippage_pct / 100
        worst = (best * factor / tick).to_integral_value() * tick
        band = contract.get("buyLimit" if side is OrderSide.BUY else "sellLimit")
        if band:
            edge = Decimal(str(band)) / tick
            if side is OrderSide.BUY:
                worst = min(worst, edge.to_integral_value(rounding=ROUND_FLOOR) * tick)
            else:
                worst = max(worst, edge.to_integral_value(rounding=ROUND_CEILING) * tick)
        req = OrderRequest(
            symbol=symbol,
            side=side,
            lots=lots,
            type=OrderType.LIMIT,
            price=worst,
            leverage=leverage,
            time_in_force="IOC",
            position_side=position_side,
        )
        if client_oid is not None:
            req = dataclasses.replace(req, client_oid=client_oid)
        return await self.place_order(req)

    async def cancel_order(self, order_id: str) -> list[str]:
        data = await self._call("DELETE", f"/api/v1/orders/{order_id}")
        return [str(x) for x in data.get("cancelledOrderIds", [])]

    async def cancel_by_client_oid(self, symbol: str, client_oid: str) -> str:
        data = await self._call("DELETE", f"/api/v1/orders/client-order/{client_oid}", params={"symbol": symbol})
        return str(data["clientOid"])

    async def cancel_all_orders(self, symbol: str) -> list[str]:
        data = await self._call("DELETE", "/api/v3/orders", params={"symbol": symbol})
        return [str(x) for x in data.get("cancelledOrderIds", [])]

    async def cancel_all_stop_orders(self, symbol: str | None = None) -> list[str]:
        data = await self._call("DELETE", "/api/v1/stopOrders", params={"symbol": symbol})
        return [str(x) for x in data.get("cancelledOrderIds", [])]

    async def order_by_id(self, order_id: str) -> Order:
        return _found(await self._call("GET", f"/api/v1/orders/{order_id}"), f"order {order_id}")

    async def order_by_client_oid(self, client_oid: str) -> Order:
        """The order placed with ``client_oid``; OrderNotFoundError when the exchange does not know it, whether it
        says so with 100004 or with a success whose ``data`` is null (seen from KuCoin for an unknown clientOid: read
        as an order, it crashed the lost-reply check of every placement instead of letting it place the order)."""
        data = await self._call("GET", "/api/v1/orders/byClientOid", params={"clientOid": client_oid})
        return _found(data, f"clientOid {client_oid}")

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Every active order (of ``symbol``), all pages of them."""
        return await self._order_pages("/api/v1/orders", {"status": "active", "symbol": symbol})

    async def open_stop_orders(self, symbol: str | None = None) -> list[Order]:
        """Every untriggered stop order (of ``symbol``), all pages of them."""
        return await self._order_pages("/api/v1/stopOrders", {"symbol": symbol})

    async def _order_pages(self, path: str, params: dict[str, Any]) -> list[Order]:
        """Every row of a paged order listing, each once, in the exchange's order. One answer holds a page of 50:
        reading only the first, the reconciliation, the orphan-stop sweep, the kill switch and the retention job
        worked from a list cut short at 50 (an orphan stop on page 2 was never swept, a live order's intent could be
        pruned). At most ``MAX_PAGES`` pages; a listing longer than that is returned cut short, with a warning."""
        out: dict[str, Order] = {}
        for row in await self._page_rows(path, params, LIST_PAGE_SIZE):
            order = Order.from_api(row)
            out.setdefault(order.id, order)  # an order placed meanwhile shifts the pages: never twice
        return list(out.values())

    async def _page_rows(self, path: str, params: dict[str, Any], page_size: int) -> list[Any]:
        """The rows of every page of a page-style listing (``currentPage``, ``pageSize``, ``totalPage``, ``items``),
        at most ``MAX_PAGES`` pages; a listing longer than that comes back cut short, with a warning."""
        rows: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            data = await self._call("GET", path, params=params | {"currentPage": page, "pageSize": page_size})
            items = data.get("items") or []
            rows.extend(items)
            if not items or page >= int(data.get("totalPage") or 1):
                return rows
        log.warning("exchange.listing_cut_short", path=path, pages=MAX_PAGES, rows=len(rows))
        return rows


def _accepted(req: OrderRequest, order_id: str, status: OrderStatus = OrderStatus.DONE) -> Order:
    """What the exchange accepted, from the request alone: ``orders/test`` (never placed, DONE), or an order
    accepted but not yet visible to queries (OPEN, nothing known to be filled)."""
    return Order(
        id=order_id,
        client_oid=req.client_oid,
        symbol=req.symbol,
        side=req.side,
        type=req.type,
        price=req.price,
        lots=req.lots,
        filled_lots=0,
        filled_value=Decimal(0),
        status=status,
        reduce_only=req.reduce_only,
        stop=req.stop,
        stop_price=req.stop_price,
        stop_triggered=False,
        cancel_exist=True,
        created_at=0,
        position_side=req.position_side,
    )
