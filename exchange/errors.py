"""Exchange errors, classified by what the caller should do (retry, back off, fix the request, halt)."""

from __future__ import annotations


class ExchangeError(Exception):
    """Root of every exchange failure; ``code`` and ``message`` are KuCoin's when it answered."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message
        self.http_status = http_status


class RetryableError(ExchangeError):
    """Transient: network failure, timeout, 5xx. Reads may retry; writes reconcile first."""


class ExchangeTimeoutError(RetryableError, TimeoutError):
    """No answer in time (the request may or may not have been executed)."""


class NoAnswerError(RetryableError):
    """The request was sent and the connection failed before an answer: it may or may not have been executed."""


class RateLimitedError(RetryableError):
    """HTTP 429 / 429000, 200002 (one endpoint blocked 10 s), 1015 (per IP, 30 s): back off until the reset."""

    def __init__(
        self, message: str, *, code: str | None = None, http_status: int | None = None, reset_ms: int | None = None
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.reset_ms = reset_ms


class AuthError(ExchangeError):
    """4000xx: key, signature, passphrase, IP or permission problem. Never retried; a person must act."""


class TimestampError(AuthError):
    """400002: clock skew beyond 5 s; resync the server-time offset and retry once."""


class InvalidRequestError(ExchangeError, ValueError):
    """The request itself is wrong (bad parameter, unknown symbol, price band...). Never retried."""


class InsufficientFundsError(InvalidRequestError):
    """300003 / 330008: not enough available margin."""


class OrderNotFoundError(InvalidRequestError):
    """100004: unknown or already finished order (a cancel of it is effectively done)."""


class DuplicateClientOidError(InvalidRequestError):
    """300018: an active order already has this clientOid; query it instead of re-placing."""


class PositionEmptyError(InvalidRequestError):
    """300009: there is no position to close."""


class PermissionRefusedError(ExchangeError):
    """The API key can withdraw or transfer funds; ENYGMA refuses to run with it."""


AUTH_CODES = {"400001", "400003", "400004", "400005", "400006", "400007", "400008", "400009", "400010", "411100"}
RETRY_CODES = {"500000", "100002", "300002", "300013", "300015"}


def _class_for(code: str, http_status: int | None) -> type[ExchangeError]:
    if code in ("429000", "200002", "1015") or http_status == 429:  # 200002: per-endpoint; 1015: per-IP
        return RateLimitedError
    if code == "400002":
        return TimestampError
    if code in AUTH_CODES:
        return AuthError
    if code in ("300003", "330008"):
        return InsufficientFundsError
    if code == "100004":
        return OrderNotFoundError
    if code == "300018":
        return DuplicateClientOidError
    if code == "300009":
        return PositionEmptyError
    if code in RETRY_CODES or (http_status is not None and http_status >= 500):
        return RetryableError
    return InvalidRequestError


def error_for(code: str, message: str, http_status: int | None) -> ExchangeError:
    """Map a KuCoin error code to the exception class that says what to do."""
    return _class_for(code, http_status)(message, code=code, http_status=http_status)
