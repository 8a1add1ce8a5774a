"""The O(1) divergence tracker says, bar for bar, what the §4.1 window search says."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scoring.detectors import DivergenceTracker
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
