"""The calibrated worse rate (PPI++): the same numbers as the reference implementation,
intervals that hold under a biased judge, and narrower than labels alone when the judge
agrees with people."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.decision.calibration import (
    MIN_LABELS,
    VERDICTS,
    Predictions,
    Sample,
    Stratum,
    agreement,
    calibrate,
    cohen_kappa,
    labels_needed,
    mover_difference,
    ppi_mean,
    tuned_lambda,
)
from shadowproxy.decision.stats import Z95, wilson_interval


def _reference(ys: Sequence[float], fs: Sequence[float], unlabelled: Sequence[float]
               ) -> tuple[float, float, float, float]:
    """ppi_py's point, 95% interval and tuned λ on the same arrays."""
    import numpy as np
    import ppi_py

    y, f, fu = np.array(ys, float), np.array(fs, float), np.array(unlabelled, float)
    point = float(ppi_py.ppi_mean_pointestimate(y, f, fu)[0])
    low, high = ppi_py.ppi_mean_ci(y, f, fu, alpha=0.05)
    # λ as ppi_py tunes it inside ppi_mean_ci (the gradients of the mean at λ = 1).
    theta = ppi_py.ppi_mean_pointestimate(y, f, fu, lam=1)
    lam = ppi_py.ppi._calc_lam_glm(y - theta, f - theta, fu - theta, np.eye(1), clip=True)
    return point, float(low[0]), float(high[0]), float(lam)


def _judged(rng: random.Random, n: int, rate: float, agree: float) -> tuple[list[int], list[int]]:
    """Truth at ``rate``; the judge copies it with probability ``agree``, else guesses."""
    truth = [int(rng.random() < rate) for _ in range(n)]
    judge = [t if rng.random() < agree else int(rng.random() < 0.5) for t in truth]
    return truth, judge


@pytest.mark.parametrize(("seed", "labelled", "unlabelled", "rate", "agree"), [
    (1, 40, 400, 0.2, 0.9),
    (2, 10, 2000, 0.05, 0.7),
    (3, 200, 800, 0.3, 0.5),
    (4, 30, 30, 0.5, 0.95),
    (5, 80, 5000, 0.1, 0.0),  # a judge that guesses: λ near 0, labels carry it
])
def test_the_same_numbers_as_ppi_py_on_the_same_arrays(
        seed: int, labelled: int, unlabelled: int, rate: float, agree: float) -> None:
    rng = random.Random(seed)
    truth, judge = _judged(rng, labelled + unlabelled, rate, agree)
    ys, fs, rest = truth[:labelled], judge[:labelled], judge[labelled:]
    point, low, high, lam = _reference(ys, fs, rest)

    ours = ppi_mean(Sample.of(ys, fs), Predictions.of(rest))

    assert ours.point == pytest.approx(point, abs=1e-12)
    assert ours.interval() == pytest.approx((low, high), abs=1e-12)
    assert ours.lam == pytest.approx(lam, abs=1e-12)


def test_real_valued_arrays_match_ppi_py_too() -> None:
    """The arithmetic is PPI++ for any mean, not only for 0/1 verdicts."""
    rng = random.Random(9)
    ys = [rng.gauss(1.0, 2.0) for _ in range(60)]
    fs = [y + rng.gauss(0.3, 1.0) for y in ys]
    rest = [rng.gauss(1.3, 2.2) for _ in range(900)]
    point, low, high, lam = _reference(ys, fs, rest)
    ours = ppi_mean(Sample.of(ys, fs), Predictions.of(rest))
    assert (ours.point, *ours.interval(), ours.lam) == pytest.approx(
        (point, low, high, lam), abs=1e-9)


def test_lambda_is_clipped_to_0_for_a_judge_that_says_the_opposite() -> None:
    ys = [1, 0] * 20
    fs = [0, 1] * 20
    rest = [0, 1] * 100
    assert tuned_lambda(Sample.of(ys, fs), Predictions.of(rest)) == 0.0
    assert _reference(ys, fs, rest)[3] == 0.0
    # λ = 0 is the labels alone: the classical mean and its normal interval.
    estimate = ppi_mean(Sample.of(ys, fs), Predictions.of(rest))
    assert estimate.point == 0.5 and estimate.variance == pytest.approx(0.25 / 40)


def _coverage(runs: int, seed: int, labels: int) -> tuple[float, float, float, float, float]:
    """Coverage of the calibrated and of the judge-only intervals, their mean widths, and
    the coverage of plain PPI++ (without the half pairs) on the same draws,
    for a judge that misses a third of the worse answers and calls 3% of good ones worse,
    with 500 pairs decided by a tier (never worse) beside 2,000 the judge decided."""
    rng = random.Random(seed)
    truth_rate, frame, decided = 0.2, 2000, 500
    target = frame * truth_rate / (frame + decided)
    covered = judge_covered = plain_covered = 0
    width = judge_width = 0.0
    for _ in range(runs):
        truth = [rng.random() < truth_rate for _ in range(frame)]
        judge = [(t and rng.random() >= 1 / 3) or (not t and rng.random() < 0.03)
                 for t in truth]
        confusion: dict[tuple[str, str], int] = {}
        unlabelled = {"worse": 0, "equivalent": 0}
        # The queue's order is a uniform random permutation: the first ``labels`` are
        # the labelled ones, and the order of the pairs here is already random.
        for i, (t, j) in enumerate(zip(truth, judge, strict=True)):
            judged = "worse" if j else "equivalent"
            if i < labels:
                cell = (judged, "worse" if t else "equivalent")
                confusion[cell] = confusion.get(cell, 0) + 1
            else:
                unlabelled[judged] += 1
        stratum = Stratum(confusion, unlabelled, {"equivalent": decided})
        result = calibrate([stratum], "worse")
        assert result is not None
        covered += result.low <= target <= result.high
        width += result.high - result.low
        plain = ppi_mean(stratum.sample("worse"), stratum.predictions("worse"))
        weight = frame / (frame + decided)
        low, high = plain.interval()
        plain_covered += low * weight <= target <= high * weight
        low, high = wilson_interval(sum(judge), frame + decided)
        judge_covered += low <= target <= high
        judge_width += high - low
    return (covered / runs, judge_covered / runs, width / runs, judge_width / runs,
            plain_covered / runs)


@pytest.mark.parametrize("labels", [30, 100])
def test_the_interval_covers_the_truth_under_a_biased_judge(labels: int) -> None:
    """1,000 simulated reviews of a biased judge: the calibrated 95% interval holds the
    true worse rate at least 93% of the time, from the gate's 30 labels up; the judge's
    own interval almost never."""
    coverage, judge_coverage, width, _, plain = _coverage(1000, seed=17, labels=labels)
    print(f"{labels} labels: calibrated coverage {coverage:.1%} (mean width {width:.3f}); "
          f"plain PPI++ {plain:.1%}; judge alone {judge_coverage:.1%}")
    assert coverage >= 0.93
    assert judge_coverage < 0.2


def test_a_judge_that_agrees_with_people_narrows_the_interval() -> None:
    """With 97% agreement the calibrated interval is much narrower than the interval
    from the same labels alone (PPI++ with λ = 0, the classical interval)."""
    rng = random.Random(5)
    truth, judge = _judged(rng, 3000, 0.15, 0.97)
    labelled = Sample.of(truth[:150], judge[:150])
    rest = Predictions.of(judge[150:])
    calibrated = ppi_mean(labelled, rest)
    alone = ppi_mean(labelled, rest, lam=0.0)
    assert calibrated.lam is not None and calibrated.lam > 0.8
    assert math.sqrt(calibrated.variance) < 0.6 * math.sqrt(alone.variance)
    # ...and the labels-alone interval is ppi_py's classical one.
    import numpy as np
    import ppi_py
    low, high = ppi_py.classical_mean_ci(np.array(truth[:150], float), alpha=0.05)
    assert alone.interval() == pytest.approx((low, high), abs=1e-12)


def _stratum(judge: Sequence[str], people: Sequence[str | None],
             decided: dict[str, int] | None = None) -> Stratum:
    confusion: dict[tuple[str, str], int] = {}
    unlabelled: dict[str, int] = {}
    for j, h in zip(judge, people, strict=True):
        if h is None:
            unlabelled[j] = unlabelled.get(j, 0) + 1
        else:
            confusion[(j, h)] = confusion.get((j, h), 0) + 1
    return Stratum(confusion, unlabelled, decided or {})


def test_fewer_than_10_labels_give_no_calibrated_rate_unless_the_frame_is_all_labelled(
        ) -> None:
    judge = ["worse"] * 5 + ["equivalent"] * 45
    short = _stratum(judge, ["worse"] * 3 + [None] * 2 + ["equivalent"] * 6 + [None] * 39)
    assert short.labelled == MIN_LABELS - 1
    assert calibrate([short], "worse") is None
    census = _stratum(judge[:6], ["worse", "worse", "equivalent", "worse", "worse", "worse"])
    result = calibrate([census], "worse")
    # The labels alone (λ = 0), with half a pair in each cell: (5 + 1) / (6 + 2).
    assert result is not None and result.rate == pytest.approx(6 / 8) and result.lam == 0.0


def test_tier_decided_pairs_count_as_decided_and_weight_the_rate() -> None:
    """100 judge pairs, of which people find 30% worse, beside 300 exact matches: the
    tag's calibrated worse rate is 30% of a quarter of its pairs."""
    people = ["worse"] * 30 + ["equivalent"] * 70
    alone = calibrate([_stratum(people, people)], "worse")
    with_tier = calibrate([_stratum(people, people, {"equivalent": 300})], "worse")
    assert alone is not None and with_tier is not None
    assert with_tier.rate == pytest.approx(alone.rate / 4)
    assert alone.rate == pytest.approx(31 / 102)  # 30 of 100, and half a pair per cell
    assert with_tier.high - with_tier.low == pytest.approx((alone.high - alone.low) / 4)


def test_overall_combines_tags_as_strata_weighted_by_their_pairs() -> None:
    a = _stratum(["worse"] * 20 + ["equivalent"] * 80,
                 ["worse"] * 20 + ["equivalent"] * 30 + [None] * 50)
    b = _stratum(["equivalent"] * 300, ["worse"] * 6 + ["equivalent"] * 24 + [None] * 270)
    ra, rb = calibrate([a], "worse"), calibrate([b], "worse")
    both = calibrate([a, b], "worse")
    assert ra is not None and rb is not None and both is not None
    assert both.rate == pytest.approx(0.25 * ra.rate + 0.75 * rb.rate)
    assert both.lam is None and ra.lam is not None
    # A tag without enough labels leaves the overall figure out, rather than guessing.
    bare = _stratum(["equivalent"] * 50, [None] * 50)
    assert calibrate([a, bare], "worse") is None


def test_labels_that_all_agree_with_the_judge_still_leave_an_interval() -> None:
    """Ten labels that never caught the judge out do not prove it is never wrong: the
    interval is not of zero width (ppi_py's is, on the raw arrays)."""
    judge = ["equivalent"] * 200
    stratum = _stratum(judge, ["equivalent"] * 10 + [None] * 190)
    result = calibrate([stratum], "worse")
    assert result is not None and result.rate == 0.0
    assert result.high > 0.05
    import numpy as np
    import ppi_py
    assert ppi_py.ppi_mean_ci(np.zeros(10), np.zeros(10), np.zeros(190), alpha=0.05,
                              lam=0.0)[1][0] == 0.0


def test_kappa_and_agreement_against_sklearn() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(3)
    judge = [rng.choice(VERDICTS) for _ in range(300)]
    people = [j if rng.random() < 0.7 else rng.choice(VERDICTS) for j in judge]
    confusion: dict[tuple[str, str], int] = {}
    for cell in zip(judge, people, strict=True):
        confusion[cell] = confusion.get(cell, 0) + 1
    assert cohen_kappa(confusion) == pytest.approx(cohen_kappa_score(judge, people))
    assert agreement(confusion) == pytest.approx(
        sum(j == h for j, h in zip(judge, people, strict=True)) / 300)
    assert cohen_kappa({("equivalent", "equivalent"): 12}) is None  # chance is certain
    assert cohen_kappa({}) is None and agreement({}) is None


def test_labels_needed_for_two_points_falls_as_the_judge_agrees_more() -> None:
    rng = random.Random(8)
    needs = []
    for agree in (0.5, 0.9, 0.99):
        truth, judge = _judged(rng, 20_000, 0.1, agree)
        name = ["worse" if j else "equivalent" for j in judge]
        people = ["worse" if t else "equivalent" for t in truth]
        needs.append(labels_needed([_stratum(name, people[:200] + [None] * 19_800)]))
    classical = math.ceil((Z95 / 0.02) ** 2 * 0.1 * 0.9)  # 865 labels without a judge
    assert needs[0] > needs[1] > needs[2]
    assert needs[0] == pytest.approx(classical, rel=0.25)
    assert needs[2] < classical / 5
    # Never more than the whole frame, never fewer than a calibrated rate needs.
    small = _stratum(["worse"] * 30 + ["equivalent"] * 70, [None] * 100)
    assert labels_needed([small]) == 100
    assert labels_needed([Stratum(decided={"equivalent": 40})]) == 0


def test_labelling_labels_needed_pairs_gives_about_two_points() -> None:
    rng = random.Random(21)
    truth, judge = _judged(rng, 30_000, 0.2, 0.85)
    name = ["worse" if j else "equivalent" for j in judge]
    people = ["worse" if t else "equivalent" for t in truth]
    pilot = labels_needed([_stratum(name, people[:300] + [None] * 29_700)])
    labelled = _stratum(name, people[:pilot] + [None] * (30_000 - pilot))
    result = calibrate([labelled], "worse")
    assert result is not None
    assert (result.high - result.low) / 2 == pytest.approx(0.02, abs=0.004)


def test_the_product_s_estimate_is_ppi_plus_plus_on_the_adjusted_table() -> None:
    """What the report shows is ppi_mean (ppi_py's numbers) on the labelled table with
    half a pair added to each of its four cells; nothing else."""
    judge = ["worse"] * 30 + ["equivalent"] * 170
    people = ["worse"] * 22 + ["equivalent"] * 8 + ["worse"] * 9 + ["equivalent"] * 31 \
        + [None] * 130
    stratum = _stratum(judge, people)
    adjusted = Sample(70 + 2, 31 + 1, 30 + 1, 31 + 1, 30 + 1, 22 + 0.5)
    expected = ppi_mean(adjusted, Predictions(130, 0, 0))
    result = calibrate([stratum], "worse")
    assert result is not None
    assert (result.rate, result.low, result.high, result.lam) == pytest.approx(
        (expected.point, *expected.interval(), expected.lam))


def test_mover_difference_matches_newcombe_for_wilson_intervals() -> None:
    from shadowproxy.decision.calibration import Calibrated
    from shadowproxy.decision.stats import newcombe_difference

    a_low, a_high = wilson_interval(30, 200)
    b_low, b_high = wilson_interval(8, 150)
    ours = mover_difference(Calibrated(30 / 200, a_low, a_high), 8 / 150, b_low, b_high)
    assert ours == pytest.approx(newcombe_difference(30, 200, 8, 150))


# --- properties --------------------------------------------------------------------

_VERDICT = st.sampled_from(VERDICTS)
_PAIRS = st.lists(st.tuples(_VERDICT, st.one_of(st.none(), _VERDICT)), min_size=1,
                  max_size=200)


@given(_PAIRS, st.dictionaries(_VERDICT, st.integers(0, 50)))
@settings(max_examples=200, deadline=None)
def test_calibrated_interval_holds_its_point_and_lambda_stays_in_0_1(
        pairs: list[tuple[str, str | None]], decided: dict[str, int]) -> None:
    stratum = _stratum([j for j, _ in pairs], [h for _, h in pairs], decided)
    for verdict in VERDICTS:
        result = calibrate([stratum], verdict)
        if stratum.labelled < MIN_LABELS and not stratum.census:
            assert result is None
            continue
        assert result is not None
        assert 0.0 <= result.low <= result.rate <= result.high <= 1.0
        assert result.lam is not None and 0.0 <= result.lam <= 1.0


@given(st.lists(_PAIRS, min_size=1, max_size=4), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_the_order_of_pairs_and_of_tags_changes_nothing(
        tags: list[list[tuple[str, str | None]]], rng: random.Random) -> None:
    strata = [_stratum([j for j, _ in p], [h for _, h in p]) for p in tags]
    shuffled = []
    for pairs in tags:
        copy = list(pairs)
        rng.shuffle(copy)
        shuffled.append(_stratum([j for j, _ in copy], [h for _, h in copy]))
    rng.shuffle(shuffled)
    for verdict in ("worse", "better"):
        a, b = calibrate(strata, verdict), calibrate(shuffled, verdict)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert (a.rate, a.low, a.high) == pytest.approx((b.rate, b.low, b.high))


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=2, max_size=80),
       st.lists(st.integers(0, 1), min_size=1, max_size=300))
@settings(max_examples=200, deadline=None)
def test_tuned_lambda_is_ppi_py_s_on_any_0_1_arrays(
        labelled: list[tuple[int, int]], rest: list[int]) -> None:
    ys, fs = [y for y, _ in labelled], [f for _, f in labelled]
    lam = tuned_lambda(Sample.of(ys, fs), Predictions.of(rest))
    assert 0.0 <= lam <= 1.0
    if len(set(fs + rest)) > 1:  # ppi_py divides by zero for a constant judge
        assert lam == pytest.approx(_reference(ys, fs, rest)[3], abs=1e-9)
