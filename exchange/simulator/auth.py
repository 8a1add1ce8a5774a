"""Server-side check of KuCoin signatures, written from reference §2 independently of the client's signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    secret: str
    passphrase: str
    permissions: tuple[str, ...] = ("General", "Futures")


def _mac(secret: str, msg: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


def verify(
    keys: dict[str, ApiKey],
    headers: dict[str, str],
    method: str,
    raw_target: str,
    body: bytes,
    now_ms: int,
    tolerance_ms: int = 5000,
) -> tuple[str, str] | None:
    """None when the request is authentic, else (KuCoin code, message)."""
    key = headers.get("KC-API-KEY")
    sign = headers.get("KC-API-SIGN")
    ts = headers.get("KC-API-TIMESTAMP")
    passphrase = headers.get("KC-API-PASSPHRASE")
    version = headers.get("KC-API-KEY-VERSION", "1")
    if not key or not sign or not ts or not passphrase:
        return (
            "400001",
            "Please check the header of your request for KC-API-KEY, KC-API-SIGN, KC-API-TIMESTAMP, KC-API-PASSPHRASE",
        )
    if version not in ("1", "2", "3"):
        return "400009", "Invalid KC-API-KEY-VERSION"
    try:
        ts_ms = int(ts)
    except ValueError:
        return "400002", "Invalid KC-API-TIMESTAMP"
    if abs(now_ms - ts_ms) > tolerance_ms:
        return "400002", "Invalid KC-API-TIMESTAMP"
    api = keys.get(key)
    if api is None:
        return "400003", "KC-API-KEY not exists"
    expected_pass = api.passphrase if version == "1" else _mac(api.secret, api.passphrase.encode())
    if not hmac.compare_digest(passphrase, expected_pass):
        return "400004", "Invalid KC-API-PASSPHRASE"
    prefix = (ts + method.upper()).encode()
    candidates = {raw_target, unquote(raw_target)}
    if not any(hmac.compare_digest(sign, _mac(api.secret, prefix + t.encode() + body)) for t in candidates):
        return "400005", "Invalid KC-API-SIGN"
    return None
