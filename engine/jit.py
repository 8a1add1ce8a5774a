"""The one way the strategy core is compiled: numba's ``njit`` with the project's settings, typed for mypy.

The per-bar strategy (indicators, signal detectors, scoring, MTF, confidence and the signal gates) is written as
plain functions over float arrays and compiled with numba, so live, paper and backtest run the same machine code:
live calls the per-bar step once per closed candle, the backtest calls it from a compiled loop over the history.
``cache=True`` keeps the compiled code in ``data/numba-cache`` (or ``NUMBA_CACHE_DIR``), so only the first start
after an install pays the compile (``python -m engine.scoring.compile`` pays it ahead of time). Not numba's default
``__pycache__`` next to the source: the systemd unit's read-only project tree (ProtectSystem=strict) would refuse
it, and numba's fallback under the home directory (ProtectHome=true) too, so the first compile would fail.
``error_model="python"`` makes a division by zero raise, as Python would, instead of returning inf silently.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numba  # type: ignore[import-untyped]


def writable_cache_dir(wanted: Path) -> Path:
    """``wanted`` if this process can create files there, else a directory of its own under the temporary directory
    (systemd's PrivateTmp= one under the unit). A cache directory made by another user (``./start.sh test`` run as
    root before the unit runs the bot as ``enygma``) would otherwise leave numba no cache it may write, and it then
    refuses to compile at all: the bot could not start."""
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=wanted):
            return wanted
    except OSError:
        return Path(tempfile.gettempdir()) / f"enygma-numba-cache-{os.getuid()}"


CACHE_DIR = writable_cache_dir(
    Path(os.environ.get("NUMBA_CACHE_DIR") or Path(__file__).resolve().parents[1] / "data" / "numba-cache")
)
numba.config.CACHE_DIR = str(CACHE_DIR)  # read when each kernel below is decorated


def kernel[F: Callable[..., object]](fn: F) -> F:
    """Compile ``fn`` (lazily, on its first call) with the project's numba settings.

    numba files its cache under the source file's path as imported; a project reached through a symlink (a
    deployment's ``current`` link, the tests' project copies) would compile everything again. The function's code
    is given its file's real path first, so every way to the same file finds the same cache."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        real = os.path.realpath(code.co_filename)
        if real != code.co_filename:
            fn.__code__ = code.replace(co_filename=real)
    return cast(F, numba.njit(cache=True, error_model="python")(fn))
