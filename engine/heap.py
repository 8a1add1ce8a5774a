"""Keep Python's cyclic garbage collector off the long-lived state.

After warm-up the process holds hundreds of thousands of long-lived objects (indicator windows, detectors,
candle history). Every full collection walks all of them: across the 542-symbol universe that is tens of
milliseconds added to a candle close (measured with bench.universe: median 114 → 85 ms). Freezing them moves
them to a permanent generation the collector never scans; what is created afterwards is collected as usual.
"""

from __future__ import annotations

import gc


def settle_long_lived() -> int:
    """Collect once, then exempt everything still alive from future collections; returns the frozen count."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
