"""One-line configuration errors: a trader sees the key and the problem, never a traceback wall."""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from engine.logging import hide_url_credentials

# A value under one of these names is never echoed back, even when it is the bad one.
_SECRET_NAME = re.compile(r"(secret|passphrase|token|api_?key|password|webhook)", re.IGNORECASE)


# Exit status of a start refused for its configuration (sysexits.h EX_CONFIG). The systemd unit does not restart on
# it (RestartPreventExitStatus=78): a bad .env restarted the bot every 10 s for ever, and no restart can fix one. A
# crash or an unreachable exchange exits 1 and is restarted.
EX_CONFIG = 78
# Exit status of a start refused for its database (sysexits.h EX_DATAERR): corrupt, from a newer release, or not
# writable. No restart can fix one either (before: exit 1, restarted every 10 s for ever); the unit lists it too.
EX_DATAERR = 65


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


def describe_validation_error(exc: ValidationError) -> str:
    """Render pydantic's errors as ``key.path: problem (got value)``, joined on one line."""
    parts: list[str] = []
    for err in exc.errors():
        loc = ".".join(to_camel(str(p)) if isinstance(p, str) else str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        secret = any(_SECRET_NAME.search(str(p)) for p in err["loc"])
        quiet = secret or err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict | list)
        # A proxy URL's user and password (https://user:pass@proxy) are credentials too: never echoed.
        shown = "" if quiet else f" (got {hide_url_credentials(repr(got))})"
        parts.append(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    return "; ".join(parts)
