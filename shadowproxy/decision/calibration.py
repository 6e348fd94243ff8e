"""The worse rate calibrated by people's labels: PPI++ (Angelopoulos, Duchi and Zrnic
2023, arXiv 2311.01453), and how far the judge agrees with people.

Pure arithmetic over counts, no I/O: the database hands over, per tag, the judge's
verdict x the first person's verdict over the labelled pairs (a 3 x 3 confusion matrix),
the judge's verdicts over the pairs nobody labelled, and the pairs a tier decided.

Within a tag (a *stratum*) the pairs with a verdict split in two:

* the **frame**: pairs the judge decided (``verdict_method = 'judge'``). People label a
  uniform random sample of it (the review queue offers it in a fixed pseudo-random
  order). PPI++ estimates the share a person would call worse from the judge's verdict
  on every frame pair plus the correction the labelled pairs measure::

      θ̂ = λ·mean(f over unlabelled) + mean(y - λ·f over labelled)

  with ``y`` the person's 0/1, ``f`` the judge's, and λ the power-tuned weight (the
  variance-minimising value, clipped to [0, 1]: 0 ignores the judge, 1 is plain PPI).
  The interval stays valid however biased the judge is; a judge that agrees with people
  makes it narrower than the labels alone. For the few dozen labels a review gets, the
  labelled judge x person table first gains half a pair per cell (:func:`_adjusted`).
* the **decided** pairs (``exact`` / ``structural``): their verdict is a fact, taken as
  truth with no uncertainty.

A tag's rate weights the two by their pairs; ``overall`` weights the tags by their pairs
(each tag its own stratum, so a large tag's judge cannot hide a small tag's bias).

Plain Python rather than numpy: the inputs are a dozen counts per tag, and the normal
quantile is a constant (:data:`~shadowproxy.decision.stats.Z95`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shadowproxy.decision.stats import Z95

__all__ = [
    "MIN_LABELS", "TARGET_HALF_WIDTH", "VERDICTS", "Calibrated", "Cell", "MeanEstimate",
    "Predictions", "Sample", "Stratum", "agreement", "calibrate", "cohen_kappa",
    "labels_needed", "mover_difference", "ppi_mean", "tuned_lambda",
]

VERDICTS = ("worse", "equivalent", "better")
# Below this many labelled pairs a stratum's interval rests on too few points to trust
# the normal approximation: the calibrated rate is not shown.
MIN_LABELS = 10
# labels_needed aims at a 95% interval of ± this (two percentage points).
TARGET_HALF_WIDTH = 0.02


@dataclass(frozen=True, slots=True)
class Sample:
    """Sums over labelled pairs of a person's value ``y`` and the judge's ``f``."""

    n: int = 0
    y: float = 0.0
    f: float = 0.0
    yy: float = 0.0
    ff: float = 0.0
    yf: float = 0.0

    @classmethod
    def of(cls, ys: Sequence[float], fs: Sequence[float]) -> Sample:
        if len(ys) != len(fs):
            raise ValueError("a label and a judge's verdict for every pair")
        return cls(len(ys), sum(ys), sum(fs), sum(y * y for y in ys),
                   sum(f * f for f in fs), sum(y * f for y, f in zip(ys, fs, strict=True)))


@dataclass(frozen=True, slots=True)
class Predictions:
    """Sums over unlabelled pairs of the judge's value ``f``."""

    n: int = 0
    f: float = 0.0
    ff: float = 0.0

    @classmethod
    def of(cls, fs: Sequence[float]) -> Predictions:
        return cls(len(fs), sum(fs), sum(f * f for f in fs))


@dataclass(frozen=True, slots=True)
class MeanEstimate:
    point: float
    variance: float
    lam: float | None = None

    def interval(self, z: float = Z95) -> tuple[float, float]:
        half = z * math.sqrt(self.variance)
        return self.point - half, self.point + half


def _variance(total: float, squares: float, n: int) -> float:
    """Population variance (divide by n) from a sum and a sum of squares."""
    mean = total / n
    return max(0.0, squares / n - mean * mean)


def tuned_lambda(labelled: Sample, unlabelled: Predictions) -> float:
    """The λ minimising the estimate's variance, clipped to [0, 1].

    λ = Cov(y, f) / ((1 + n/N) · Var(f)), the covariance over the labelled pairs and the
    judge's variance over all pairs (the same estimates ``ppi_py`` uses).
    """
    n, big_n = labelled.n, unlabelled.n
    if n == 0 or big_n == 0:
        return 0.0  # nothing to impute onto, or nothing to learn the correction from
    covariance = labelled.yf / n - (labelled.y / n) * (labelled.f / n)
    every = n + big_n
    total, squares = labelled.f + unlabelled.f, labelled.ff + unlabelled.ff
    judge_variance = (squares - total * total / every) / (every - 1)
    if judge_variance <= 0:
        return 0.0  # a judge that says the same thing about every pair tells nothing
    return min(1.0, max(0.0, covariance / ((1 + n / big_n) * judge_variance)))


def ppi_mean(labelled: Sample, unlabelled: Predictions,
             lam: float | None = None) -> MeanEstimate:
    """The PPI++ estimate of the mean of ``y`` and its variance (λ tuned unless given):
    exactly ``ppi_py``'s ``ppi_mean_pointestimate`` and ``ppi_mean_ci``."""
    n, big_n = labelled.n, unlabelled.n
    if n == 0:
        raise ValueError("PPI needs at least one labelled pair")
    if lam is None:
        lam = tuned_lambda(labelled, unlabelled)
    if big_n == 0:
        lam = 0.0
    # The rectifier y - λf over the labelled pairs: its sum and its sum of squares.
    rectifier = labelled.y - lam * labelled.f
    rectifier_squares = labelled.yy - 2 * lam * labelled.yf + lam * lam * labelled.ff
    imputed = lam * unlabelled.f / big_n if big_n else 0.0
    variance = _variance(rectifier, rectifier_squares, n) / n
    if big_n:
        variance += lam * lam * _variance(unlabelled.f, unlabelled.ff, big_n) / big_n
    return MeanEstimate(imputed + rectifier / n, variance, lam)


Cell = tuple[str, str]  # (judge's verdict, person's verdict)


@dataclass(frozen=True, slots=True)
class Stratum:
    """One tag's pairs with a verdict, as counts.

    ``confusion``: labelled frame pairs by (judge's verdict, first person's verdict);
    ``unlabelled``: frame pairs nobody labelled, by the judge's verdict; ``decided``:
    pairs a tier decided, by verdict.
    """

    confusion: Mapping[Cell, int] = field(default_factory=dict)
    unlabelled: Mapping[str, int] = field(default_factory=dict)
    decided: Mapping[str, int] = field(default_factory=dict)

    @property
    def labelled(self) -> int:
        return sum(self.confusion.values())

    @property
    def frame(self) -> int:
        return self.labelled + sum(self.unlabelled.values())

    @property
    def pairs(self) -> int:
        return self.frame + sum(self.decided.values())

    @property
    def census(self) -> bool:
        """Every frame pair is labelled: the labels are the whole truth, not a sample."""
        return self.frame > 0 and self.labelled == self.frame

    @property
    def calibratable(self) -> bool:
        return self.frame == 0 or self.labelled >= MIN_LABELS or self.census

    def sample(self, verdict: str) -> Sample:
        y = sum(n for (_, human), n in self.confusion.items() if human == verdict)
        f = sum(n for (judge, _), n in self.confusion.items() if judge == verdict)
        both = self.confusion.get((verdict, verdict), 0)
        return Sample(self.labelled, y, f, y, f, both)

    def predictions(self, verdict: str) -> Predictions:
        f = self.unlabelled.get(verdict, 0)
        return Predictions(sum(self.unlabelled.values()), f, f)

    def estimate(self, verdict: str) -> MeanEstimate:
        """The share of this stratum's pairs a person would give ``verdict``."""
        decided = self.decided.get(verdict, 0) / self.pairs
        if self.frame == 0:
            return MeanEstimate(decided, 0.0)
        judged = ppi_mean(_adjusted(self.sample(verdict)), self.predictions(verdict))
        weight = self.frame / self.pairs
        return MeanEstimate(decided + weight * judged.point,
                            weight * weight * judged.variance, judged.lam)


def _adjusted(labelled: Sample) -> Sample:
    """The labelled 0/1 pairs with half a pair added to each cell of the judge x person
    table (y, f) = (1, 1), (1, 0), (0, 1), (0, 0), in the spirit of Agresti and Caffo's
    adjustment for a difference of shares (theirs adds a success and a failure to each).

    The normal interval of a mean of rare disagreements is too narrow for a few dozen
    labels: with 30 labels of a judge that misses a third of the worse answers, plain
    PPI++ held the truth in 84% of simulated reviews, and ten labels that never caught
    the judge out gave an interval of zero width. With the half pairs it holds 94-95%
    (tests/decision/test_calibration.py), for 2-8% more width; with hundreds of labels
    the half pairs change nothing that shows.
    """
    # Four half pairs, two pairs in all: y = 1 in two halves, f = 1 in two, both in one.
    return Sample(labelled.n + 2, labelled.y + 1, labelled.f + 1, labelled.yy + 1,
                  labelled.ff + 1, labelled.yf + 0.5)


@dataclass(frozen=True, slots=True)
class Calibrated:
    """A calibrated rate and its 95% interval (within [0, 1]); λ for a single tag."""

    rate: float
    low: float
    high: float
    lam: float | None = None


def calibrate(strata: Sequence[Stratum], verdict: str) -> Calibrated | None:
    """The rate of ``verdict`` over every stratum's pairs, each weighted by its pairs;
    None when a stratum the judge decided has too few labels, or there are no pairs."""
    total = sum(s.pairs for s in strata)
    if not total or any(not s.calibratable for s in strata if s.pairs):
        return None
    parts = [(s.pairs / total, s.estimate(verdict)) for s in strata if s.pairs]
    point = sum(w * e.point for w, e in parts)
    variance = sum(w * w * e.variance for w, e in parts)
    low, high = MeanEstimate(point, variance).interval()
    lam = parts[0][1].lam if len(strata) == 1 else None
    return Calibrated(min(1.0, max(0.0, point)), max(0.0, low), min(1.0, high), lam)


def labels_needed(strata: Sequence[Stratum], verdict: str = "worse",
                  half_width: float = TARGET_HALF_WIDTH) -> int:
    """Labelled pairs for a 95% interval of ± ``half_width`` on the calibrated rate.

    Per stratum, the smallest sample whose PPI++ variance (with the variances and the
    judge-person covariance seen so far; a coin's worst case before two labels) reaches
    the target, at most the whole frame. Summed over strata, each aiming at the target
    on its own, which gets the weighted combination there too.
    """
    return sum(_stratum_needs(s, verdict, half_width) for s in strata)


def _stratum_needs(stratum: Stratum, verdict: str, half_width: float) -> int:
    frame = stratum.frame
    if frame == 0:
        return 0
    weight = frame / stratum.pairs
    target = (half_width / (Z95 * weight)) ** 2
    labelled = stratum.sample(verdict)
    unlabelled = stratum.predictions(verdict)
    judge_var = _variance(labelled.f + unlabelled.f, labelled.ff + unlabelled.ff, frame)
    # From the labels so far (the judge's variance among them too, so that a judge that
    # never disagreed shows as such); a person's variance never below that of the share
    # smoothed by one label each way: ten labels that all agree do not prove the rate 0.
    smoothed = (labelled.y + 1) / (labelled.n + 2)
    person_var, covariance, labelled_judge_var = smoothed * (1 - smoothed), 0.0, judge_var
    if labelled.n >= 2:
        person_var = max(person_var, _variance(labelled.y, labelled.yy, labelled.n))
        labelled_judge_var = _variance(labelled.f, labelled.ff, labelled.n)
        covariance = labelled.yf / labelled.n - labelled.y * labelled.f / labelled.n ** 2
        bound = math.sqrt(person_var * labelled_judge_var)
        covariance = min(bound, max(-bound, covariance))

    def variance(n: int) -> float:
        rest = frame - n
        if rest == 0 or labelled_judge_var == 0:
            return person_var / n
        lam = min(1.0, max(0.0, covariance / ((1 + n / rest) * labelled_judge_var)))
        return ((person_var - 2 * lam * covariance + lam * lam * labelled_judge_var) / n
                + lam * lam * judge_var / rest)

    low, high = 1, frame
    while low < high:  # the variance falls as labels grow: the first n that reaches it
        middle = (low + high) // 2
        if variance(middle) <= target:
            high = middle
        else:
            low = middle + 1
    return max(low, min(MIN_LABELS, frame))


def _cells(confusion: Mapping[Cell, int]) -> Iterable[tuple[str, str, int]]:
    return ((judge, human, n) for (judge, human), n in confusion.items() if n)


def agreement(confusion: Mapping[Cell, int]) -> float | None:
    """The share of labelled pairs where the judge and the person gave the same verdict."""
    total = sum(confusion.values())
    if not total:
        return None
    return sum(n for judge, human, n in _cells(confusion) if judge == human) / total


def cohen_kappa(confusion: Mapping[Cell, int]) -> float | None:
    """Cohen's κ over worse / equivalent / better: agreement beyond what the two
    raters' own verdict shares would give by chance. None when chance agreement is
    certain (both gave one and the same verdict throughout)."""
    total = sum(confusion.values())
    if not total:
        return None
    observed = sum(n for judge, human, n in _cells(confusion) if judge == human) / total
    chance = sum(
        sum(n for judge, _, n in _cells(confusion) if judge == v)
        * sum(n for _, human, n in _cells(confusion) if human == v)
        for v in VERDICTS) / (total * total)
    if chance >= 1:
        return None
    return (observed - chance) / (1 - chance)


def mover_difference(a: Calibrated, b_rate: float, b_low: float,
                     b_high: float) -> tuple[float, float]:
    """95% interval for ``a.rate - b_rate`` from the two intervals (Newcombe's method,
    the MOVER construction, which works for any pair of independent intervals)."""
    difference = a.rate - b_rate
    low = difference - math.hypot(a.rate - a.low, b_high - b_rate)
    high = difference + math.hypot(a.high - a.rate, b_rate - b_low)
    return max(-1.0, low), min(1.0, high)
