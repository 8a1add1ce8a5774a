"""clientOids: generated once per intent, reused on every retry of that intent."""

from __future__ import annotations

import re
import uuid

_VALID = re.compile(r"[A-Za-z0-9_-]{1,40}", re.ASCII)

# Every order the engine sends carries one of these before the dash: entries, stops, take-profits, through-mark
# stop exits, and ``eg`` (the default, e.g. the kill switch's closes). An order without one was placed by someone
# else (the trader on KuCoin's site): the engine never cancels it.
OWN_PREFIXES = ("eg", "en", "sl", "tp", "sx")


def new_client_oid(prefix: str = "eg") -> str:
    """A fresh id (≤ 40 chars, [A-Za-z0-9_-]): prefix + 32 hex characters."""
    oid = f"{prefix}-{uuid.uuid4().hex}"
    if not _VALID.fullmatch(oid):
        raise ValueError(f"invalid clientOid prefix {prefix!r}")
    return oid


def is_valid_client_oid(oid: str) -> bool:
    return bool(_VALID.fullmatch(oid))  # not match(): "$" also matches before a trailing newline


def is_own_client_oid(oid: str | None) -> bool:
    """The clientOid carries one of the engine's prefixes (the order is ENYGMA's even if its intent record is lost)."""
    prefix, dash, _ = (oid or "").partition("-")
    return bool(dash) and prefix in OWN_PREFIXES
