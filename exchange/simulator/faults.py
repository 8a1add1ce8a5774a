"""Fault switches the tests flip at runtime: rate-limit bursts, 5xx, latency, lost replies, WS trouble."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FaultInjector:
    rate_limit_remaining: int = 0
    rate_limit_code: str = "429000"
    server_error_remaining: int = 0
    server_error_prefix: str = ""  # only requests whose path starts with it fail ("" = every request)
    latency_ms: int = 0
    latency_prefix: str = ""  # only requests whose path starts with it are slowed ("" = every request)
    lose_reply_remaining: int = 0
    lose_reply_prefix: str = "/api/v1/orders"
    duplicate_ws_messages: bool = False
    reorder_ws_messages: bool = False
    ws_drops: int = 0
    ws_bad_welcome_remaining: int = 0
    ws_silent: bool = False  # connections stay open but answer no ping and push nothing
    garble_reply_remaining: int = 0
    delay_remaining: int = 0
    order_lag_remaining: int = 0
    match_lag_remaining: int = 0
    match_lag_ms: int = 0
    gateway_timeout_remaining: int = 0
    gateway_timeout_prefix: str = "/api/v1/orders"
    gateway_timeout_ms: int = 0
    delay_prefix: str = "/api/v1/orders"
    delay_ms: int = 0
    garble_reply_prefix: str = "/api/v1/orders"
    garble_reply_kind: str = "no_data"
    token_epoch: int = 0
    # Reference §4.5: fills history is "not real-time". The next ``stale_fills_remaining`` answers of
    # /api/v1/fills show only the first ``stale_fills_upto`` fills ever made (the newer ones not yet listed).
    stale_fills_remaining: int = 0
    stale_fills_upto: int = 0
    log: list[str] = field(default_factory=list)

    def rate_limit_next(self, n: int, code: str = "429000") -> None:
        """The next ``n`` REST requests answer HTTP 429 / 429000, or with ``code="200002"`` KuCoin's per-endpoint
        limit (HTTP 200, reference §3.2: the endpoint is blocked for 10 s)."""
        self.rate_limit_remaining = n
        self.rate_limit_code = code

    def server_error_next(self, n: int, path_prefix: str = "") -> None:
        """The next ``n`` REST requests (under ``path_prefix``, "" = any) answer HTTP 503 without executing."""
        self.server_error_remaining = n
        self.server_error_prefix = path_prefix

    def lose_reply_next(self, n: int, path_prefix: str = "/api/v1/orders") -> None:
        """The next ``n`` requests under ``path_prefix`` are executed, then the connection drops unanswered."""
        self.lose_reply_remaining = n
        self.lose_reply_prefix = path_prefix

    def garble_reply_next(self, n: int, path_prefix: str = "/api/v1/orders", kind: str = "no_data") -> None:
        """The next ``n`` requests under ``path_prefix`` are executed, then answered with a success envelope that
        has no ``data`` (``kind="no_data"``, seen in the wild), with JSON cut short (``kind="truncated"``) or with
        one field of ``data`` null (``kind="null:indexPrice"``: a value the exchange has not got) or with ``data``
        a list where an object belongs (``kind="not_object"``)."""
        self.garble_reply_remaining = n
        self.garble_reply_prefix = path_prefix
        self.garble_reply_kind = kind

    def delay_next(self, n: int, ms: int, path_prefix: str = "/api/v1/orders") -> None:
        """The next ``n`` requests under ``path_prefix`` are held ``ms`` before they execute (a slow matching engine:
        the client may give up and ask before the order exists)."""
        self.delay_remaining = n
        self.delay_ms = ms
        self.delay_prefix = path_prefix

    def gateway_timeout_next(self, n: int, ms: int, path_prefix: str = "/api/v1/orders") -> None:
        """The next ``n`` requests under ``path_prefix`` are answered HTTP 504 by the gateway at once, while the
        exchange behind it executes them ``ms`` later."""
        self.gateway_timeout_remaining = n
        self.gateway_timeout_ms = ms
        self.gateway_timeout_prefix = path_prefix

    def order_lag_next(self, n: int) -> None:
        """The next ``n`` order queries (by id or clientOid) answer 100004 as if the order did not exist yet: a read
        right after placement that the exchange's query side has not caught up with."""
        self.order_lag_remaining = n

    def match_lag_next(self, n: int, ms: int) -> None:
        """The next ``n`` plain (not stop) orders are accepted at once and matched ``ms`` later: until then a query
        shows them open with nothing filled, and their fills and position pushes come after the placement's answer
        (KuCoin's matching runs behind its order gateway)."""
        self.match_lag_remaining = n
        self.match_lag_ms = ms

    def bad_welcome_next(self, n: int) -> None:
        """The next ``n`` WebSocket connections are greeted with a frame that is not JSON instead of the welcome."""
        self.ws_bad_welcome_remaining = n

    def expire_tokens(self) -> None:
        """Every issued WebSocket token becomes invalid."""
        self.token_epoch += 1

    def reset(self) -> None:
        self.rate_limit_remaining = self.server_error_remaining = self.lose_reply_remaining = 0
        self.ws_bad_welcome_remaining = self.garble_reply_remaining = self.delay_remaining = 0
        self.order_lag_remaining = self.gateway_timeout_remaining = self.stale_fills_remaining = 0
        self.match_lag_remaining = 0
        self.latency_ms = 0
        self.latency_prefix = self.server_error_prefix = ""
        self.duplicate_ws_messages = self.reorder_ws_messages = self.ws_silent = False

    def take(self, attr: str) -> bool:
        left: int = getattr(self, attr)
        if left > 0:
            setattr(self, attr, left - 1)
            return True
        return False
