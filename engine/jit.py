"""The one way the strategy core is compiled: numba's ``njit`` with the project's settings, typed for mypy.

The per-bar strategy (indicators, signal detectors, scoring, MTF, confidence and the signal gates) is written as
plain functions over float arrays and compiled with numba, so live, paper and backtest run the same machine code:
live calls the per-bar step once per closed candle, the backtest calls it from a compiled loop over the history.
``cache=True`` keeps the compiled code next to the source (or under ``NUMBA_CACHE_DIR``), so only the first start
after an install pays the compile. ``error_model="python"`` makes a division by zero raise, as Python would,
instead of returning inf silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numba  # type: ignore[import-untyped]


def kernel[F: Callable[..., object]](fn: F) -> F:
    """Compile ``fn`` (lazily, on its first call) with the project's numba settings."""
    return cast(F, numba.njit(cache=True, error_model="python")(fn))
