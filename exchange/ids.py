"""clientOids: generated once per intent, reused on every retry of that intent."""

from __future__ import annotations

import re
import uuid

_VALID = re.compile(r"[A-Za-z0-9_-]{1,40}", re.ASCII)


def new_client_oid(prefix: str = "eg") -> str:
    """A fresh id (≤ 40 chars, [A-Za-z0-9_-]): prefix + 32 hex characters."""
    oid = f"{prefix}-{uuid.uuid4().hex}"
    if not _VALID.fullmatch(oid):
        raise ValueError(f"invalid clientOid prefix {prefix!r}")
    return oid


def is_valid_client_oid(oid: str) -> bool:
    return bool(_VALID.fullmatch(oid))  # not match(): "$" also matches before a trailing newline
