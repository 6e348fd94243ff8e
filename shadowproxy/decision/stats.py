"""The few statistics the report needs, in plain Python so 100k values stay cheap.

Wilson's interval rather than the normal approximation because agreement sits near 1,
where the normal interval runs past 100% and is far too narrow for small samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["Z95", "cdf_points", "newcombe_difference", "percentile", "percentiles",
           "wilson_interval"]

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial share; ``n`` must be positive."""
    if n <= 0:
        raise ValueError("a share of zero trials has no interval")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0 or n successes the bound is exactly 0 or 1; rounding must not nudge it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def newcombe_difference(
    hits_a: int, n_a: int, hits_b: int, n_b: int, z: float = Z95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``hits_a/n_a - hits_b/n_b`` (method 10 of
    Newcombe 1998), built from the two Wilson intervals.

    The gate compares the shadow's worse rate with the noise floor's (the current model
    judged against itself), two independent shares; the Wald interval for a difference
    is far too narrow near 0, which is exactly where worse rates live.
    """
    p_a, p_b = hits_a / n_a if n_a else 0.0, hits_b / n_b if n_b else 0.0
    low_a, high_a = wilson_interval(hits_a, n_a, z)
    low_b, high_b = wilson_interval(hits_b, n_b, z)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return max(-1.0, low), min(1.0, high)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); input sorted."""
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles(
    values: Iterable[float | None], qs: Sequence[int] = (50, 95, 99)
) -> dict[str, float | None]:
    """``{"p50": …, "p95": …, "p99": …}``; None values are ignored, all None when empty."""
    ordered = sorted(v for v in values if v is not None)
    return {f"p{q}": percentile(ordered, q) if ordered else None for q in qs}


def cdf_points(values: Iterable[float | None], max_points: int = 100) -> list[tuple[float, float]]:
    """(value, share of values <= it) at up to ``max_points`` evenly spaced ranks."""
    ordered = sorted(v for v in values if v is not None)
    n = len(ordered)
    if n == 0:
        return []
    step = max(1, math.ceil(n / max_points))
    ranks = list(range(step - 1, n, step))
    if ranks[-1] != n - 1:
        ranks.append(n - 1)
    return [(ordered[0], 0.0)] + [(ordered[i], (i + 1) / n) for i in ranks]
