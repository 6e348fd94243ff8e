"""The report as typed values: what ``report --format json``, the HTML page, the gate,
the dashboard and the demo all read.

Pure: no I/O. ``shadowproxy.decision.report`` fills these from the database; everything else
reads attributes (checked by mypy) rather than string keys, and ``to_json`` gives the
shape PRODUCT.md's "Deciding" section promises.

Denominators (each share says what it is a share of):

* verdict shares (``worse_rate``, ``better_rate``, ``agreement``): pairs where both
  sides answered and that have a verdict other than ``unjudged`` (``pairs``).
* ``tool_call_match``: scored pairs where both answered and either side called a tool.
* ``shadow_error_rate``: pairs whose primary answered and whose shadow was attempted.
* ``shadow_drop_rate``: mirrored pairs (all but ``skipped``).
* ``noise_floor``: replay pairs (the primary asked twice) with a replay verdict.
* ``judge.position_inconsistent``: of pairs the judge decided (method ``judge``), the
  share where the two orders disagreed.

When the judge saw only part of a tag's frame (the pairs the tiers could not settle:
``JUDGE_SAMPLE``, or a spent budget), the verdict shares are estimated per stratum
(:class:`Strata`; :func:`shadowproxy.decision.sampling.stratified`) instead of divided
as counts: the tier-settled pairs are known, the frame's shares come from the judged
sample, and the interval widens with the sample. ``sample`` in the JSON says how many.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shadowproxy.cutover.section import CutoverSection
from shadowproxy.decision.human_review import HumanReview
from shadowproxy.decision.lifecycle_notices import LifecycleNotice
from shadowproxy.decision.sampling import Estimate, Stratum, difference, stratified
from shadowproxy.decision.stats import wilson_interval

__all__ = [
    "PROJECTION_DAYS", "PROJECTION_MIN_HOURS", "Answer", "Costs", "Interval",
    "JudgeSummary", "Models", "NoiseFloor", "PathCount", "Percentiles", "Projection",
    "Report", "ScopeSummary", "Series", "Strata", "Timing", "Unjudged", "UnjudgedCause",
    "Verdicts",
    "Window", "WorstPair", "classify_unjudged", "ratio",
]

PROJECTION_DAYS = 30
# Less traffic than this says nothing about a month: daily and weekly cycles dominate.
PROJECTION_MIN_HOURS = 1.0


def ratio(top: float | None, bottom: float | None) -> float | None:
    """``top / bottom``, or None when either is unknown or the bottom is not positive."""
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


@dataclass(frozen=True, slots=True)
class Interval:
    """A 95% interval."""

    low: float
    high: float

    @classmethod
    def wilson(cls, hits: int, n: int) -> Interval | None:
        return cls(*wilson_interval(hits, n)) if n else None

    @classmethod
    def of(cls, estimate: Estimate | None) -> Interval | None:
        return cls(estimate.low, estimate.high) if estimate is not None else None

    def to_json(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Verdict counts over pairs where both sides answered."""

    equivalent: int = 0
    better: int = 0
    worse: int = 0
    unjudged: int = 0

    @property
    def judged(self) -> int:
        return self.equivalent + self.better + self.worse

    def to_json(self) -> dict[str, int]:
        return {"equivalent": self.equivalent, "better": self.better,
                "worse": self.worse, "unjudged": self.unjudged}


class UnjudgedCause(enum.StrEnum):
    AWAITING_DIFF = "awaiting diff"
    NO_VERDICT = "scored without a verdict"
    NO_JUDGE = "no judge configured"
    NOT_SAMPLED = "not in the judge's sample"
    BUDGET = "judge budget spent"
    JUDGE_FAILED = "judge failed"


def classify_unjudged(verdict: str | None, reason: str | None,
                      scored: bool = False) -> UnjudgedCause:
    """Why a pair without a verdict has none, from its ``verdict`` and ``judge_reason``.

    ``diff`` writes the reason in words; the keywords below are the contract with it: a
    reason naming the budget or ``JUDGE_MAX_USD`` is a spent budget, one saying no judge
    is configured (or naming ``JUDGE_MODEL``) is a missing judge, anything else a failed
    call; one naming ``JUDGE_SAMPLE`` is a pair left out of the judge's sample. An
    ``unjudged`` verdict without a reason is a missing judge; no verdict at all means
    ``diff`` has not seen the pair yet, or (``scored``) scored it before verdicts
    existed. ``shadowproxy.decision.summary_sql.cause_sql`` is its SQL twin.
    """
    if verdict is None:
        return UnjudgedCause.NO_VERDICT if scored else UnjudgedCause.AWAITING_DIFF
    words = (reason or "").lower()
    if not words:
        return UnjudgedCause.NO_JUDGE
    if "judge_sample" in words:
        return UnjudgedCause.NOT_SAMPLED
    if "budget" in words or "max_usd" in words:
        return UnjudgedCause.BUDGET
    if "no judge" in words or "judge_model" in words or "not configured" in words:
        return UnjudgedCause.NO_JUDGE
    return UnjudgedCause.JUDGE_FAILED


@dataclass(frozen=True, slots=True)
class Unjudged:
    """Pairs without a verdict for one cause, and what to do about them."""

    cause: UnjudgedCause
    pairs: int
    example_reason: str | None = None

    @property
    def advice(self) -> str:
        n = f"{self.pairs:,} pair{'s' if self.pairs != 1 else ''}"
        if self.cause is UnjudgedCause.AWAITING_DIFF:
            return f"{n} not yet judged: run `shadowproxy diff`"
        if self.cause is UnjudgedCause.NO_VERDICT:
            return (f"{n} scored before verdicts existed: run `shadowproxy diff --rejudge` "
                    "to judge them")
        if self.cause is UnjudgedCause.NO_JUDGE:
            return (f"{n} unjudged: no judge configured. Set SHADOWPROXY_JUDGE_MODEL "
                    "(see the README's \"Choosing a judge\"), then run `shadowproxy diff`")
        if self.cause is UnjudgedCause.NOT_SAMPLED:
            return (f"{n} left out of the judge's sample (SHADOWPROXY_JUDGE_SAMPLE): the "
                    "shares are estimated from the judged sample, and their intervals "
                    "include the sampling")
        if self.cause is UnjudgedCause.BUDGET:
            return (f"{n} unjudged: the judge's budget (SHADOWPROXY_JUDGE_MAX_USD) was "
                    "spent. Run `shadowproxy diff` again to judge them")
        detail = f" ({self.example_reason})" if self.example_reason else ""
        return f"{n} unjudged: the judge failed{detail}. `shadowproxy diff` retries them"

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause.value, "pairs": self.pairs,
                "example_reason": self.example_reason, "advice": self.advice}


@dataclass(frozen=True, slots=True)
class Strata:
    """One tag's pairs with a verdict, split by where the verdict came from: ``tier``
    pairs the tiers settled (all ``equivalent``), and the judge's ``frame`` (pairs the
    tiers could not settle), of which the judge decided ``judged_*``."""

    tier: int = 0
    frame: int = 0
    judged_equivalent: int = 0
    judged_better: int = 0
    judged_worse: int = 0

    @property
    def judged(self) -> int:
        return self.judged_equivalent + self.judged_better + self.judged_worse

    @property
    def sampled(self) -> bool:
        """The judge decided part of the frame, not all of it nor none."""
        return 0 < self.judged < self.frame


def _estimate(strata: tuple[Strata, ...], verdict: str) -> Estimate | None:
    """``verdict``'s share over strata that were sampled; None when nothing was (the
    plain share is then exact) or a frame has no judged pair to estimate from."""
    if not any(s.sampled for s in strata):
        return None
    parts: list[Stratum] = []
    for s in strata:
        known = s.tier if verdict == "equivalent" else 0
        parts.append(Stratum(s.tier, s.tier, known, exact=True))
        parts.append(Stratum(s.frame, s.judged, getattr(s, f"judged_{verdict}")))
    return stratified(parts)


@dataclass(frozen=True, slots=True)
class NoiseFloor:
    """The current model judged against itself: how often a replay is "worse"."""

    pairs: int
    worse: int
    strata: tuple[Strata, ...] = ()

    @property
    def estimate(self) -> Estimate | None:
        """The sampled estimate (None: the counts are the whole truth)."""
        return _estimate(self.strata, "worse")

    @property
    def worse_rate(self) -> float | None:
        estimate = self.estimate
        return estimate.share if estimate is not None else _share(self.worse, self.pairs)

    @property
    def worse_rate_ci95(self) -> Interval | None:
        estimate = self.estimate
        if estimate is not None:
            return Interval.of(estimate)
        return Interval.wilson(self.worse, self.pairs)

    def to_json(self) -> dict[str, Any]:
        ci = self.worse_rate_ci95
        return {"pairs": self.pairs, "worse": self.worse, "worse_rate": self.worse_rate,
                "worse_rate_ci95": ci.to_json() if ci else None}


@dataclass(frozen=True, slots=True)
class JudgeSummary:
    models: tuple[str, ...] = ()
    calls: int = 0
    cost_usd: float = 0.0
    judge_pairs: int = 0  # pairs whose verdict came from the judge (method "judge")
    position_inconsistent_pairs: int = 0

    @property
    def model(self) -> str | None:
        return ", ".join(self.models) if self.models else None

    @property
    def position_inconsistent(self) -> float | None:
        return _share(self.position_inconsistent_pairs, self.judge_pairs)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "models": list(self.models), "calls": self.calls,
                "cost_usd": self.cost_usd, "judge_pairs": self.judge_pairs,
                "position_inconsistent": self.position_inconsistent}


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True, slots=True)
class Timing:
    primary: Percentiles = Percentiles()
    shadow: Percentiles = Percentiles()

    @property
    def p95_ratio(self) -> float | None:
        return ratio(self.shadow.p95, self.primary.p95)

    def to_json(self) -> dict[str, Any]:
        return {"primary": self.primary.to_json(), "shadow": self.shadow.to_json()}


@dataclass(frozen=True, slots=True)
class Costs:
    """Mean cost per 1,000 requests, each side."""

    primary: float | None = None
    shadow: float | None = None

    @property
    def ratio(self) -> float | None:
        return ratio(self.shadow, self.primary)

    def to_json(self) -> dict[str, float | None]:
        return {"primary": self.primary, "shadow": self.shadow}


@dataclass(frozen=True, slots=True)
class Projection:
    """The saving over ``days`` at the recorded volume, or why there is none."""

    days: int
    pairs: int
    hours: float | None
    saving_usd: float | None  # negative: the shadow costs more
    refused: str | None = None

    @property
    def basis(self) -> str:
        hours = "no time window" if self.hours is None else _duration(self.hours)
        return (f"extrapolated from {self.pairs:,} recorded pairs over {hours}; recorded "
                "pairs only (divide by SAMPLE_RATE for all traffic)")

    def to_json(self) -> dict[str, Any]:
        return {"days": self.days, "saving_usd": self.saving_usd, "refused": self.refused,
                "basis": self.basis}


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} seconds"
    if hours < 1:
        return f"{hours * 60:.0f} minutes"
    if hours < 48:
        return f"{hours:.1f} hours"
    return f"{hours / 24:.1f} days"


def project(per_1k: Costs, pairs: int, hours: float | None,
            days: int = PROJECTION_DAYS) -> Projection:
    """Saving per ``days`` from the per-request difference, refused under an hour."""
    if per_1k.primary is None and per_1k.shadow is None:
        return Projection(days, pairs, hours, None, "no priced pairs with both answers yet")
    if per_1k.primary is None or per_1k.shadow is None:
        return Projection(days, pairs, hours, None, "no cost for one side (unpriced model)")
    if hours is None or hours < PROJECTION_MIN_HOURS:
        seen = "a single moment" if not hours else _duration(hours)
        return Projection(days, pairs, hours, None,
                          f"only {seen} of traffic; a projection needs at least "
                          f"{PROJECTION_MIN_HOURS:.0f} hour")
    per_request = (per_1k.primary - per_1k.shadow) / 1000
    return Projection(days, pairs, hours, per_request * pairs / (hours / 24) * days)


@dataclass(frozen=True, slots=True)
class PathCount:
    path: str
    pairs: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "pairs": self.pairs}


@dataclass(frozen=True, slots=True)
class Models:
    """Models seen on each side (from the answers, not the requests)."""

    primary: tuple[str, ...] = ()
    shadow: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {"primary": list(self.primary), "shadow": list(self.shadow)}


@dataclass(frozen=True, slots=True)
class Series:
    """CDF points of one metric for both sides, and how many samples each had."""

    primary: tuple[tuple[float, float], ...] = ()
    shadow: tuple[tuple[float, float], ...] = ()
    samples: int = 0

    def to_json(self) -> dict[str, list[list[float]]]:
        return {"primary": [list(p) for p in self.primary],
                "shadow": [list(p) for p in self.shadow]}


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """An agent's pairs belong together: how many conversations had a shadow judged
    worse at some turn, and at which turn it first happened."""

    conversations: int
    with_worse: int
    first_worse_turns: Mapping[int, int]  # turn → conversations first worse there

    @property
    def worse_share(self) -> float | None:
        return _share(self.with_worse, self.conversations)

    def to_json(self) -> dict[str, Any]:
        return {"conversations": self.conversations, "with_worse": self.with_worse,
                "worse_share": self.worse_share,
                "first_worse_turns": {str(t): n for t, n in
                                      sorted(self.first_worse_turns.items())}}


@dataclass(frozen=True, slots=True)
class ScopeSummary:
    """Everything the report says about one scope: overall, or one tag."""

    pairs_total: int
    pairs_unscored: int
    verdicts: Verdicts
    unjudged: tuple[Unjudged, ...]
    judge: JudgeSummary
    noise_floor: NoiseFloor | None
    tool_call_pairs: int
    tool_call_matched: int
    stop_reason_pairs: int
    stop_reason_matched: int
    shadow_attempted: int
    shadow_failed: int
    mirrored: int
    shadow_outcomes: Mapping[str, int]
    latency_ms: Timing
    ttft_ms: Timing
    cost_usd_per_1k: Costs
    projection: Projection
    json_diff_paths: tuple[PathCount, ...]
    models: Models
    latency_cdf: Series = Series()
    ttft_cdf: Series = Series()
    # Per tag in the scope: where the verdicts came from (the judge's sample).
    strata: tuple[Strata, ...] = ()
    # People's labels and the rates they calibrate (decision.report_human fills it).
    human: HumanReview | None = None

    @property
    def pairs(self) -> int:
        """Pairs with a verdict other than ``unjudged``: the denominator of the shares."""
        return self.verdicts.judged

    @property
    def sampled(self) -> bool:
        """The shares are estimated from the judge's sample of some tag's frame."""
        return any(s.sampled for s in self.strata)

    def _share_of(self, verdict: str) -> float | None:
        estimate = _estimate(self.strata, verdict)
        if estimate is not None:
            return estimate.share
        return _share(getattr(self.verdicts, verdict), self.pairs)

    def _interval_of(self, verdict: str) -> Interval | None:
        estimate = _estimate(self.strata, verdict)
        if estimate is not None:
            return Interval.of(estimate)
        return Interval.wilson(getattr(self.verdicts, verdict), self.pairs)

    @property
    def worse_rate(self) -> float | None:
        return self._share_of("worse")

    @property
    def worse_rate_ci95(self) -> Interval | None:
        return self._interval_of("worse")

    @property
    def better_rate(self) -> float | None:
        return self._share_of("better")

    @property
    def better_rate_ci95(self) -> Interval | None:
        return self._interval_of("better")

    @property
    def agreement(self) -> float | None:
        return self._share_of("equivalent")

    @property
    def agreement_ci95(self) -> Interval | None:
        return self._interval_of("equivalent")

    @property
    def worse_over_noise(self) -> float | None:
        floor = self.noise_floor
        if floor is None or floor.worse_rate is None or self.worse_rate is None:
            return None
        return self.worse_rate - floor.worse_rate

    @property
    def worse_over_noise_ci95(self) -> Interval | None:
        floor = self.noise_floor
        if floor is None or not floor.pairs or not self.pairs:
            return None
        ours, theirs = self.worse_rate_ci95, floor.worse_rate_ci95
        if ours is None or theirs is None or self.worse_rate is None \
                or floor.worse_rate is None:
            return None
        return Interval(*difference(Estimate(self.worse_rate, ours.low, ours.high),
                                    Estimate(floor.worse_rate, theirs.low, theirs.high)))

    def sample_json(self) -> dict[str, Any]:
        """How many pairs the judge saw of those that needed it, per the whole scope."""
        frame = sum(s.frame for s in self.strata)
        judged = sum(s.judged for s in self.strata)
        return {"frame": frame, "judged": judged,
                "not_sampled": self.unjudged_for(UnjudgedCause.NOT_SAMPLED),
                "share": _share(judged, frame), "estimated": self.sampled}

    @property
    def tool_call_match(self) -> float | None:
        return _share(self.tool_call_matched, self.tool_call_pairs)

    @property
    def stop_reason_match(self) -> float | None:
        return _share(self.stop_reason_matched, self.stop_reason_pairs)

    @property
    def shadow_error_rate(self) -> float | None:
        return _share(self.shadow_failed, self.shadow_attempted)

    @property
    def shadow_drop_rate(self) -> float | None:
        return _share(self.shadow_outcomes.get("dropped", 0), self.mirrored)

    @property
    def ttft_streamed_pairs(self) -> int:
        """Pairs behind the TTFT figures: streamed ones only, where latency covers every
        answered pair; so TTFT's p50 may sit above latency's."""
        return self.ttft_cdf.samples

    def unjudged_for(self, cause: UnjudgedCause) -> int:
        return sum(u.pairs for u in self.unjudged if u.cause is cause)

    def to_json(self) -> dict[str, Any]:
        def ci(value: Interval | None) -> list[float] | None:
            return value.to_json() if value else None

        return {
            "pairs": self.pairs,
            "pairs_total": self.pairs_total,
            "pairs_unscored": self.pairs_unscored,
            "verdicts": self.verdicts.to_json(),
            "worse_rate": self.worse_rate, "worse_rate_ci95": ci(self.worse_rate_ci95),
            "better_rate": self.better_rate, "better_rate_ci95": ci(self.better_rate_ci95),
            "agreement": self.agreement, "agreement_ci95": ci(self.agreement_ci95),
            "sample": self.sample_json(),
            "unjudged": [u.to_json() for u in self.unjudged],
            "noise_floor": self.noise_floor.to_json() if self.noise_floor else None,
            "worse_rate_over_noise": self.worse_over_noise,
            "worse_rate_over_noise_ci95": ci(self.worse_over_noise_ci95),
            "judge": self.judge.to_json(),
            "tool_call_match": self.tool_call_match,
            "tool_call_pairs": self.tool_call_pairs,
            "stop_reason_match": self.stop_reason_match,
            "shadow_error_rate": self.shadow_error_rate,
            "shadow_drop_rate": self.shadow_drop_rate,
            "shadow_outcomes": dict(sorted(self.shadow_outcomes.items())),
            "latency_ms": self.latency_ms.to_json(),
            "ttft_ms": self.ttft_ms.to_json(),
            "ttft_streamed_pairs": self.ttft_streamed_pairs,
            "cost_usd_per_1k": self.cost_usd_per_1k.to_json(),
            "projected_saving_usd": self.projection.saving_usd,
            "projection": self.projection.to_json(),
            "json_diff_paths": [p.to_json() for p in self.json_diff_paths],
            "models": self.models.to_json(),
            "cdf": {"latency_ms": self.latency_cdf.to_json(),
                    "ttft_ms": self.ttft_cdf.to_json()},
            "human": self.human.to_json() if self.human else None,
        }


@dataclass(frozen=True, slots=True)
class Window:
    """The traffic the report covers: the filter, and the first and last pair seen."""

    since: datetime | None = None
    first: datetime | None = None
    last: datetime | None = None

    @property
    def hours(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return (self.last - self.first).total_seconds() / 3600

    @property
    def span(self) -> str:
        return "no pairs" if self.hours is None else _duration(self.hours)

    def to_json(self) -> dict[str, Any]:
        hours = self.hours
        return {"since": self.since.isoformat() if self.since else None,
                "first": self.first.isoformat() if self.first else None,
                "last": self.last.isoformat() if self.last else None,
                "days": hours / 24 if hours is not None else None}


@dataclass(frozen=True, slots=True)
class Answer:
    model: str | None
    text: str
    tool_calls: tuple[Any, ...]
    stop_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "text": self.text, "tool_calls": list(self.tool_calls),
                "stop_reason": self.stop_reason}


@dataclass(frozen=True, slots=True)
class WorstPair:
    """A pair the judge found worse, with what the user asked and why."""

    id: str
    tag: str | None
    received_at: datetime
    prompt: str
    primary: Answer
    shadow: Answer
    verdict_method: str | None
    judge_model: str | None
    judge_reason: str | None
    json_diff_paths: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tag": self.tag, "received_at": self.received_at.isoformat(),
                "prompt": self.prompt, "primary": self.primary.to_json(),
                "shadow": self.shadow.to_json(), "verdict_method": self.verdict_method,
                "judge_model": self.judge_model, "judge_reason": self.judge_reason,
                "json_diff_paths": list(self.json_diff_paths)}


@dataclass(frozen=True, slots=True)
class Report:
    generated_at: datetime
    window: Window
    tag_filter: str | None
    overall: ScopeSummary
    by_tag: Mapping[str, ScopeSummary] = field(default_factory=dict)
    worst: tuple[WorstPair, ...] = ()
    projection_days: int = PROJECTION_DAYS
    # Per tag ("" for all traffic): conversations, those with a shadow judged worse, and
    # the turn at which that first happens.
    conversations: Mapping[str, ConversationSummary] = field(default_factory=dict)
    # One notice per model the pairs name (primary, shadow, judge) that is deprecated or
    # retired on the report's day; a retired primary's with its errors since then.
    lifecycle: tuple[LifecycleNotice, ...] = ()
    # Cutover in steps: each tag's plan, events and pairs per step (shadowproxy/cutover).
    cutover: CutoverSection = field(default_factory=CutoverSection)
    # Pairs stored before partitioning (migration 0007) not yet moved into the day
    # partitions: the report counts only moved pairs until the move ends (None: no move).
    pairs_still_moving: int | None = None

    # Sections other modules add (shadowproxy.decision.report.SECTIONS), by name.
    sections: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lifecycle_warnings(self) -> tuple[str, ...]:
        """The notices as sentences, e.g. "claude-sonnet-4-5 retired on 2026-11-30: its
        requests fail at the provider"."""
        return tuple(n.message for n in self.lifecycle)

    def scopes(self) -> list[tuple[str, ScopeSummary]]:
        """("overall", …) then ("tag:<name>", …) for every tag, in name order."""
        return [("overall", self.overall),
                *((f"tag:{tag}", s) for tag, s in sorted(self.by_tag.items()))]

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "window": self.window.to_json(),
            "filter": {"tag": self.tag_filter},
            "projection_days": self.projection_days,
            "overall": self.overall.to_json(),
            "by_tag": {tag: s.to_json() for tag, s in sorted(self.by_tag.items())},
            "worst": [w.to_json() for w in self.worst],
            "conversations": {tag or "overall": c.to_json()
                              for tag, c in sorted(self.conversations.items())},
            "lifecycle_warnings": list(self.lifecycle_warnings),
            "pairs_still_moving": self.pairs_still_moving,
            **{name: value.to_json() if hasattr(value, "to_json") else value
               for name, value in sorted(self.sections.items())},
            "cutover": self.cutover.to_json(),
            "lifecycle": [n.to_json() for n in self.lifecycle],
        }
