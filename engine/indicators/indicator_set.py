"""All indicators of one symbol and timeframe, updated together once per closed candle in O(1).

The per-indicator classes (oscillators.py, trend.py, volatility.py, composed in reference.py) are the readable
definition. ``IndicatorSet`` runs the compiled kernel (kernel.py), the same arithmetic operation for operation,
and turns its float row into an ``IndicatorSnapshot``. tests/indicators/test_fused.py feeds the full real series
through both and requires every snapshot field to be equal. Change an indicator in both places together.
"""

from __future__ import annotations

import numpy as np

from engine.indicators.kernel import X_B, indicator_params, indicator_reset, indicator_step, snapshot_from_row
from engine.indicators.layout import N_SNAP
from engine.indicators.params import IndicatorParams
from engine.indicators.snapshot import IndicatorSnapshot
from engine.models import Candle

# An EMA200 seeded on 500 candles is still off by up to 6.6 bp of price, on 1,000 by 0.05 bp (measured on the
# shared data, see docs/INDICATORS.md): warm up on 1,000 candles so the slowest indicator has converged.
RECOMMENDED_WARMUP_CANDLES = 1000


class IndicatorSet:
    """Feeds each closed candle to every indicator; warm-up is just feeding history through ``update``.

    ``ip``, ``fp``, ``state`` and ``row`` are the kernel's arrays: a compiled caller may run ``indicator_step`` on
    them directly (``row`` holds the last candle's values)."""

    __slots__ = ("fp", "ip", "params", "row", "state")

    def __init__(self, params: IndicatorParams | None = None) -> None:
        self.params = params or IndicatorParams()
        self.ip, self.fp, state_len = indicator_params(self.params)
        self.state = np.zeros(state_len, dtype=np.float64)
        self.row = np.full(N_SNAP, np.nan)
        self.reset()

    @property
    def bars(self) -> int:
        """Candles fed since the last reset."""
        return int(self.state[X_B])

    def reset(self) -> None:
        """Forget everything (after a gap in the candles): warm-up starts over."""
        indicator_reset(self.ip, self.fp, self.state)

    def update(self, candle: Candle) -> IndicatorSnapshot:
        """Apply one closed candle and return every indicator value after it."""
        row = self.row
        # float(): a candle built with ints (tests) would otherwise compile another specialisation of the step
        indicator_step(
            self.ip,
            self.fp,
            self.state,
            float(candle.open),
            float(candle.high),
            float(candle.low),
            float(candle.close),
            float(candle.volume),
            row,
        )
        return snapshot_from_row(candle, row)
