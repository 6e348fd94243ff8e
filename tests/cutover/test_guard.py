"""The fallback guard trips on a full window over the rate, and only then."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.cutover.guard import FallbackGuard


def test_it_waits_for_a_full_window() -> None:
    guard = FallbackGuard(window=10, max_rate=0.05)
    assert [guard.record("t", True) for _ in range(9)] == [None] * 9
    trip = guard.record("t", True)
    assert trip is not None and (trip.failures, trip.window) == (10, 10)
    assert "10 of the last 10" in trip.reason()


def test_exactly_the_rate_does_not_trip_and_one_more_does() -> None:
    guard = FallbackGuard(window=20, max_rate=0.05)
    outcomes = [True] + [False] * 19
    assert all(guard.record("t", o) is None for o in outcomes)  # 1/20 = 5%: not above
    assert guard.record("t", True) is None  # the window slides: the first True leaves
    assert guard.record("t", True) is not None  # 2/20 = 10%


def test_tags_are_counted_apart_and_a_trip_starts_the_window_again() -> None:
    guard = FallbackGuard(window=2, max_rate=0.0)
    assert guard.record("a", True) is None
    assert guard.record("b", False) is None
    assert guard.record("a", False) is not None
    assert guard.failures("a") == (0, 0)
    assert guard.failures("b") == (0, 1)


@given(st.lists(st.booleans(), max_size=300), st.integers(1, 50),
       st.floats(0, 1, allow_nan=False))
def test_it_trips_exactly_when_the_last_window_is_over_the_rate(
    outcomes: list[bool], window: int, rate: float
) -> None:
    guard = FallbackGuard(window, rate)
    since_trip: list[bool] = []
    for outcome in outcomes:
        since_trip.append(outcome)
        last = since_trip[-window:]
        expected = len(last) == window and sum(last) / window > rate
        assert (guard.record("t", outcome) is not None) == expected
        if expected:
            since_trip = []
