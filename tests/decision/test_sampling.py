"""Judging by sample, the pure part: which pairs, how many, and what an estimate from
them may claim."""

from __future__ import annotations

import math
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.decision.sampling import (
    PILOT,
    Estimate,
    SampleRule,
    Stratum,
    difference,
    judge_rank,
    parse_sample_rule,
    planned_sample,
    stratified,
)
from shadowproxy.decision.stats import Z95, newcombe_difference, wilson_interval

AUTO = SampleRule("auto")


def test_the_rank_is_reproducible_uniform_and_not_the_review_rank() -> None:
    ids = [uuid.UUID(int=random.Random(7).getrandbits(128)) for _ in range(1)]
    assert judge_rank(ids[0]) == judge_rank(uuid.UUID(str(ids[0])))
    rng = random.Random(1)
    ranks = [judge_rank(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20_000)]
    assert all(0.0 <= r < 1.0 for r in ranks)
    deciles = [sum(1 for r in ranks if d / 10 <= r < (d + 1) / 10) for d in range(10)]
    assert all(1850 < n < 2150 for n in deciles)  # about 2,000 each
    # The review queue ranks by md5 of the bare id: the two orders are unrelated.
    def review(pair_id: uuid.UUID) -> int:
        import hashlib
        return int(hashlib.md5(str(pair_id).encode()).hexdigest()[:15], 16)
    sample = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(2000)]
    first_by_judge = set(sorted(sample, key=judge_rank)[:200])
    first_by_review = set(sorted(sample, key=review)[:200])
    assert len(first_by_judge & first_by_review) < 45  # 20 expected by chance


def test_the_setting_reads_auto_all_or_a_size() -> None:
    assert parse_sample_rule("auto") == AUTO and parse_sample_rule(" ALL ").mode == "all"
    assert parse_sample_rule("250") == SampleRule("fixed", 250)
    assert str(parse_sample_rule(250)) == "250"
    for bad in ("0", "-3", "some", "1.5"):
        with pytest.raises(ValueError, match=r"auto, all|at least 1"):
            parse_sample_rule(bad)


def test_all_and_a_fixed_size_take_what_they_say() -> None:
    assert planned_sample(SampleRule("all"), tier=10, frame=500, judged=0, worse=0) == 500
    assert planned_sample(SampleRule("fixed", 80), tier=0, frame=500, judged=0, worse=0) == 80
    assert planned_sample(SampleRule("fixed", 80), tier=0, frame=30, judged=0, worse=0) == 30
    assert planned_sample(AUTO, tier=0, frame=0, judged=0, worse=0) == 0


def test_auto_judges_a_pilot_first() -> None:
    assert planned_sample(AUTO, tier=0, frame=50_000, judged=0, worse=0) == PILOT
    assert planned_sample(AUTO, tier=0, frame=60, judged=10, worse=1) == 60


@settings(max_examples=300, deadline=None)
@given(frame=st.integers(1, 5_000_000), tier=st.integers(0, 5_000_000),
       judged=st.integers(PILOT, 5000), worse_share=st.floats(0, 1))
def test_auto_is_enough_for_two_points_on_the_worse_rate(
        frame: int, tier: int, judged: int, worse_share: float) -> None:
    """At the planned size, a normal interval at the planning rate (the upper bound of
    what the pilot saw) is at most ±2 points on the scope's worse rate, unless the
    whole frame is judged (then nothing is left to sample)."""
    judged = min(judged, frame)
    worse = round(worse_share * judged)
    n = planned_sample(AUTO, tier=tier, frame=frame, judged=judged, worse=worse)
    assert 0 < n <= frame
    if n < frame and judged >= PILOT:
        p = min(0.5, wilson_interval(worse, judged)[1])
        share = frame / (tier + frame)
        assert Z95 * math.sqrt(p * (1 - p) / n) * share <= 0.02 + 1e-12


def test_an_exact_stratum_has_no_width_and_a_single_sampled_one_is_wilson() -> None:
    exact = stratified([Stratum(100, 100, 30, exact=True)])
    assert exact == Estimate(0.3, 0.3, 0.3)
    alone = stratified([Stratum(1000, 40, 10)])
    assert alone is not None
    assert (alone.low, alone.high) == pytest.approx(wilson_interval(10, 40))
    assert stratified([Stratum(1000, 0, 0)]) is None  # nothing judged: nothing to say


def test_tier_settled_pairs_dilute_the_frame_by_their_share() -> None:
    # 3,000 pairs settled by the tiers (never worse), 1,000 in the frame, 100 judged.
    worse = stratified([Stratum(3000, 3000, 0, exact=True), Stratum(1000, 100, 20)])
    assert worse is not None
    frame_low, frame_high = wilson_interval(20, 100)
    assert worse.share == pytest.approx(0.25 * 0.2)
    assert (worse.low, worse.high) == pytest.approx((0.25 * frame_low, 0.25 * frame_high))


def test_difference_of_two_wilson_estimates_is_newcombe() -> None:
    def wilson(hits: int, n: int) -> Estimate:
        return Estimate(hits / n, *wilson_interval(hits, n))
    assert difference(wilson(30, 100), wilson(8, 100)) == pytest.approx(
        newcombe_difference(30, 100, 8, 100))


def test_stratified_intervals_cover_the_truth_about_95_percent() -> None:
    """Two tags of different sizes and rates, each sampled at its own rate: the 95%
    interval for the overall worse rate holds the true rate in ~95% of repetitions."""
    rng = random.Random(19)
    sizes, rates, samples = (20_000, 3_000), (0.06, 0.25), (300, 150)
    tiers = (30_000, 1_000)
    truth = sum(s * r for s, r in zip(sizes, rates, strict=True)) / (sum(sizes) + sum(tiers))
    covered = 0
    runs = 600
    for _ in range(runs):
        strata = []
        for size, rate, n, tier in zip(sizes, rates, samples, tiers, strict=True):
            hits = sum(1 for _ in range(n) if rng.random() < rate)
            strata += [Stratum(tier, tier, 0, exact=True), Stratum(size, n, hits)]
        estimate = stratified(strata)
        assert estimate is not None
        covered += estimate.low <= truth <= estimate.high
    assert 0.92 <= covered / runs <= 0.99
