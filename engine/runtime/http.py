"""The small HTTP side: Prometheus ``/metrics``, ``/health/live``, ``/health/ready`` and a read-only dashboard.
Binds 127.0.0.1 unless the settings explicitly allow otherwise."""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.events import Event


@dataclass
class Health:
    """What /health/ready reads; the runtime updates it."""

    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    last_candle_ms: int = 0
    stream_connected: bool = False
    storage_ok: bool = True
    reconciliation_clean: bool = True
    last_signed_call_ms: int = 0
    max_candle_age_ms: int = 15 * 60_000
    max_signed_call_age_ms: int = 5 * 60_000
    phase: str = "starting"  # -> "running" once warmed up, streaming and reconciling (shown by /health/live)
    # What is wrong with storage right now (the event journal: SQLite refusing inserts, the journal file unwritable)
    storage_probe: Callable[[], str | None] | None = None

    def ready(self, now_ms: int) -> tuple[bool, dict[str, Any]]:
        fresh = self.last_candle_ms > 0 and now_ms - self.last_candle_ms <= self.max_candle_age_ms
        # A signed call (reconciliation makes one every RECONCILE_INTERVAL_S) proves keys, clock and exchange work.
        signed = self.last_signed_call_ms
        storage_problem = None if self.storage_probe is None else self.storage_probe()
        checks: dict[str, Any] = {
            "data_fresh": fresh,
            "stream_connected": self.stream_connected,
            "storage_ok": self.storage_ok and storage_problem is None,
            "reconciliation_clean": self.reconciliation_clean,
            "signed_calls_ok": signed > 0 and now_ms - signed <= self.max_signed_call_age_ms,
            "last_candle_age_s": None if not self.last_candle_ms else (now_ms - self.last_candle_ms) / 1000,
            "last_signed_call_age_s": None if not signed else (now_ms - signed) / 1000,
        }
        ok = all(v for k, v in checks.items() if not k.endswith("_age_s"))
        if storage_problem is not None:
            checks["storage_detail"] = storage_problem
        return ok, checks


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("enygma_events_total", "Engine events by kind", ["kind"], registry=r)
        self.decisions = Counter("enygma_decisions_total", "Decisions by outcome", ["outcome"], registry=r)
        self.gate_failures = Counter("enygma_gate_failures_total", "Failing gates", ["gate"], registry=r)
        self.equity = Gauge("enygma_equity_usdt", "Account equity (USDT)", registry=r)
        self.drawdown = Gauge("enygma_drawdown_pct", "Intraday drawdown (%)", registry=r)
        self.open_positions = Gauge("enygma_open_positions", "Managed open positions", registry=r)
        self.retry_depth = Gauge("enygma_retry_queue_depth", "Items waiting in the retry queue", registry=r)
        self.ws_reconnects = Gauge("enygma_ws_reconnects", "WebSocket reconnects", registry=r)
        # Read at scrape time from the event journal (engine.runtime.app wires them with set_function).
        self.event_backlog = Gauge(
            "enygma_event_backlog", "Events published, not yet stored in SQLite (memory and journal file)", registry=r
        )
        self.events_lost = Gauge(
            "enygma_events_lost", "Events neither the journal file nor memory could keep (both full)", registry=r
        )
        self.lane_backlog = Gauge(
            "enygma_lane_backlog", "Market-data messages received but not yet handled (all symbols)", registry=r
        )
        self.telegram_dropped = Gauge(
            "enygma_telegram_dropped",
            "Telegram messages never sent (backlog over its cap, refused 20 times)",
            registry=r,
        )
        self.telegram_unreachable = Gauge(
            "enygma_telegram_unreachable_chats", "Chats whose last send met an outage (network, 5xx, 401)", registry=r
        )
        self.telegram_unauthorized = Gauge(
            "enygma_telegram_unauthorized_updates_total",
            "Telegram updates from users not allowed (never answered; logged once per user per 10 min)",
            registry=r,
        )
        buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
        self.entry_latency = Histogram(
            "enygma_candle_to_entry_seconds", "Closed candle to entry order accepted", buckets=buckets, registry=r
        )
        self.stop_latency = Histogram(
            "enygma_mark_to_stop_replace_seconds", "Mark tick to stop replaced", buckets=buckets, registry=r
        )

    async def on_event(self, event: Event) -> None:
        self.events.labels(event.kind).inc()
        if event.kind == "signal_evaluated":
            decision: dict[str, Any] = getattr(event, "decision", {})
            self.decisions.labels("passed" if decision.get("passed") else "failed").inc()
            for gate in decision.get("failing", []):
                self.gate_failures.labels(gate).inc()


Approver = Callable[[str, str], Awaitable[str]]

_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_BROWSER_HEADERS = ("Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode")


def from_local_command_line(request: web.Request) -> bool:
    """True for curl or a script on the server itself. Through the documented ``ssh -L`` tunnel a web page in the
    trader's browser also arrives from loopback, so a request a browser made (it always names its origin on a POST)
    or one addressed to another host name (DNS rebinding) is refused too."""
    if request.remote not in ("127.0.0.1", "::1"):
        return False
    if any(name in request.headers for name in _BROWSER_HEADERS):
        return False
    host = request.headers.get("Host", "").strip().lower()
    name = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
    return name in _LOOPBACK_NAMES


# A connection that sends nothing, or half a request, is closed after this. aiohttp's default is 3630 s: a client
# that opens connections and never finishes a request held one file descriptor each for an hour, and the engine
# shares those descriptors with its exchange sockets (1024 under systemd's default limit).
HTTP_IDLE_TIMEOUT_S = 10.0


def http_runner(app: web.Application, idle_timeout_s: float = HTTP_IDLE_TIMEOUT_S) -> web.AppRunner:
    """The runner the runtime serves ``app`` with: no access log, idle and half-sent connections closed."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout_s)


def build_app(
    metrics: Metrics,
    health: Health,
    status: Callable[[], dict[str, Any]],
    approver: Approver | None = None,
    kill: Callable[[], Awaitable[str]] | None = None,
) -> web.Application:
    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"live": True, "phase": health.phase})

    async def ready(_: web.Request) -> web.Response:
        ok, checks = health.ready(int(time.time() * 1000))
        return web.json_response({"ready": ok, **checks}, status=200 if ok else 503)

    async def dashboard(_: web.Request) -> web.Response:
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in status().items()
        )
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>ENYGMA</title></head><body>"
            f"<h1>ENYGMA</h1><table>{rows}</table></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def home(_: web.Request) -> web.Response:
        """The bare address, as a trader types it through the ssh tunnel, answered 404: the dashboard is there."""
        raise web.HTTPFound("/dashboard")

    async def approval(request: web.Request) -> web.Response:
        """The console approver (manual mode without Telegram): loopback callers only."""
        if not from_local_command_line(request) or approver is None:
            return web.json_response({"error": "not available"}, status=403)
        outcome = await approver(request.match_info["approval_id"], request.match_info["action"])
        if outcome == "unknown":
            error = "no approval has this id; copy it from the approval_requested line of the log"
            return web.json_response({"outcome": outcome, "error": error}, status=404)
        return web.json_response({"outcome": outcome})

    async def killswitch(request: web.Request) -> web.Response:
        """The kill switch from the server itself (loopback callers only), for when Telegram is not set up."""
        if not from_local_command_line(request) or kill is None:
            return web.json_response({"error": "not available"}, status=403)
        return web.json_response({"outcome": await kill()})

    app = web.Application()
    app.router.add_post("/approvals/{approval_id}/{action:approve|reject}", approval)
    app.router.add_post("/killswitch", killswitch)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/", home)
    return app
