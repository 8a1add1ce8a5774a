"""The compiled O(1) trackers (engine.scoring.detect_kernel) say, bar for bar, what the window searches they
replace say: §4.1 divergence, §4.2 twin peaks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scoring.detect_kernel import DV_SIZE, TW_SIZE, div_reset, div_update, twin_reset, twin_update
from engine.scoring.signals import Direction, regular_divergence, twin_peaks

# Small integers make ties (which are never swings) common; floats cover the general case.
values = st.one_of(st.integers(-5, 5).map(float), st.floats(-1e6, 1e6, allow_nan=False))
AT = 3  # the tracker sits inside a larger state array, as in the detectors' state


class Divergence:
    """A kernel divergence tracker in its own state array."""

    def __init__(self, window: int, min_history: int) -> None:
        self.state = np.full(AT + DV_SIZE + 2, 9.0)
        div_reset(self.state, AT)
        self.window, self.min_history = window, min_history

    def update(self, osc: float, close: float) -> Direction:
        return Direction(div_update(self.state, AT, self.window, self.min_history, osc, close))


class TwinPeaks:
    """A kernel twin-peaks tracker in its own state array."""

    def __init__(self, window: int) -> None:
        self.state = np.full(AT + TW_SIZE + 2, 9.0)
        twin_reset(self.state, AT)
        self.window = window

    def update(self, value: float) -> Direction:
        return Direction(twin_update(self.state, AT, self.window, value))


@settings(max_examples=400, deadline=None)
@given(
    pairs=st.lists(st.tuples(values, values), min_size=0, max_size=120),
    window=st.integers(1, 30),
    min_history=st.integers(0, 40),
)
def test_incremental_tracker_matches_the_window_search(
    pairs: list[tuple[float, float]], window: int, min_history: int
) -> None:
    tracker = Divergence(window, min_history)
    for n, (osc, close) in enumerate(pairs, start=1):
        got = tracker.update(osc, close)
        lo = max(0, n - window)
        want = (
            Direction.NEUTRAL
            if n < min_history
            else regular_divergence([p[0] for p in pairs[lo:n]], [p[1] for p in pairs[lo:n]])
        )
        assert got is want, (n, window)
    assert (tracker.state[:AT] == 9.0).all() and (tracker.state[AT + DV_SIZE :] == 9.0).all()  # stays in its slots


def test_a_real_bullish_divergence_is_found_on_the_bar_that_confirms_the_second_low() -> None:
    # price: lower low at bar 10; oscillator: higher low there. Confirmed two bars later (bar 12).
    price = [10, 9, 8, 7, 8, 9, 10, 9, 8, 7, 6, 7, 8, 9]
    osc = [50, 45, 40, 30, 40, 45, 50, 45, 40, 38, 35, 40, 45, 50]
    tracker = Divergence(14, 0)
    seen = [tracker.update(float(o), float(p)) for o, p in zip(osc, price, strict=True)]
    assert seen.index(Direction.BULLISH) == 12
    assert all(d is Direction.NEUTRAL for d in seen[:12])


@settings(max_examples=400, deadline=None)
@given(series=st.lists(values, min_size=0, max_size=120), window=st.integers(3, 30))
def test_incremental_twin_peaks_match_the_window_search(series: list[float], window: int) -> None:
    tracker = TwinPeaks(window)
    for n in range(1, len(series) + 1):
        got = tracker.update(series[n - 1])
        assert got is twin_peaks(series[max(0, n - window) : n]), (n, window)
    assert (tracker.state[:AT] == 9.0).all() and (tracker.state[AT + TW_SIZE :] == 9.0).all()


def test_real_twin_peaks_found_on_the_bar_that_rises_above_the_second_trough() -> None:
    # AO below zero: trough −5 (bar 2), peak −1 (bar 4), higher trough −3 (bar 6); bar 7 (−2) rises above it.
    ao = [-2.0, -3.0, -5.0, -2.0, -1.0, -2.0, -3.0, -2.0, -4.0]
    tracker = TwinPeaks(15)
    seen = [tracker.update(v) for v in ao]
    assert seen == [Direction.NEUTRAL] * 7 + [Direction.BULLISH, Direction.NEUTRAL]
    short = TwinPeaks(6)  # at bar 7 the window is bars 2–7: the trough at bar 2 has no left neighbour in it
    assert [short.update(v) for v in ao][7] is Direction.NEUTRAL
