"""Latency percentiles from fixed log buckets: within one bucket's width (5%, or 1 ms
below 1 ms) of the exact percentile, whatever the distribution."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.decision.histogram import (
    GROWTH,
    bucket_bounds,
    bucket_of,
    cdf_from_buckets,
    percentiles_from_buckets,
)
from shadowproxy.decision.stats import percentiles

latencies = st.lists(st.floats(0.0, 600_000.0, allow_nan=False), min_size=1, max_size=400)


@given(st.floats(0.0, 1e9, allow_nan=False))
def test_every_value_lies_in_its_bucket(value: float) -> None:
    low, high = bucket_bounds(bucket_of(value))
    assert low <= value * (1 + 1e-12) and value < high * (1 + 1e-12)


@settings(max_examples=300, deadline=None)
@given(latencies)
def test_bucket_percentiles_are_within_one_bucket_of_the_exact_ones(values: list[float]
                                                                    ) -> None:
    counts = Counter(bucket_of(v) for v in values)
    approx, exact = percentiles_from_buckets(counts), percentiles(values)
    for key, true in exact.items():
        estimate = approx[key]
        assert true is not None and estimate is not None
        # Each value is placed within its bucket, and a percentile interpolates between
        # two values: 5% either way, or the 1 ms of the bucket below 1 ms.
        assert true / GROWTH - 1 <= estimate <= true * GROWTH + 1


@settings(max_examples=100, deadline=None)
@given(latencies)
def test_the_cdf_rises_to_one_and_stays_small(values: list[float]) -> None:
    points = cdf_from_buckets(Counter(bucket_of(v) for v in values), max_points=50)
    assert points[0][1] == 0.0 and points[-1][1] == 1.0
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(points))
    assert len(points) <= 52


def test_no_values_no_percentiles() -> None:
    assert percentiles_from_buckets({}) == {"p50": None, "p95": None, "p99": None}
    assert cdf_from_buckets({}) == []
