"""KuCoin request signing (reference §2): HMAC-SHA256 over timestamp + METHOD + path?query + body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any


def b64_hmac(secret: str, message: str) -> str:
    """base64(HMAC-SHA256(secret, message))."""
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


def compact_json(obj: Any) -> str:
    """The exact body bytes KuCoin expects: no spaces, key order as given."""
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key; ``repr`` never shows the secret or the passphrase."""

    key: str
    secret: str
    passphrase: str
    version: int = 2

    def __repr__(self) -> str:
        return f"Credentials(key={self.key[:4]}…, version={self.version})"


def sign_headers(creds: Credentials, method: str, path_with_query: str, body: str, timestamp_ms: int) -> dict[str, str]:
    """The KC-API-* headers for one request."""
    ts = str(timestamp_ms)
    passphrase = creds.passphrase if creds.version == 1 else b64_hmac(creds.secret, creds.passphrase)
    return {
        "KC-API-KEY": creds.key,
        "KC-API-SIGN": b64_hmac(creds.secret, ts + method.upper() + path_with_query + body),
        "KC-API-TIMESTAMP": ts,
        "KC-API-PASSPHRASE": passphrase,
        "KC-API-KEY-VERSION": str(creds.version),
        "Content-Type": "application/json",
    }
