"""Judging by sample: which pairs the judge sees, how many, and what the report may
conclude from them. Pure: no I/O.

**The frame** of a tag is its pairs the verdict tiers could not settle (both sides
answered, not ``exact`` nor ``structural``): only those need the judge. **The sample**
is the frame pairs whose :func:`judge_rank` (a hash of the pair id, uniform in [0, 1))
is below the tag's threshold. The threshold is only ever raised, so a pair's chance of
being in the sample does not depend on when it arrived: the judged pairs of any time
window are a uniform random sample of that window's frame, and the same pairs are
chosen on every run and every machine.

The rank hashes the id with its own prefix, so it is independent of the human review's
rank (``md5`` of the bare id): the pairs people label are not the pairs the judge was
sent first.

**How many** (:func:`planned_sample`, ``JUDGE_SAMPLE=auto``): enough for a ±2-point
95% interval of the tag's worse rate. The worse rate is over all the tag's pairs with a
verdict, and the tier-settled ones are never worse, so only the frame's share ``c`` of
it is estimated: ``n = z² p(1-p) c² / E²`` with ``E = 0.02``. ``p`` is the upper bound
of the worse rate seen so far in the frame (0.5 until a pilot of
:data:`PILOT` pairs is judged), so the interval holds at the end whatever the rate.

**What the report concludes** (:func:`stratified`): when a scope's frame was judged
only in part, its shares are estimated stratum by stratum (per tag: the tier-settled
pairs, known exactly, and the frame, estimated from its sample) and the 95% interval
is combined from each stratum's Wilson interval by the MOVER method (Zou and Donner
2008; Newcombe's interval for a difference is its two-stratum case). Why no separate
finite-population correction: the interval is about the traffic, of which the stored
frame (F pairs) is itself a sample. Two-phase sampling: the variance of a share
estimated from n judged of F stored is ``p(1-p)/F`` (traffic to stored) plus
``(1 - n/F) p(1-p)/n`` (stored to judged, with the finite-population correction), which
is exactly ``p(1-p)/n``. So the correction is there, and it is what makes a fully judged
frame (n = F) come out the same as before sampling existed: Wilson's interval on n.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shadowproxy.decision.stats import Z95, wilson_interval

__all__ = [
    "DEFAULT_MARGIN",
    "JUDGE_FRAME_SQL",
    "JUDGE_RANK_SQL",
    "PILOT",
    "Estimate",
    "SampleRule",
    "Stratum",
    "difference",
    "judge_rank",
    "parse_sample_rule",
    "planned_sample",
    "stratified",
    "threshold_for",
]

DEFAULT_MARGIN = 0.02
# Judged frame pairs before the observed worse rate sizes the sample (until then the
# worst case, p = 0.5, would ask for 2,401 pairs per tag).
PILOT = 100
_SALT = "shadowproxy-judge-sample:"
_RANK_DIGITS = 13  # 52 bits: exact in a double
# SQL twin of judge_rank over scores.pair_id, written the way PostgreSQL prints it back
# (so Alembic sees migration 0005's index, which holds it verbatim, as unchanged).
JUDGE_RANK_SQL = (f"((('x'::text || substr(md5('{_SALT}'::text || pair_id::text), 1, "
                  f"{_RANK_DIGITS})))::bit({4 * _RANK_DIGITS})::bigint::double precision / "
                  f"{float(16 ** _RANK_DIGITS)!r}::double precision)")
# The judge's frame, over scores: what the tiers left to the judge.
JUDGE_FRAME_SQL = "verdict = 'unjudged' OR verdict_method = 'judge'"


def judge_rank(pair_id: uuid.UUID) -> float:
    """The pair's place in the judge's sample order, uniform in [0, 1)."""
    digest = hashlib.md5((_SALT + str(pair_id)).encode(), usedforsecurity=False)
    return int(digest.hexdigest()[:_RANK_DIGITS], 16) / float(16 ** _RANK_DIGITS)


@dataclass(frozen=True, slots=True)
class SampleRule:
    """``JUDGE_SAMPLE``: ``auto`` (sized per tag), ``all``, or a fixed size per tag."""

    mode: Literal["auto", "all", "fixed"]
    size: int = 0

    def __str__(self) -> str:
        return str(self.size) if self.mode == "fixed" else self.mode


def parse_sample_rule(value: str | int) -> SampleRule:
    text = str(value).strip().lower()
    if text in ("auto", "all"):
        return SampleRule(text)  # type: ignore[arg-type]
    try:
        size = int(text)
    except ValueError:
        raise ValueError(f"must be auto, all or a number of pairs per tag, got {value!r}"
                         ) from None
    if size < 1:
        raise ValueError(f"a sample size must be at least 1, got {size}")
    return SampleRule("fixed", size)


def planned_sample(rule: SampleRule, *, tier: int, frame: int, judged: int, worse: int,
                   margin: float = DEFAULT_MARGIN, z: float = Z95) -> int:
    """How many of a tag's ``frame`` pairs the judge should see, given ``judged`` of
    them (``worse`` judged worse) and ``tier`` pairs the tiers settled."""
    if frame <= 0:
        return 0
    if rule.mode == "all":
        return frame
    if rule.mode == "fixed":
        return min(frame, rule.size)
    if judged < min(PILOT, frame):
        return min(PILOT, frame)
    p = min(0.5, wilson_interval(worse, judged, z)[1])
    share = frame / (tier + frame)
    return min(frame, max(PILOT, math.ceil(z * z * p * (1 - p) * share * share /
                                           (margin * margin))))


def threshold_for(ranks_in_order: Sequence[float], wanted: int) -> float:
    """The rank threshold that takes the ``wanted`` lowest ranks of a frame (given in
    ascending order): just above the last one taken, 1.0 for the whole frame."""
    if wanted >= len(ranks_in_order):
        return 1.0
    if wanted <= 0:
        return 0.0
    return math.nextafter(ranks_in_order[wanted - 1], 1.0)


@dataclass(frozen=True, slots=True)
class Stratum:
    """One stratum of a scope: ``size`` pairs of which ``sampled`` have a verdict and
    ``hits`` of those count (worse, say). ``exact``: every pair's answer is known
    without sampling error (the tier-settled stratum)."""

    size: int
    sampled: int
    hits: int
    exact: bool = False


@dataclass(frozen=True, slots=True)
class Estimate:
    share: float
    low: float
    high: float


def _stratum_interval(s: Stratum, z: float) -> tuple[float, float, float]:
    p = s.hits / s.sampled
    if s.exact:
        return p, p, p
    low, high = wilson_interval(s.hits, s.sampled, z)
    return p, low, high


def stratified(strata: Sequence[Stratum], z: float = Z95) -> Estimate | None:
    """The share over all strata (each weighted by its size), with a MOVER interval
    built from each stratum's own interval; None when a stratum with pairs has no
    sampled pair (nothing can be said about it)."""
    total = sum(s.size for s in strata if s.size)
    if not total or any(s.size and not s.sampled for s in strata):
        return None
    share = low_sq = high_sq = 0.0
    for s in strata:
        if not s.size:
            continue
        weight = s.size / total
        p, low, high = _stratum_interval(s, z)
        share += weight * p
        low_sq += (weight * (p - low)) ** 2
        high_sq += (weight * (high - p)) ** 2
    return Estimate(share, max(0.0, share - math.sqrt(low_sq)),
                    min(1.0, share + math.sqrt(high_sq)))


def difference(a: Estimate, b: Estimate) -> tuple[float, float]:
    """MOVER interval for ``a.share - b.share`` from the two intervals (Newcombe's
    hybrid score interval when both are plain Wilson intervals)."""
    d = a.share - b.share
    low = d - math.sqrt((a.share - a.low) ** 2 + (b.high - b.share) ** 2)
    high = d + math.sqrt((a.high - a.share) ** 2 + (b.share - b.low) ** 2)
    return max(-1.0, low), min(1.0, high)
