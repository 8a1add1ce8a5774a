"""The O(1) trackers say, bar for bar, what the window searches they replace say: §4.1 divergence, §4.2 twin peaks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scoring.detectors import DivergenceTracker, TwinPeaksTracker, twin_peaks
from engine.scoring.signals import Direction, regular_divergence

# Small integers make ties (which are never swings) common; floats cover the general case.
values = st.one_of(st.integers(-5, 5).map(float), st.floats(-1e6, 1e6, allow_nan=False))


@settings(max_examples=400, deadline=None)
@given(
    pairs=st.lists(st.tuples(values, values), min_size=0, max_size=120),
    window=st.integers(1, 30),
    min_history=st.integers(0, 40),
)
def test_incremental_tracker_matches_the_window_search(
    pairs: list[tuple[float, float]], window: int, min_history: int
) -> None:
    tracker = DivergenceTracker(window, min_history)
    for n, (osc, close) in enumerate(pairs, start=1):
        got = tracker.update(osc, close)
        lo = max(0, n - window)
        want = (
            Direction.NEUTRAL
            if n < min_history
            else regular_divergence([p[0] for p in pairs[lo:n]], [p[1] for p in pairs[lo:n]])
        )
        assert got is want, (n, window)


def test_a_real_bullish_divergence_is_found_on_the_bar_that_confirms_the_second_low() -> None:
    # price: lower low at bar 10; oscillator: higher low there. Confirmed two bars later (bar 12).
    price = [10, 9, 8, 7, 8, 9, 10, 9, 8, 7, 6, 7, 8, 9]
    osc = [50, 45, 40, 30, 40, 45, 50, 45, 40, 38, 35, 40, 45, 50]
    tracker = DivergenceTracker(14, 0)
    seen = [tracker.update(float(o), float(p)) for o, p in zip(osc, price, strict=True)]
    assert seen.index(Direction.BULLISH) == 12
    assert all(d is Direction.NEUTRAL for d in seen[:12])


@settings(max_examples=400, deadline=None)
@given(series=st.lists(values, min_size=0, max_size=120), window=st.integers(3, 30))
def test_incremental_twin_peaks_match_the_window_search(series: list[float], window: int) -> None:
    tracker = TwinPeaksTracker(window)
    for n in range(1, len(series) + 1):
        got = tracker.update(series[n - 1])
        assert got is twin_peaks(series[max(0, n - window) : n]), (n, window)


def test_real_twin_peaks_found_on_the_bar_that_rises_above_the_second_trough() -> None:
    # AO below zero: trough −5 (bar 2), peak −1 (bar 4), higher trough −3 (bar 6); bar 7 (−2) rises above it.
    ao = [-2.0, -3.0, -5.0, -2.0, -1.0, -2.0, -3.0, -2.0, -4.0]
    tracker = TwinPeaksTracker(15)
    seen = [tracker.update(v) for v in ao]
    assert seen == [Direction.NEUTRAL] * 7 + [Direction.BULLISH, Direction.NEUTRAL]
    short = TwinPeaksTracker(6)  # at bar 7 the window is bars 2–7: the trough at bar 2 has no left neighbour in it
    assert [short.update(v) for v in ao][7] is Direction.NEUTRAL
