"""The simulator's aiohttp server: KuCoin's REST envelope, signature checks, rate-limit pools, fault switches,
and a WebSocket endpoint (welcome, ping/pong, subscribe acks, private and public pushes)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from exchange.simulator.auth import ApiKey, verify
from exchange.simulator.errors import SimError
from exchange.simulator.faults import FaultInjector
from exchange.simulator.state import Book, Contract, Order, Position, dumps, price_field

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONTRACTS = ROOT.parent / "shared" / "data" / "kucoin-futures" / "contracts.json"

Handler = Callable[[web.Request], Awaitable[Any]]
API_KEY = web.RequestKey("api_key", ApiKey)
JSON_BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("json", dict)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class SimulatorConfig:
    api_key: str = "sim-key"
    api_secret: str = "sim-secret"  # noqa: S105 - the simulator's fake default credentials
    api_passphrase: str = "sim-passphrase"  # noqa: S105
    key_version: int = 2
    key_permissions: tuple[str, ...] = ("General", "Futures")
    contracts_file: Path | None = None
    symbols: tuple[str, ...] = ("XBTUSDTM", "ETHUSDTM", "SOLUSDTM", "XRPUSDTM")
    initial_balance: Decimal = Decimal("10000")
    market_slippage: Decimal = Decimal("0.0002")
    funding_rate: Decimal = Decimal("0.0001")
    rate_limit_quota: int = 2000
    rate_limit_window_ms: int = 30_000
    ws_ping_interval_ms: int = 18_000
    ws_ping_timeout_ms: int = 10_000
    ip_whitelist: str = "127.0.0.1"  # what GET /api/v1/user/api-key reports ("" = the key works from any IP)
    ws_uplink_limit: tuple[int, float] = (100, 10.0)  # reference §5.3: 100 uplink messages per 10 s a connection
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))


def load_contracts(path: Path, symbols: tuple[str, ...]) -> dict[str, Contract]:
    raw = json.loads(path.read_text())
    entries = raw.get("contracts", raw)
    return {sym: contract_from(sym, p) for sym, p in entries.items() if not symbols or sym in symbols}


def contract_from(sym: str, p: dict[str, Any]) -> Contract:
    """The book's contract from a KuCoin-shaped payload (kept as it is: the API serves it)."""
    return Contract(
        symbol=sym,
        multiplier=Decimal(str(p["multiplier"])),
        lot_size=int(p["lotSize"]),
        tick_size=Decimal(str(p["tickSize"])),
        max_leverage=int(p["maxLeverage"]),
        maker_fee=Decimal(str(p.get("makerFeeRate", "0.0002"))),
        taker_fee=Decimal(str(p.get("takerFeeRate", "0.0006"))),
        mmr=Decimal(str(p.get("maintainMargin", "0.005"))),
        payload=p,
    )


# Endpoint → (pool, weight, private); reference §4.8.
ROUTES: dict[tuple[str, str], tuple[str, int, bool]] = {}


LOOPBACK = ("127.0.0.1", "::1")
DEFAULT_BOOK_LEVELS = 50  # levels each side of the synthetic level-2 book
DEFAULT_LEVEL_LOTS = 1000  # lots at each of them (the ticker's best sizes)


def route(method: str, path: str, pool: str, weight: int, private: bool) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        ROUTES[(method, path)] = (pool, weight, private)
        fn.__route__ = (method, path)  # type: ignore[attr-defined]
        return fn

    return deco


class SimulatorServer:
    """Run in-process (tests, paper mode) or standalone (``python -m exchange.simulator``)."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = cfg = config or SimulatorConfig()
        contracts_file = cfg.contracts_file or DEFAULT_CONTRACTS
        self.state = Book(
            contracts=load_contracts(contracts_file, cfg.symbols),
            balance=cfg.initial_balance,
            market_slippage=cfg.market_slippage,
            funding_rate=cfg.funding_rate,
            clock=cfg.clock,
        )
        self.keys = {cfg.api_key: ApiKey(cfg.api_key, cfg.api_secret, cfg.api_passphrase, cfg.key_permissions)}
        self.faults = FaultInjector()
        self.pools: dict[str, tuple[int, int]] = {}  # pool -> (window start, used)
        self.tokens: dict[str, tuple[bool, int]] = {}  # token -> (private, epoch)
        self.sockets: set[web.WebSocketResponse] = set()
        self.subscriptions: dict[web.WebSocketResponse, set[str]] = {}
        self.pushed = 0  # topic messages sent to subscribers (a max-speed replay waits until they are read)
        self.uplink_refused = 0  # client messages refused for going over the uplink rate
        self.state.listeners.append(self._on_event)
        self._runner: web.AppRunner | None = None
        self.rest_url = ""
        self.requests: list[tuple[str, str]] = []
        self.ws_connect_queries: list[str] = []  # raw query strings of WebSocket connects, as received
        self._pending_ws: list[tuple[web.WebSocketResponse, dict[str, Any]]] = []
        self._sends: set[asyncio.Task[None]] = set()  # pushes in flight (a reference, so none is collected early)
        self.candles: dict[tuple[str, int], list[list[float]]] = {}
        self.cross_leverage: dict[str, int] = {}
        # Test hooks for the microstructure the avoid-entry filter reads: a symbol's ticker width in ticks each side,
        # its current funding rate, and trades of other traders on its tape ({"ts_ms", "size", "price", "side"}).
        self.quote_ticks: dict[str, int] = {}
        # An unknown clientOid: the reference documents 100004; KuCoin has also been seen to answer success with
        # ``"data": null``. True answers the second way.
        self.unknown_order_as_null = False
        self.system_status = "open"  # what GET /api/v1/status reports: open | close (maintenance) | cancelonly
        self.delisted: set[str] = set()  # contracts gone from both contract endpoints (set_contract listed=False)
        # Whether /api/v1/contracts/active lists a contract that is not Open is not documented: True leaves such
        # contracts out of it (``/api/v1/contracts/{symbol}`` still answers them with their status).
        self.active_lists_open_only = False
        self.funding_rates: dict[str, Decimal] = {}
        self.public_trades: dict[str, list[dict[str, Any]]] = {}
        # A symbol's level-2 book as ([[price, lots], ...] bids high→low, asks low→high); without one the book is
        # the ticker's best bid and ask and DEFAULT_BOOK_LEVELS - 1 levels a tick apart behind each, all of
        # DEFAULT_LEVEL_LOTS (balanced: the shadow score's order-book analyzer reads it as neutral).
        self.books: dict[str, tuple[list[list[Any]], list[list[Any]]]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        for name in dir(self):
            fn = getattr(self, name)
            spec = getattr(fn, "__route__", None)
            if spec is not None:
                app.router.add_route(spec[0], spec[1], fn)
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/sim/price", self._admin_price)
        app.router.add_post("/sim/contract", self._admin_contract)
        return app

    async def _admin_contract(self, request: web.Request) -> web.Response:
        """Test/operator hook, loopback only: KuCoin changes a contract under a running bot. Body: ``symbol``, then
        any of ``fields`` (KuCoin payload fields merged into the contract, e.g. ``{"status": "Paused"}`` or
        ``{"tickSize": 0.1}``) and ``listed`` (false: gone from ``/api/v1/contracts/active``, as a delisting)."""
        body = await request.json()
        try:
            self.set_contract(str(body["symbol"]), dict(body.get("fields") or {}), listed=body.get("listed"))
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response({"ok": True})

    def set_contract(self, symbol: str, fields: dict[str, Any], *, listed: bool | None = None) -> None:
        """Merge ``fields`` into ``symbol``'s published payload. The book trades on the new numbers when they
        parse; a malformed value (``"tickSize": "abc"``) is published as it is while the book keeps the last good
        ones, so a client can be shown one bad row. ``listed=False`` hides it from the active listing."""
        c = self.state.contracts[symbol]
        payload = {**c.payload, **fields}
        try:
            fresh = contract_from(symbol, payload)
            if fresh.tick_size <= 0 or fresh.multiplier <= 0 or fresh.lot_size < 1:
                raise ValueError("not positive")
            self.state.contracts[symbol] = fresh
        except (ArithmeticError, ValueError, TypeError, KeyError):
            c.payload = payload  # garbage for clients; the book's numbers stay
        if listed is not None:
            if listed:
                self.delisted.discard(symbol)
            else:
                self.delisted.add(symbol)

    async def _admin_price(self, request: web.Request) -> web.Response:
        """Test/operator hook, loopback only (the middleware) and outside KuCoin's API: move a standalone market."""
        body = await request.json()
        mark = body.get("mark")
        self.set_price(str(body["symbol"]), Decimal(str(body["last"])), None if mark is None else Decimal(str(mark)))
        return web.json_response({"ok": True})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = port
        for addr in self._runner.addresses:
            if isinstance(addr, tuple):
                bound = int(addr[1])
        self.rest_url = f"http://{host}:{bound}"

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def set_price(
        self,
        symbol: str,
        last: Decimal,
        mark: Decimal | None = None,
        index: Decimal | None = None,
        *,
        ts_ms: int | None = None,
        swept: bool = False,
    ) -> None:
        """Move the market; funding instants passed (by ``ts_ms`` in a replay, else the clock) are settled.
        ``swept``: the price moved through every level on the way (see ``Book.set_price``)."""
        self.state.set_price(symbol, Decimal(last), mark, index, ts_ms=ts_ms, swept=swept)

    def push_candle(self, symbol: str, timeframe: str, candle: Any, *, final: bool = True) -> None:
        """Push a candle on the limitCandle topic; a ``final`` one (closed) is also kept for ``/api/v1/kline/query``."""
        from engine.models import timeframe_ms

        if final:
            minutes = timeframe_ms(timeframe) // 60_000
            row = [candle.ts, candle.open, candle.high, candle.low, candle.close, candle.volume]
            self.candles.setdefault((symbol, minutes), []).append(row)
        self._publish(
            f"/contractMarket/limitCandle:{symbol}_{timeframe}",
            "candle.stick",
            {
                "symbol": symbol,
                # Wire order (reference §5.5.3): start in seconds, open, CLOSE, high, low, x5, x6.
                "candles": [
                    str(candle.ts // 1000),
                    str(candle.open),
                    str(candle.close),
                    str(candle.high),
                    str(candle.low),
                    str(candle.volume),
                    str(candle.volume),
                ],
                "time": self.config.clock(),
            },
            False,
        )

    def run_funding(self, ts_ms: int) -> None:
        self.state.settle_funding(ts_ms)

    def save_state(self, path: Path) -> None:
        path.write_text(dumps(self.state.snapshot()))

    def load_state(self, path: Path) -> None:
        self.state.restore(json.loads(path.read_text()))

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/sim/") and request.remote not in LOOPBACK:
            # Test/operator hooks outside KuCoin's API move the market: never from another machine.
            return web.json_response({"error": "loopback only"}, status=403)
        if request.path == "/ws" or request.path.startswith("/sim/"):
            result: web.StreamResponse = await handler(request)
            return result
        self.requests.append((request.method, request.path_qs))
        faults = self.faults
        if faults.latency_ms and request.path.startswith(faults.latency_prefix):
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.take("rate_limit_remaining"):
            if faults.rate_limit_code == "200002":
                return self._error("200002", "Too many requests in a short period of time, please retry later", 200)
            return self._error("429000", "Too Many Requests", 429, headers={"gw-ratelimit-reset": "200"})
        if request.path.startswith(faults.server_error_prefix) and faults.take("server_error_remaining"):
            return self._error("500000", "Internal Server Error", 503)
        spec = self._route_spec(request)
        if spec is None:
            return self._error("404000", "Url Not Found", 404)
        pool, weight, private = spec
        body = await request.read()
        if body and request.content_type != "application/json":  # §2.1: a body needs Content-Type JSON
            return self._error("415000", "Unsupported Media Type", 415)
        if private:
            headers = {k: v for k, v in request.headers.items() if k.upper().startswith("KC-API")}
            failure = verify(
                self.keys,
                {k.upper(): v for k, v in headers.items()},
                request.method,
                request.raw_path,
                body,
                self.config.clock(),
            )
            if failure is not None:
                status = 400 if failure[0] == "400002" else 401
                return self._error(failure[0], failure[1], status, headers=self._ratelimit_headers(pool))
            request[API_KEY] = self.keys[request.headers["KC-API-KEY"]]
        limited = self._charge(pool, weight)
        if limited is not None:
            return limited
        response = await self._execute(request, handler, body)
        if response.content_type == "application/json":  # not on a gateway's HTML error page
            response.headers.update(self._ratelimit_headers(pool))
        return response

    def _ratelimit_headers(self, pool: str) -> dict[str, str]:
        """Reference §3.3: ``gw-ratelimit-limit``/``-remaining``/``-reset`` (ms to the window's end) on every REST
        response of a pool, success or error. The reset was only sent with a 429, so a client's budget that
        follows it could not be exercised against the simulator."""
        quota, window = self.config.rate_limit_quota, self.config.rate_limit_window_ms
        now = self.config.clock()
        start, used = self.pools.get(pool, (now, 0))
        if now - start >= window:
            start, used = now, 0
        return {
            "gw-ratelimit-limit": str(quota),
            "gw-ratelimit-remaining": str(max(0, quota - used)),
            "gw-ratelimit-reset": str(max(0, window - (now - start))),
        }

    async def _execute(self, request: web.Request, handler: Handler, body: bytes) -> web.StreamResponse:
        """Parse the body, apply the reply faults and run the endpoint: a response in KuCoin's envelope."""
        faults = self.faults
        try:
            payload = json.loads(body) if body else {}
        except json.JSONDecodeError:
            return self._error("400100", "request body is not valid JSON", 400)
        request[JSON_BODY] = payload
        lose = faults.lose_reply_remaining and request.path.startswith(faults.lose_reply_prefix)
        if faults.delay_remaining and request.path.startswith(faults.delay_prefix) and faults.take("delay_remaining"):
            await asyncio.sleep(faults.delay_ms / 1000)
        gateway = faults.gateway_timeout_remaining and request.path.startswith(faults.gateway_timeout_prefix)
        if gateway and faults.take("gateway_timeout_remaining"):

            async def later() -> None:
                await asyncio.sleep(faults.gateway_timeout_ms / 1000)
                with contextlib.suppress(SimError):
                    await handler(request)

            self._spawn(later(), "sim-late-execution")
            return web.Response(status=504, text="<html>504 Gateway Time-out</html>", content_type="text/html")
        try:
            data = await handler(request)
        except SimError as exc:
            return self._error(exc.code, exc.message, exc.http_status)
        garble = faults.garble_reply_remaining and request.path.startswith(faults.garble_reply_prefix)
        if garble and faults.take("garble_reply_remaining"):
            if faults.garble_reply_kind == "truncated":
                return web.Response(text='{"code":"200000","data":{"orderId":"23', content_type="application/json")
            if faults.garble_reply_kind.startswith("null:") and isinstance(data, dict):
                nulled = {**data, faults.garble_reply_kind.removeprefix("null:"): None}
                return web.json_response({"code": "200000", "data": nulled}, dumps=_json_dumps)
            if faults.garble_reply_kind == "not_object":  # data of the wrong shape: a list where an object belongs
                return web.json_response({"code": "200000", "data": ["garbled"]})
            return web.json_response({"code": "200000", "msg": "success"})  # executed, but no data
        if lose and faults.take("lose_reply_remaining"):
            # Executed, but the reply never arrives: the connection drops.
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable
        return web.json_response({"code": "200000", "data": data}, dumps=_json_dumps)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """A background task of the simulator's (a late execution), referenced until done."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _route_spec(self, request: web.Request) -> tuple[str, int, bool] | None:
        match = request.match_info.route.resource
        canonical = match.canonical if match is not None else request.path
        return ROUTES.get((request.method, canonical))

    def _charge(self, pool: str, weight: int) -> web.Response | None:
        now = self.config.clock()
        start, used = self.pools.get(pool, (now, 0))
        if now - start >= self.config.rate_limit_window_ms:
            start, used = now, 0
        if used + weight > self.config.rate_limit_quota:
            return self._error("429000", "Too Many Requests", 429, headers=self._ratelimit_headers(pool))
        self.pools[pool] = (start, used + weight)
        return None

    @staticmethod
    def _error(code: str, msg: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)

    def _require_futures(self, request: web.Request) -> None:
        key: ApiKey = request[API_KEY]
        if "futures" not in {p.lower() for p in key.permissions}:
            raise SimError("400007", "Access denied, require more permission.", 401)

    # ------------------------------------------------------------------ public endpoints

    @route("GET", "/api/v1/timestamp", "public", 2, False)
    async def timestamp(self, request: web.Request) -> Any:
        return self.config.clock()

    @route("GET", "/api/v1/status", "public", 4, False)
    async def status(self, request: web.Request) -> Any:
        return {"status": self.system_status, "msg": "" if self.system_status == "open" else "system maintenance"}

    @route("GET", "/api/v1/contracts/active", "public", 3, False)
    async def contracts_active(self, request: web.Request) -> Any:
        return [
            self._contract_api(c)
            for c in self.state.contracts.values()
            if c.symbol not in self.delisted
            and (not self.active_lists_open_only or c.payload.get("status", "Open") == "Open")
        ]

    @route("GET", "/api/v1/contracts/{symbol}", "public", 3, False)
    async def contract_one(self, request: web.Request) -> Any:
        symbol = request.match_info["symbol"]
        if symbol in self.delisted:
            raise SimError("100003", f"Contract parameter invalid: {symbol}")
        return self._contract_api(self.state.contract(symbol))

    def _contract_api(self, c: Contract) -> dict[str, Any]:
        data = dict(c.payload)
        p = self.state.prices.get(c.symbol)
        if p is not None:
            data.update(markPrice=float(p.mark), indexPrice=float(p.index), lastTradePrice=float(p.last))
        band = self.state.price_band(c.symbol)
        if band is not None:  # the recorded snapshot's band belongs to another price: publish the one enforced
            data.update(buyLimit=float(band[0]), sellLimit=float(band[1]))
        return data

    @route("GET", "/api/v1/ticker", "public", 2, False)
    async def ticker(self, request: web.Request) -> Any:
        sym = request.query.get("symbol", "")
        c = self.state.contract(sym)
        p = self.state.price(sym)
        half = c.tick_size * self.quote_ticks.get(sym, 1)
        return {
            "sequence": len(self.state.fills),
            "symbol": sym,
            "side": "buy",
            "size": 1,
            "tradeId": "0",
            "price": str(p.last),
            "bestBidPrice": str(p.last - half),
            "bestBidSize": 1000,
            "bestAskPrice": str(p.last + half),
            "bestAskSize": 1000,
            "ts": self.config.clock() * 1_000_000,
        }

    @route("GET", "/api/v1/level2/depth20", "public", 5, False)
    async def level2_depth20(self, request: web.Request) -> Any:
        return self._level2(request.query.get("symbol", ""), 20)

    @route("GET", "/api/v1/level2/depth100", "public", 5, False)
    async def level2_depth100(self, request: web.Request) -> Any:
        return self._level2(request.query.get("symbol", ""), 100)

    def _level2(self, sym: str, depth: int) -> dict[str, Any]:
        """The top ``depth`` levels each side (reference §4.1.5): numbers for prices, integer lots, ``ts`` in ns."""
        c = self.state.contract(sym)
        book = self.books.get(sym)
        if book is None:
            p = self.state.price(sym)
            half = c.tick_size * self.quote_ticks.get(sym, 1)
            levels = range(DEFAULT_BOOK_LEVELS)
            bids = [[float(p.last - half - i * c.tick_size), DEFAULT_LEVEL_LOTS] for i in levels]
            asks = [[float(p.last + half + i * c.tick_size), DEFAULT_LEVEL_LOTS] for i in levels]
        else:
            bids, asks = book
        return {
            "sequence": len(self.state.fills),
            "symbol": sym,
            "bids": bids[:depth],
            "asks": asks[:depth],
            "ts": self.config.clock() * 1_000_000,
        }

    @route("GET", "/api/v1/trade/history", "public", 5, False)
    async def trade_history(self, request: web.Request) -> Any:
        """The last 100 public trades, newest first (§4.1.6). The simulated market has no other traders, and a tape
        of only the bot's own market orders would be one-sided by construction (the avoid-entry filter would then
        refuse every entry after the first), so the tape holds only what ``public_trades`` is given."""
        sym = request.query.get("symbol", "")
        self.state.contract(sym)
        tape = sorted(self.public_trades.get(sym, []), key=lambda t: int(t["ts_ms"]), reverse=True)[:100]
        return [
            {
                "sequence": n,
                "tradeId": str(t.get("id", n)),
                "makerOrderId": "0",
                "takerOrderId": "0",
                "ts": int(t["ts_ms"]) * 1_000_000,
                "size": int(t["size"]),
                "price": str(t["price"]),
                "side": t["side"],
            }
            for n, t in enumerate(tape, start=1)
        ]

    @route("GET", "/api/v1/funding-rate/{symbol}/current", "public", 2, False)
    async def funding_rate_current(self, request: web.Request) -> Any:
        """The current cycle's rate (§4.1.10); ``symbol`` in the answer is the rate index, as KuCoin's is."""
        sym = request.match_info["symbol"]
        self.state.contract(sym)
        rate = self.funding_rates.get(sym, self.state.funding_rate)
        now = self.config.clock()
        cycle = 8 * 3_600_000
        next_settle = ((now - 4 * 3_600_000) // cycle + 1) * cycle + 4 * 3_600_000  # 04:00, 12:00, 20:00 UTC
        return {
            "symbol": f".{sym}FPI8H",
            "granularity": cycle,
            "timePoint": next_settle - cycle,
            "value": float(rate),
            "predictedValue": float(rate),
            "fundingRateCap": 0.003,
            "fundingRateFloor": -0.003,
            "period": 0,
            "fundingTime": next_settle,
        }

    @route("GET", "/api/v1/mark-price/{symbol}/current", "public", 3, False)
    async def mark_price(self, request: web.Request) -> Any:
        sym = request.match_info["symbol"]
        p = self.state.price(sym)
        return {
            "symbol": sym,
            "granularity": 1000,
            "timePoint": self.config.clock(),
            "value": float(p.mark),
            "indexPrice": float(p.index),
        }

    @route("GET", "/api/v1/kline/query", "public", 3, False)
    async def klines(self, request: web.Request) -> Any:
        q = request.query
        sym = q.get("symbol", "")
        self.state.contract(sym)
        try:
            gran = int(q.get("granularity", ""))
            start = int(q["from"]) if "from" in q else None
            end = int(q["to"]) if "to" in q else None
        except ValueError:
            raise SimError("100001", "granularity, from and to must be integers") from None
        if gran not in KLINE_GRANULARITIES:  # §4.1.3: no 3, no month; anything else is refused, not empty
            raise SimError("100001", f"granularity must be one of {', '.join(map(str, KLINE_GRANULARITIES))}")
        rows = self.candles.get((sym, gran), [])
        picked = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
        return picked[:500] if start is not None else picked[-500:]

    @route("POST", "/api/v1/bullet-public", "public", 10, False)
    async def bullet_public(self, request: web.Request) -> Any:
        return self._bullet(private=False, request=request)

    # ------------------------------------------------------------------ private endpoints

    @route("POST", "/api/v1/bullet-private", "futures", 10, True)
    async def bullet_private(self, request: web.Request) -> Any:
        return self._bullet(private=True, request=request)

    def _bullet(self, *, private: bool, request: web.Request) -> dict[str, Any]:
        # The shape of KuCoin's tokens (reference §4.7): URL-safe base64 with "=" padding, a ".", a padded tail.
        token = f"{base64.urlsafe_b64encode(secrets.token_bytes(71)).decode()}.{secrets.token_urlsafe(16)}=="
        self.tokens[token] = (private, self.faults.token_epoch)
        host = request.host
        return {
            "token": token,
            "instanceServers": [
                {
                    "endpoint": f"ws://{host}/ws",
                    "encrypt": False,
                    "protocol": "websocket",
                    "pingInterval": self.config.ws_ping_interval_ms,
                    "pingTimeout": self.config.ws_ping_timeout_ms,
                }
            ],
        }

    @route("GET", "/api/v1/user/api-key", "management", 20, True)
    async def api_key_info(self, request: web.Request) -> Any:
        key: ApiKey = request[API_KEY]
        return {
            "remark": "simulator",
            "apiKey": key.key,
            "apiVersion": self.config.key_version,
            "permission": ",".join(key.permissions),
            "ipWhitelist": self.config.ip_whitelist,
            "createdAt": 0,
            "uid": 1,
            "isMaster": True,
        }

    @route("GET", "/api/v1/account-overview", "futures", 5, True)
    async def account_overview(self, request: web.Request) -> Any:
        """Reference §4.2.1: without ``currency=USDT`` KuCoin answers for the default currency, XBT — an empty
        account for a USDT trader. The simulator answered USDT whatever was asked."""
        currency = request.query.get("currency", "XBT")
        if currency != "USDT":
            zero = {k: 0.0 for k in ("accountEquity", "unrealisedPNL", "marginBalance", "positionMargin")}
            return zero | {"orderMargin": 0.0, "frozenFunds": 0.0, "availableBalance": 0.0, "currency": currency}
        st = self.state
        upnl = sum((st.unrealised(p) for p in st.positions.values() if p.qty), Decimal(0))
        pos_margin, order_margin = st.position_margin_total(), st.order_margin_total()
        return {
            "accountEquity": float(st.balance + upnl),
            "unrealisedPNL": float(upnl),
            "marginBalance": float(st.balance),
            "positionMargin": float(pos_margin),
            "orderMargin": float(order_margin),
            "frozenFunds": 0.0,
            "availableBalance": float(st.available()),
            "currency": "USDT",
        }

    def _position_api(self, pos: Position) -> dict[str, Any]:
        st = self.state
        symbol = pos.symbol
        c = st.contract(symbol)
        base = {
            "symbol": symbol,
            "currentQty": pos.qty,
            "isOpen": pos.qty != 0,
            "marginMode": st.margin_modes.get(symbol, "ISOLATED"),
            "positionSide": pos.position_side,
            "settleCurrency": "USDT",
            "crossMode": st.margin_modes.get(symbol) == "CROSS",
        }
        if not pos.qty:
            # Stamped and with what the closed position realised, as KuCoin's (§5.6.3 lists currentTimestamp on every
            # push): without them every close push was the same text, and the client's dedupe of repeated pushes
            # dropped a symbol's second close, so the engine kept managing (and moving the stop of) a flat position.
            return base | {
                "id": f"5000000{pos.key}",
                "openingTimestamp": pos.opened_at,
                "currentTimestamp": self.config.clock(),
                "currentCost": 0,
                "posCost": 0,
                "unrealisedPnl": 0,
                "realisedGrossPnl": float(pos.realised_gross),
                "realisedPnl": float(pos.realised_pnl),
                "avgEntryPrice": 0,
            }
        mark = st.price(symbol).mark
        qty = abs(pos.qty) * c.multiplier
        liq = st.liquidation_price(pos)
        # Reference §4.3.1: posComm reserves the closing fee, posMargin = posInit + posComm (+ posCross − posLoss).
        # Isolated, KuCoin's ``leverage`` is margin-derived (its example: 4.9685590767 for a 5x order), not the
        # order's integer; cross, it is the symbol's cross leverage.
        comm = ((abs(pos.cost) + pos.margin) * c.taker_fee).quantize(Decimal("0.00000001"))
        isolated = st.margin_modes.get(symbol, "ISOLATED") == "ISOLATED"
        real = abs(pos.cost) / (pos.margin + comm)
        return base | {
            "id": f"5000000{pos.key}",
            "leverage": float(real) if isolated else pos.leverage,
            "realLeverage": float(real),
            "posComm": float(comm),
            "openingTimestamp": pos.opened_at,
            "currentTimestamp": self.config.clock(),
            "currentCost": float(pos.cost),
            "posCost": float(pos.cost),
            "posInit": float(pos.margin),
            "posMargin": float(pos.margin),  # without posComm: the liquidation price here ignores fees
            "maintMarginReq": float(c.mmr),
            "markPrice": float(mark),
            "markValue": float(mark * pos.qty * c.multiplier),
            "unrealisedPnl": float(st.unrealised(pos)),
            "realisedGrossPnl": float(pos.realised_gross),
            "realisedPnl": float(pos.realised_pnl),
            "avgEntryPrice": float(abs(pos.cost) / qty),
            "liquidationPrice": None if liq is None else float(liq),
        }

    @route("GET", "/api/v2/position", "futures", 2, True)
    async def position_v2(self, request: web.Request) -> Any:
        sym = request.query.get("symbol", "")
        self.state.contract(sym)
        return [self._position_api(p) for p in self.state.symbol_positions(sym) if p.qty]

    @route("GET", "/api/v1/position", "futures", 2, True)
    async def position(self, request: web.Request) -> Any:
        sym = request.query.get("symbol", "")
        self.state.contract(sym)
        live = [p for p in self.state.symbol_positions(sym) if p.qty]
        return self._position_api(live[0] if live else self.state.position(sym))

    @route("GET", "/api/v1/positions", "futures", 2, True)
    async def positions(self, request: web.Request) -> Any:
        return [self._position_api(p) for _, p in sorted(self.state.positions.items()) if p.qty]

    @route("GET", "/api/v2/position/getPositionMode", "futures", 2, True)
    async def get_position_mode(self, request: web.Request) -> Any:
        return {"positionMode": self.state.position_mode}

    @route("POST", "/api/v2/position/switchPositionMode", "futures", 2, True)
    async def switch_position_mode(self, request: web.Request) -> Any:
        self._require_futures(request)
        mode = str(request[JSON_BODY].get("positionMode", ""))
        if mode not in ("0", "1"):
            raise SimError("100001", 'positionMode must be "0" or "1"')
        if any(p.qty for p in self.state.positions.values()) or self.state.open_orders():
            raise SimError("300000", "cannot switch position mode with open positions or orders")
        self.state.position_mode = int(mode)
        return {"positionMode": mode}

    @route("GET", "/api/v2/position/getMarginMode", "futures", 2, True)
    async def get_margin_mode(self, request: web.Request) -> Any:
        sym = request.query.get("symbol", "")
        self.state.contract(sym)
        return {"symbol": sym, "marginMode": self.state.margin_modes.get(sym, "ISOLATED")}

    @route("POST", "/api/v2/position/changeMarginMode", "futures", 2, True)
    async def change_margin_mode(self, request: web.Request) -> Any:
        self._require_futures(request)
        body = request[JSON_BODY]
        sym, mode = str(body.get("symbol", "")), str(body.get("marginMode", ""))
        self.state.contract(sym)
        if mode not in ("ISOLATED", "CROSS"):
            raise SimError("100001", "marginMode must be ISOLATED or CROSS")
        if any(p.qty for p in self.state.symbol_positions(sym)) or self.state.open_orders(sym):
            raise SimError("50002", "exist.order.or.position")
        self.state.margin_modes[sym] = mode
        return {"symbol": sym, "marginMode": mode}

    @route("GET", "/api/v2/getCrossUserLeverage", "futures", 2, True)
    async def get_cross_leverage(self, request: web.Request) -> Any:
        sym = request.query.get("symbol", "")
        self.state.contract(sym)
        return {"symbol": sym, "leverage": str(self.cross_leverage.get(sym, 3))}

    @route("POST", "/api/v2/changeCrossUserLeverage", "futures", 2, True)
    async def change_cross_leverage(self, request: web.Request) -> Any:
        self._require_futures(request)
        body = request[JSON_BODY]
        sym = str(body.get("symbol", ""))
        c = self.state.contract(sym)
        try:
            lev = int(str(body.get("leverage", "")))
        except ValueError:
            raise SimError("100001", "leverage must be an integer") from None
        if not 1 <= lev <= c.max_leverage:
            raise SimError("300016", f"leverage must be between 1 and {c.max_leverage}")
        self.cross_leverage[sym] = lev
        return True

    @route("POST", "/api/v1/orders", "futures", 2, True)
    async def place_order(self, request: web.Request) -> Any:
        self._require_futures(request)
        body = request[JSON_BODY]
        lag = not body.get("stop") and self.faults.take("match_lag_remaining")
        order = self.state.place(body, defer=lag)
        if lag:
            oid, delay = order.id, self.faults.match_lag_ms / 1000

            async def match() -> None:
                await asyncio.sleep(delay)
                self.state.match_deferred(oid)

            self._spawn(match(), "sim-late-match")
        return {"orderId": order.id, "clientOid": order.client_oid}

    @route("POST", "/api/v1/orders/test", "futures", 2, True)
    async def place_order_test(self, request: web.Request) -> Any:
        self._require_futures(request)
        order = self.state.place(request[JSON_BODY], validate_only=True)
        return {"orderId": order.id, "clientOid": order.client_oid}

    @route("POST", "/api/v1/st-orders", "futures", 2, True)
    async def place_st_order(self, request: web.Request) -> Any:
        """Entry plus reduce-only TP/SL stop-market legs, one-cancels-the-other (reference §4.4.3 model)."""
        self._require_futures(request)
        raw: dict[str, Any] = request[JSON_BODY]
        body = dict(raw)
        # §4.4.3: the trigger prices are strings like every price (checked before anything is placed).
        up, down = price_field(body, "triggerStopUpPrice"), price_field(body, "triggerStopDownPrice")
        body.pop("triggerStopUpPrice", None), body.pop("triggerStopDownPrice", None)
        ptype = body.pop("stopPriceType", "TP")
        entry = self.state.place(body)
        exit_side = "sell" if entry.side == "buy" else "buy"
        for direction, trigger in (("up", up), ("down", down)):
            if trigger is None:
                continue
            leg = self.state.place(
                {
                    "clientOid": f"{entry.client_oid[:30]}-{direction}",
                    "symbol": entry.symbol,
                    "side": exit_side,
                    "type": "market",
                    "size": entry.size,
                    "reduceOnly": True,
                    "stop": direction,
                    "stopPrice": str(trigger),
                    "stopPriceType": ptype,
                    "marginMode": entry.margin_mode,
                }
            )
            leg.bracket_of = entry.id
        return {"orderId": entry.id, "clientOid": entry.client_oid}

    @route("DELETE", "/api/v1/orders/{orderId}", "futures", 1, True)
    async def cancel_order(self, request: web.Request) -> Any:
        self._require_futures(request)
        return {"cancelledOrderIds": [self.state.cancel(request.match_info["orderId"]).id]}

    @route("DELETE", "/api/v1/orders/client-order/{clientOid}", "futures", 1, True)
    async def cancel_by_client_oid(self, request: web.Request) -> Any:
        self._require_futures(request)
        if not request.query.get("symbol"):
            raise SimError("100001", "symbol is required")
        order = self.state.by_client_oid(request.match_info["clientOid"])
        if order is None or order.symbol != request.query["symbol"]:
            raise SimError("100004", "The order cannot be canceled")
        self.state.cancel(order.id)
        return {"clientOid": order.client_oid}

    @route("DELETE", "/api/v3/orders", "futures", 10, True)
    async def cancel_all(self, request: web.Request) -> Any:
        self._require_futures(request)
        sym = request.query.get("symbol")
        if not sym:
            raise SimError("100001", "symbol is required")
        return {"cancelledOrderIds": self.state.cancel_all(sym, stops=False)}

    @route("DELETE", "/api/v1/stopOrders", "futures", 15, True)
    async def cancel_all_stops(self, request: web.Request) -> Any:
        self._require_futures(request)
        return {"cancelledOrderIds": self.state.cancel_all(request.query.get("symbol", ""), stops=True)}

    def _order_api(self, order: Order) -> dict[str, Any]:
        return order.to_api(self.state.contracts[order.symbol].multiplier)

    @route("GET", "/api/v1/orders/byClientOid", "futures", 5, True)
    async def order_by_client_oid(self, request: web.Request) -> Any:
        order = self.state.by_client_oid(request.query.get("clientOid", ""))
        if order is None or self.faults.take("order_lag_remaining"):
            if self.unknown_order_as_null:
                return None
            raise SimError("100004", "order not found")
        return self._order_api(order)

    @route("GET", "/api/v1/orders/{orderId}", "futures", 5, True)
    async def order_by_id(self, request: web.Request) -> Any:
        order = self.state.orders.get(request.match_info["orderId"])
        if order is None or self.faults.take("order_lag_remaining"):
            raise SimError("100004", "order not found")
        return self._order_api(order)

    @route("GET", "/api/v1/orders", "futures", 2, True)
    async def list_orders(self, request: web.Request) -> Any:
        status = request.query.get("status", "done")
        sym = request.query.get("symbol")
        items = [
            o
            for o in self.state.orders.values()
            if (sym is None or o.symbol == sym)
            and not o.is_stop_pending
            and (o.status == "open") == (status == "active")
        ]
        return _page([self._order_api(o) for o in items], request.query)

    @route("GET", "/api/v1/stopOrders", "futures", 6, True)
    async def list_stop_orders(self, request: web.Request) -> Any:
        sym = request.query.get("symbol")
        items = [o for o in self.state.open_orders(sym) if o.is_stop_pending]
        return _page([self._order_api(o) for o in items], request.query)

    @route("GET", "/api/v1/fills", "futures", 5, True)
    async def fills(self, request: web.Request) -> Any:
        """Newest first, in pages like KuCoin's: ``pageSize`` 50 by default (at most 1000), ``currentPage``,
        ``startAt``/``endAt`` in ms. A client reading only the first page misses older fills."""
        q = request.query
        oid, sym = q.get("orderId"), q.get("symbol")
        start, end = _ints(q, ("startAt", 0), ("endAt", 2**62))
        listed = self.state.fills
        if self.faults.take("stale_fills_remaining"):
            listed = listed[: self.faults.stale_fills_upto]  # the newest fills not in the history yet
        items = [
            f.to_api(with_position_side=self.state.fills_position_side)
            for f in reversed(listed)
            if (oid is None or f.order_id == oid)
            and (sym is None or f.symbol == sym)
            and (oid is not None or start <= f.ts_ms <= end)
        ]
        return _page(items, q)

    @route("GET", "/api/v1/history-positions", "futures", 2, True)
    async def history_positions(self, request: web.Request) -> Any:
        """Closed positions, newest first (reference §4.3.1): ``symbol``, ``from``/``to`` on closeTime (ms),
        ``limit`` (at most 200, 10 by default), ``pageId`` (the page, from 1)."""
        q = request.query
        sym = q.get("symbol")
        start, end, limit, page = _ints(q, ("from", 0), ("to", 2**62), ("limit", 10), ("pageId", 1))
        limit, page = max(1, min(limit, 200)), max(1, page)
        items = [
            r.to_api()
            for r in reversed(self.state.closed)
            if (not sym or r.symbol == sym) and start <= r.close_time <= end
        ]
        return {
            "currentPage": page,
            "pageSize": limit,
            "totalNum": len(items),
            "totalPage": max(1, -(-len(items) // limit)),
            "items": items[(page - 1) * limit : page * limit],
        }

    @route("GET", "/api/v1/funding-history", "futures", 5, True)
    async def funding_history(self, request: web.Request) -> Any:
        """Newest first, at most ``maxCount`` (10 by default, as KuCoin) between ``startAt`` and ``endAt``, with
        ``hasMore`` when more records lie in that range."""
        q = request.query
        sym = q.get("symbol", "")
        start, end, count = _ints(q, ("startAt", 0), ("endAt", 2**62), ("maxCount", 10))
        count = max(1, min(count, 100))
        items = [
            {
                "id": r.id,
                "symbol": r.symbol,
                "timePoint": r.time_point,
                "fundingRate": float(r.funding_rate),
                "markPrice": float(r.mark_price),
                "positionQty": r.position_qty,
                "positionCost": float(r.position_cost),
                "funding": float(r.funding),
                "settleCurrency": "USDT",
                "context": json.dumps({"marginMode": "ISOLATED", "positionSide": r.position_side}),
                "marginMode": "ISOLATED",
            }
            for r in reversed(self.state.funding)
            if r.symbol == sym and start <= r.time_point <= end
        ]
        return {"dataList": items[:count], "hasMore": len(items) > count}

    # ------------------------------------------------------------------ websocket

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        token = _raw_query_value(request.rel_url.raw_query_string, "token")
        self.ws_connect_queries.append(request.rel_url.raw_query_string)
        issued = self.tokens.get(token) if token is not None else None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if issued is None or issued[1] != self.faults.token_epoch:
            await ws.send_json(
                {"id": request.query.get("connectId", ""), "type": "error", "code": 401, "data": "token is expired"}
            )
            await ws.close()
            return ws
        private = issued[0]
        if self.faults.take("ws_bad_welcome_remaining"):
            await ws.send_str("<html>502 Bad Gateway</html>")  # a proxy's page instead of the welcome
            await ws.close()
            return ws
        self.sockets.add(ws)
        self.subscriptions[ws] = set()
        await ws.send_json({"id": request.query.get("connectId", ""), "type": "welcome"})
        limit, window = self.config.ws_uplink_limit
        uplink: deque[float] = deque()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    await ws.send_json({"type": "error", "code": 400, "data": "malformed message"})
                    continue
                now = time.monotonic()
                while uplink and now - uplink[0] >= window:
                    uplink.popleft()
                uplink.append(now)
                if len(uplink) > limit:  # §5.3: 509 "too many messages"; the message is not carried out
                    self.uplink_refused += 1
                    refusal = {"id": data.get("id"), "type": "error", "code": 509, "data": "too many messages"}
                    await ws.send_json(refusal)
                    continue
                kind = data.get("type")
                if self.faults.ws_silent:
                    continue  # a half-dead link: the socket is open, nothing comes back
                if kind == "ping":
                    await ws.send_json({"id": data.get("id"), "type": "pong", "timestamp": self.config.clock() * 1000})
                elif kind in ("subscribe", "unsubscribe"):
                    topic = str(data.get("topic", ""))
                    if (data.get("privateChannel") or _is_private_topic(topic)) and not private:
                        # Reference §5.3: 403 "login required" (a private topic on a public token), flag or not.
                        await ws.send_json(
                            {"id": data.get("id"), "type": "error", "code": 403, "data": "login required"}
                        )
                        continue
                    subs = self.subscriptions[ws]
                    parts = _split_topic(topic)
                    if kind == "subscribe" and (len(parts) > 100 or len(subs | set(parts)) > 300):
                        # Reference §5.3: at most 100 topics per request and 300 per connection.
                        await ws.send_json(
                            {
                                "id": data.get("id"),
                                "type": "error",
                                "code": 509,
                                "data": "exceed max subscription count",
                            }
                        )
                        continue
                    for t in parts:
                        (subs.add if kind == "subscribe" else subs.discard)(t)
                    if data.get("response", True):
                        await ws.send_json({"id": data.get("id"), "type": "ack"})
        finally:
            self.sockets.discard(ws)
            self.subscriptions.pop(ws, None)
        return ws

    def drop_ws_connections(self) -> None:
        for ws in list(self.sockets):
            asyncio.get_running_loop().create_task(ws.close(), name="sim-ws-drop")

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        for topic, subject, body, private in self._messages(kind, data):
            self._publish(topic, subject, body, private)

    def _messages(self, kind: str, data: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], bool]]:
        now = self.config.clock()
        if kind == "ticker":
            sym, p = data["symbol"], data["prices"]
            return [
                (
                    f"/contractMarket/tickerV2:{sym}",
                    "tickerV2",
                    {
                        "symbol": sym,
                        "bestBidPrice": str(p.last),
                        "bestAskPrice": str(p.last),
                        "bestBidSize": 1000,
                        "bestAskSize": 1000,
                        "ts": now * 1_000_000,
                    },
                    False,
                ),
                (
                    f"/contract/instrument:{sym}",
                    "mark.index.price",
                    {"granularity": 1000, "indexPrice": float(p.index), "markPrice": float(p.mark), "timestamp": now},
                    False,
                ),
            ]
        if kind in ("order", "fill", "stop"):
            o: Order = data["order"]
            kind_type = data.get("type", "match")
            if (o.stop and not o.stop_triggered) or kind == "stop":
                # §5.6.2: an untriggered stop lives on advancedOrders (open / triggered / cancel), never on the
                # orders topic; its cancellation used to go out as an orderChange "canceled" instead.
                return [self._stop_message(o, "cancel" if kind_type == "canceled" else kind_type, now)]
            body = {
                "orderId": o.id,
                "symbol": o.symbol,
                "type": kind_type,
                "status": o.status,
                "side": o.side,
                "orderType": o.type,
                "size": str(o.size),
                "filledSize": str(o.filled_size),
                "remainSize": str(o.size - o.filled_size if o.status == "open" else 0),
                "canceledSize": str(o.size - o.filled_size if o.status == "done" and o.cancel_exist else 0),
                "clientOid": o.client_oid,
                "marginMode": o.margin_mode,
                "positionSide": o.position_side,  # reference §5.6.1 (newer)
                "orderTime": o.created_at * 1_000_000,
                "ts": now * 1_000_000,
                "price": str(o.price or 0),
                "liquidity": "taker",
            }
            extra: list[tuple[str, str, dict[str, Any], bool]] = []
            if kind == "fill":
                f = data["fill"]
                body.update(
                    type="match",
                    # §5.6.1: match/match is the taker fill of the incoming order, match/open a maker fill.
                    status="match" if f.liquidity == "taker" else o.status,
                    matchPrice=str(f.price),
                    matchSize=str(f.size),
                    tradeId=f.trade_id,
                    liquidity=f.liquidity,
                    feeType=f"{f.liquidity}Fee",
                    tradeType=f.trade_type,
                )
                extra = [
                    (
                        f"/contractMarket/execution:{o.symbol}",
                        "match",
                        {
                            "symbol": o.symbol,
                            "sequence": int(f.trade_id),
                            "side": o.side,
                            "size": f.size,
                            "price": str(f.price),
                            "takerOrderId": o.id,
                            "makerOrderId": "0",
                            "tradeId": f.trade_id,
                            "ts": now * 1_000_000,
                        },
                        False,
                    ),
                    ("/contractAccount/wallet", "walletBalance.change", self._wallet(now), True),
                ]
            return [("/contractMarket/tradeOrders", "orderChange", body, True), *extra]
        if kind == "position":
            pos = data["position"]
            # §5.6.3: the full position object (§4.3.1 fields) plus changeReason; it carried five fields.
            full = self._position_api(pos) | {"changeReason": data.get("change", "positionChange")}
            return [(f"/contract/position:{pos.symbol}", "position.change", full, True)]
        if kind == "funding":
            rec = data["record"]
            return [
                (
                    f"/contract/position:{rec.symbol}",
                    "position.settlement",  # §5.6.3; it was a position.change with changeReason "settlement"
                    {
                        "symbol": rec.symbol,
                        "fundingTime": rec.time_point,
                        "qty": rec.position_qty,
                        "markPrice": float(rec.mark_price),
                        "fundingRate": float(rec.funding_rate),
                        "fundingFee": float(rec.funding),
                        "ts": now * 1_000_000,
                        "settleCurrency": "USDT",
                    },
                    True,
                )
            ]
        return []

    @staticmethod
    def _stop_message(o: Order, kind: str, now: int) -> tuple[str, str, dict[str, Any], bool]:
        """One ``stopOrder`` push in the shape of reference §5.6.2 (``size`` a number, ``orderType`` "stop")."""
        body: dict[str, Any] = {
            "createdAt": o.created_at,
            "marginMode": o.margin_mode,
            "orderId": o.id,
            "orderPrice": str(o.price or 0),
            "orderType": "stop",
            "side": o.side,
            "size": o.size,
            "stop": o.stop,
            "stopPrice": str(o.stop_price),
            "stopPriceType": o.stop_price_type,
            "symbol": o.symbol,
            "ts": now * 1_000_000,
            "type": kind,
        }
        if kind == "triggered":
            body["triggerSuccess"] = True
        return ("/contractMarket/advancedOrders", "stopOrder", body, True)

    def _wallet(self, now: int) -> dict[str, Any]:
        """The wallet topic's payload (reference §5.6.4): every value a string."""
        st = self.state
        upnl = sum((st.unrealised(p) for p in st.positions.values() if p.qty), Decimal(0))
        return {
            "currency": "USDT",
            "walletBalance": str(st.balance),
            "availableBalance": str(st.available()),
            "isolatedPosMargin": str(st.position_margin_total()),
            "isolatedOrderMargin": str(st.order_margin_total()),
            "isolatedUnPnl": str(upnl),
            "equity": str(st.balance + upnl),
            "holdBalance": "0",
            "crossPosMargin": "0",
            "crossOrderMargin": "0",
            "crossUnPnl": "0",
            "version": str(len(st.fills)),
            "timestamp": str(now),
        }

    def _publish(self, topic: str, subject: str, body: dict[str, Any], private: bool) -> None:
        msg = {"type": "message", "topic": topic, "subject": subject, "data": body}
        if private:
            msg["channelType"] = "private"
        if self.faults.ws_silent:
            return
        for ws, subs in list(self.subscriptions.items()):
            if topic in subs or topic.split(":", maxsplit=1)[0] + ":all" in subs:
                copies = 2 if self.faults.duplicate_ws_messages else 1
                for _ in range(copies):
                    self._send(ws, msg)

    def _send(self, ws: web.WebSocketResponse, msg: dict[str, Any]) -> None:
        if self.faults.reorder_ws_messages:
            self._pending_ws.append((ws, msg))
            if len(self._pending_ws) < 2:
                return
            batch, self._pending_ws = list(reversed(self._pending_ws)), []
        else:
            batch = [(ws, msg)]
        for target, m in batch:
            if not target.closed:
                with contextlib.suppress(RuntimeError):
                    task = asyncio.get_running_loop().create_task(target.send_json(m), name="sim-ws-send")
                    self._sends.add(task)
                    task.add_done_callback(self._sent)
                    self.pushed += 1

    def _sent(self, task: asyncio.Task[None]) -> None:
        """A push to a socket that closed under it failed: the client is gone, as on KuCoin. Retrieve the error, or
        asyncio logs 'Task exception was never retrieved' with a traceback (a paper bot's log at every stop)."""
        self._sends.discard(task)
        if not task.cancelled():
            task.exception()


KLINE_GRANULARITIES = (1, 5, 15, 30, 60, 120, 240, 480, 720, 1440, 10080)  # minutes, reference §4.1.3

PRIVATE_TOPICS = (
    "/contractMarket/tradeOrders",
    "/contractMarket/advancedOrders",
    "/contract/position",
    "/contract/positionAll",
    "/contractAccount/wallet",
    "/contract/marginMode",
    "/contract/crossLeverage",
)


def _is_private_topic(topic: str) -> bool:
    """Account topics (reference §5.6), with or without a ``:symbol`` suffix."""
    return topic.split(":", maxsplit=1)[0] in PRIVATE_TOPICS


def _split_topic(topic: str) -> list[str]:
    """``/t:A,B`` subscribes to ``/t:A`` and ``/t:B``."""
    if ":" not in topic:
        return [topic]
    head, tail = topic.split(":", 1)
    return [f"{head}:{part}" for part in tail.split(",") if part]


def _raw_query_value(raw_query: str, name: str) -> str | None:
    """One value of a raw query string, form-decoded as a gateway does. Strict on purpose (reference §5.1: the
    token is URL-encoded as a query value): a raw ``=`` inside a value makes it None, so an unencoded token — whose
    ``=`` padding is ambiguous and whose ``+`` would read back as a space — is refused like a bad token."""
    for part in raw_query.split("&"):
        key, sep, value = part.partition("=")
        if sep and urllib.parse.unquote_plus(key) == name:
            return None if "=" in value else urllib.parse.unquote_plus(value)
    return None


def _ints(query: Any, *names: tuple[str, int]) -> list[int]:
    """Integer query parameters with their defaults; a malformed one is KuCoin's 100001."""
    try:
        return [int(query.get(name, default)) for name, default in names]
    except ValueError:
        raise SimError("100001", f"{', '.join(n for n, _ in names)} must be integers") from None


def _page(items: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """One page of ``items`` as KuCoin's page-style listings answer (reference §3.1, §4.4.6): ``currentPage``
    (1 by default), ``pageSize`` (50 by default, at most 1000), ``totalNum``, ``totalPage``, and that page's rows. A
    client reading only the first page misses the rest."""
    page, size = _ints(query, ("currentPage", 1), ("pageSize", 50))
    page, size = max(1, page), max(1, min(size, 1000))
    return {
        "currentPage": page,
        "pageSize": size,
        "totalNum": len(items),
        "totalPage": max(1, -(-len(items) // size)),
        "items": items[(page - 1) * size : page * size],
    }


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
