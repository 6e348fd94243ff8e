"""Statistics behind the report's intervals, percentiles and CDF charts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.decision.stats import cdf_points, newcombe_difference, percentiles, wilson_interval


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-4)
    assert high == pytest.approx(0.9448, abs=1e-4)


def test_wilson_interval_stays_inside_zero_one_at_the_edges() -> None:
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and 0.69 < low < 0.73
    assert wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_contains_the_observed_share(case: tuple[int, int]) -> None:
    k, n = case
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_percentiles_interpolate_linearly_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentiles(values) == {"p50": 50.5, "p95": pytest.approx(95.05),
                                   "p99": pytest.approx(99.01)}
    assert percentiles([3.0, None, 1.0]) == {"p50": 2.0, "p95": pytest.approx(2.9),
                                             "p99": pytest.approx(2.98)}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_cdf_points_rise_to_one_and_are_capped() -> None:
    points = cdf_points(list(range(1000)), max_points=50)
    assert len(points) <= 52
    assert points[0] == (0, 0.0) and points[-1] == (999, 1.0)
    shares = [share for _, share in points]
    assert shares == sorted(shares)
    assert cdf_points([]) == []


# Newcombe (1998), "Interval estimation for the difference between independent
# proportions", Statistics in Medicine 17, Table II, method 10 (score, no correction).
@pytest.mark.parametrize(("a", "n_a", "b", "n_b", "low", "high"), [
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0000),
])
def test_newcombe_difference_matches_the_published_table(
        a: int, n_a: int, b: int, n_b: int, low: float, high: float) -> None:
    got = newcombe_difference(a, n_a, b, n_b)
    assert got == pytest.approx((low, high), abs=1e-4)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_newcombe_difference_contains_the_observed_difference(
        a: tuple[int, int], b: tuple[int, int]) -> None:
    low, high = newcombe_difference(a[0], a[1], b[0], b[1])
    observed = a[0] / a[1] - b[0] / b[1]
    assert -1.0 <= low <= observed + 1e-12 and observed - 1e-12 <= high <= 1.0
    swapped = newcombe_difference(b[0], b[1], a[0], a[1])
    assert swapped == pytest.approx((-high, -low))
