"""The cutover gate: a report plus a policy give pass, fail or "not enough data".

A CI pipeline acts on the exit code (0 pass, 1 fail, 2 not enough data). A scope (overall,
or a tag with ``per_tag = true``) with fewer verdicts than ``min_pairs`` (or none at all)
is too noisy to trust either way, so its rows are "not enough data"; but a scope that has
enough data and fails makes the verdict FAIL even when another scope lacks data, so a
small tag cannot hide a clear overall failure. Shares are judged on the side of their
95% interval that protects the user: ``min_agreement`` on the lower bound,
``max_worse_rate`` on the upper bound, ``max_worse_rate_over_noise`` on the upper bound
of Newcombe's interval for the difference; a small sample cannot pass by luck.

With ``min_human_labels`` the judge is checked by people (PRODUCT.md, "Human review"): a
scope whose judge decided pairs needs that many labelled pairs (or its whole frame
labelled), else it is "not enough data" naming the review page; ``max_worse_rate`` and
``max_worse_rate_over_noise`` are then judged on the calibrated interval, which holds
however biased the judge is. ``min_judge_kappa`` fails a judge people disagree with
(Cohen's κ, on the point estimate).

Without a judge, free-form pairs stay ``unjudged``: a verdict criterion over a scope with
such pairs is "not enough data" naming the judge, never a verdict computed from the few
pairs that matched exactly. A criterion whose number is unavailable (no tool calls seen,
no cost for an unpriced model, no noise floor) is ``n/a`` and does not decide.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shadowproxy.decision.calibration import MIN_LABELS, mover_difference
from shadowproxy.decision.human_review import REVIEW_PAGE, HumanReview
from shadowproxy.decision.report_model import Interval, Report, ScopeSummary, UnjudgedCause

__all__ = ["Basis", "Criterion", "GateResult", "Policy", "PolicyError", "Verdict", "evaluate",
           "format_table", "load_policy", "parse_policy", "show_value"]


class PolicyError(Exception):
    """The policy file is unreadable or has a bad key; the message is one line."""


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT = "insufficient"

    @property
    def exit_code(self) -> int:
        return {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.INSUFFICIENT: 2}[self]


@dataclass(frozen=True, slots=True)
class Policy:
    min_pairs: int | None = None
    max_worse_rate: float | None = None
    max_worse_rate_over_noise: float | None = None
    min_agreement: float | None = None
    min_tool_call_match: float | None = None
    max_shadow_error_rate: float | None = None
    max_p95_latency_ratio: float | None = None
    max_cost_ratio: float | None = None
    per_tag: bool = False
    min_human_labels: int | None = None
    min_judge_kappa: float | None = None


_SHARES = ("max_worse_rate", "max_worse_rate_over_noise", "min_agreement",
           "min_tool_call_match", "max_shadow_error_rate")
_RATIOS = ("max_p95_latency_ratio", "max_cost_ratio")


def parse_policy(raw: dict[str, Any], source: str = "policy") -> Policy:
    """Check every key and type; a TOML integer is fine where a number is expected."""
    known = {f.name for f in fields(Policy)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise PolicyError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        if key == "per_tag":
            if not isinstance(value, bool):
                raise PolicyError(f"{source}: per_tag must be true or false, got {value!r}")
        elif key in ("min_pairs", "min_human_labels"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError(f"{source}: {key} must be a whole number >= 0, "
                                  f"got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PolicyError(f"{source}: {key} must be a number, got {value!r}")
            value = float(value)
            if key in _SHARES and not 0.0 <= value <= 1.0:
                raise PolicyError(f"{source}: {key} must be between 0 and 1, got {value!r}")
            if key in _RATIOS and value <= 0.0:
                raise PolicyError(f"{source}: {key} must be above 0, got {value!r}")
            if key == "min_judge_kappa" and not -1.0 <= value <= 1.0:
                raise PolicyError(f"{source}: min_judge_kappa must be between -1 and 1, "
                                  f"got {value!r}")
        values[key] = value
    return Policy(**values)


def load_policy(path: Path) -> Policy:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise PolicyError(f"{path}: policy file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    return parse_policy(raw, str(path))


_UNAVAILABLE = {
    "max_worse_rate": "no pair with a verdict",
    "min_agreement": "no pair with a verdict",
    "max_worse_rate_over_noise": "no noise floor (no replay with a verdict)",
    "min_tool_call_match": "no tool calls seen",
    "max_shadow_error_rate": "no shadow call attempted",
    "max_p95_latency_ratio": "no latency for a side",
    "max_cost_ratio": "no cost for a side (unpriced model)",
    "min_judge_kappa": "no κ (no labels, or one verdict throughout)",
}


class Basis(enum.StrEnum):
    """What number of the report a criterion compares with its threshold."""

    COUNT = "pairs with a verdict"
    OBSERVED = "observed"
    LOWER_BOUND = "lower bound of 95% CI"
    UPPER_BOUND = "upper bound of 95% CI"
    UPPER_BOUND_DIFFERENCE = "upper bound of 95% CI of the difference"
    LABELS = "labelled pairs"
    # Fewer than asked, but every pair the judge decided: the labels are the whole truth.
    WHOLE_FRAME = "labelled pairs: every pair the judge decided"
    CALIBRATED_UPPER_BOUND = "upper bound of calibrated 95% CI"
    CALIBRATED_UPPER_BOUND_DIFFERENCE = "upper bound of calibrated 95% CI of the difference"


@dataclass(frozen=True, slots=True)
class Criterion:
    scope: str  # "overall" or "tag:<name>"
    criterion: str
    observed: float | None  # the number compared (an interval bound where ``basis`` says)
    threshold: float
    # None: the number is unavailable, so the criterion cannot decide anything.
    passed: bool | None
    # The scope has too few pairs (or lacks a judge) for this row to count.
    insufficient: bool = False
    basis: Basis = Basis.OBSERVED
    # Why the row has not enough data, or what the number stands on, in words.
    note: str | None = None

    @property
    def at_least(self) -> bool:
        return self.criterion.startswith("min_")

    @property
    def result(self) -> str:
        if self.insufficient:
            return "not enough data"
        return "n/a" if self.passed is None else "pass" if self.passed else "fail"

    @property
    def compared(self) -> str:
        """What is compared, in words: "upper bound of 95% CI 6.1% ≤ 5.0%"."""
        sign = "≥" if self.at_least else "≤"
        if self.observed is None:
            return f"{_UNAVAILABLE.get(self.criterion, 'not measured')}: n/a"
        observed = show_value(self.observed, self.criterion)
        threshold = show_value(self.threshold, self.criterion)
        if self.basis in (Basis.COUNT, Basis.LABELS):
            return f"{observed} {self.basis.value} {sign} {threshold}"
        if self.basis is Basis.WHOLE_FRAME:
            return f"{observed} {self.basis.value} ({threshold} asked)"
        if self.basis is Basis.OBSERVED:
            return f"{observed} {sign} {threshold}"
        return f"{self.basis.value} {observed} {sign} {threshold}"

    def as_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "criterion": self.criterion, "observed": self.observed,
                "threshold": self.threshold, "passed": self.passed,
                "insufficient": self.insufficient, "basis": self.basis.value,
                "compared": self.compared, "note": self.note}


@dataclass(slots=True)
class GateResult:
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        # A failure where the data suffices is a failure, whatever other scopes lack.
        if any(c.passed is False and not c.insufficient for c in self.criteria):
            return Verdict.FAIL
        if any(c.insufficient for c in self.criteria):
            return Verdict.INSUFFICIENT
        return Verdict.PASS

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    @property
    def reasons(self) -> list[str]:
        """Why there is not enough data, one line per distinct reason."""
        seen: dict[str, None] = {}
        for c in self.criteria:
            if c.insufficient and c.note:
                seen.setdefault(c.note, None)
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "exit_code": self.exit_code,
                "criteria": [c.as_json() for c in self.criteria],
                "reasons": self.reasons}


_VERDICT_CRITERIA = ("max_worse_rate", "max_worse_rate_over_noise", "min_agreement")


def _shortage(scope: str, numbers: ScopeSummary, min_pairs: int) -> str | None:
    """Why this scope has too few verdicts, naming the judge when it is missing."""
    no_judge = numbers.unjudged_for(UnjudgedCause.NO_JUDGE)
    if no_judge:
        return (f"{scope}: {no_judge:,} pairs unjudged because no judge is configured; "
                "a judge is needed: set SHADOWPROXY_JUDGE_MODEL and run `shadowproxy diff`")
    if numbers.pairs >= min_pairs:
        return None
    waiting = [u.advice for u in numbers.unjudged]
    tail = f" ({'; '.join(waiting)})" if waiting else ""
    return f"{scope}: {numbers.pairs:,} pairs with a verdict, {min_pairs:,} needed{tail}"


def _bound(interval: Interval | None, upper: bool) -> float | None:
    if interval is None:
        return None
    return interval.high if upper else interval.low


def _judge_scope(scope: str, numbers: ScopeSummary, policy: Policy) -> list[Criterion]:
    pairs = numbers.pairs
    min_pairs = policy.min_pairs if policy.min_pairs is not None else 1
    too_few = pairs < min_pairs
    short = _shortage(scope, numbers, min_pairs)
    no_judge = numbers.unjudged_for(UnjudgedCause.NO_JUDGE) > 0
    rows = [Criterion(scope, "min_pairs", float(pairs), float(min_pairs),
                      not too_few, insufficient=too_few or no_judge,
                      basis=Basis.COUNT, note=short)]

    def check(name: str, observed: float | None, threshold: float | None,
              basis: Basis = Basis.OBSERVED, *, needs_verdicts: bool = False) -> None:
        if threshold is None:
            return
        at_least = name.startswith("min_")
        passed = None if observed is None else (
            observed >= threshold if at_least else observed <= threshold)
        # Verdict shares over a sample the judge never saw would be biased towards the
        # pairs that matched exactly: without a judge, they are not enough data.
        insufficient = too_few or (needs_verdicts and no_judge) or (
            observed is None and pairs == 0)
        rows.append(Criterion(scope, name, observed, threshold, passed,
                              insufficient=insufficient, basis=basis,
                              note=short if insufficient else None))

    human = numbers.human
    if policy.min_human_labels is not None and (human is None or human.frame):
        rows.extend(_calibrated_rows(scope, numbers, human, policy, short))
    else:
        if policy.min_human_labels is not None:
            rows.append(Criterion(scope, "min_human_labels", 0.0,
                                  float(policy.min_human_labels), None, basis=Basis.LABELS,
                                  note="no pair needed the judge: nothing to label"))
        check("max_worse_rate", _bound(numbers.worse_rate_ci95, upper=True),
              policy.max_worse_rate, Basis.UPPER_BOUND, needs_verdicts=True)
        check("max_worse_rate_over_noise", _bound(numbers.worse_over_noise_ci95, upper=True),
              policy.max_worse_rate_over_noise, Basis.UPPER_BOUND_DIFFERENCE,
              needs_verdicts=True)
    if policy.min_judge_kappa is not None:
        rows.append(_kappa_row(scope, human, policy, policy.min_judge_kappa))
    check("min_agreement", _bound(numbers.agreement_ci95, upper=False),
          policy.min_agreement, Basis.LOWER_BOUND, needs_verdicts=True)
    check("min_tool_call_match", numbers.tool_call_match, policy.min_tool_call_match)
    check("max_shadow_error_rate", numbers.shadow_error_rate, policy.max_shadow_error_rate)
    check("max_p95_latency_ratio", numbers.latency_ms.p95_ratio,
          policy.max_p95_latency_ratio)
    check("max_cost_ratio", numbers.cost_usd_per_1k.ratio, policy.max_cost_ratio)
    return rows


def _labels_short(scope: str, human: HumanReview | None, wanted: int) -> str | None:
    """Why this scope has too few labels for the judge to be checked, or None."""
    if human is not None and (human.whole_frame_labelled or human.labelled_pairs >= wanted):
        return None
    labelled = human.labelled_pairs if human is not None else 0
    return (f"{scope}: {labelled:,} of {wanted:,} human labels needed; label pairs on the "
            f"review page ({REVIEW_PAGE} on the admin listener)")


def _calibrated_rows(scope: str, numbers: ScopeSummary, human: HumanReview | None,
                     policy: Policy, short: str | None) -> list[Criterion]:
    """``min_human_labels`` and the worse rates, judged on the calibrated interval."""
    wanted = policy.min_human_labels or 0
    labelled = human.labelled_pairs if human is not None else 0
    few = _labels_short(scope, human, wanted)
    whole = few is None and labelled < wanted  # passes on the whole frame, not the count
    rows = [Criterion(scope, "min_human_labels", float(labelled), float(wanted),
                      few is None, insufficient=few is not None,
                      basis=Basis.WHOLE_FRAME if whole else Basis.LABELS, note=few)]
    worse = human.worse if human is not None else None
    # Calibrated rates need MIN_LABELS per tag even when min_human_labels asks fewer.
    missing = short or few or (None if worse is not None else
                               f"{scope}: {human.note if human else 'no labels'}")
    floor = numbers.noise_floor
    over_noise: float | None = None
    if worse is not None and floor is not None and floor.worse_rate is not None:
        ci = floor.worse_rate_ci95
        assert ci is not None
        over_noise = mover_difference(worse, floor.worse_rate, ci.low, ci.high)[1]
    for name, observed, threshold, basis in (
            ("max_worse_rate", worse.high if worse else None, policy.max_worse_rate,
             Basis.CALIBRATED_UPPER_BOUND),
            ("max_worse_rate_over_noise", over_noise, policy.max_worse_rate_over_noise,
             Basis.CALIBRATED_UPPER_BOUND_DIFFERENCE)):
        if threshold is None:
            continue
        lacking = missing is not None
        rows.append(Criterion(scope, name, observed, threshold,
                              None if observed is None else observed <= threshold,
                              insufficient=lacking, basis=basis,
                              note=missing if lacking else None))
    return rows


def _kappa_row(scope: str, human: HumanReview | None, policy: Policy,
               threshold: float) -> Criterion:
    """Cohen's κ between the judge and people, on the point estimate."""
    if human is not None and not human.frame:
        return Criterion(scope, "min_judge_kappa", None, threshold, None,
                         note="no pair needed the judge")
    kappa = human.judge_kappa if human is not None else None
    few = _labels_short(scope, human, policy.min_human_labels or MIN_LABELS)
    return Criterion(scope, "min_judge_kappa", kappa, threshold,
                     None if kappa is None else kappa >= threshold,
                     insufficient=few is not None, note=few)


def evaluate(report: Report, policy: Policy) -> GateResult:
    """Judge ``overall`` and, with ``per_tag``, every tag of a report."""
    result = GateResult(_judge_scope("overall", report.overall, policy))
    if policy.per_tag:
        for tag, numbers in sorted(report.by_tag.items()):
            result.criteria.extend(_judge_scope(f"tag:{tag}", numbers, policy))
    return result


def show_value(value: float | None, criterion: str) -> str:
    if value is None:
        return "n/a"
    if criterion in ("min_pairs", "min_human_labels"):
        return f"{int(value):,}"
    if criterion == "min_judge_kappa":
        return f"κ {value:.2f}"
    if criterion.endswith("_ratio"):
        return f"{value:.2f}x"
    return f"{value:.1%}"


def format_table(result: GateResult) -> str:
    """A fixed-width table for the terminal, then why data is short, then the verdict."""
    header = ("scope", "criterion", "compared", "result")
    body = [(c.scope, c.criterion, c.compared,
             c.result.upper() if c.result == "fail" else c.result)
            for c in result.criteria]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *body]]
    lines += [f"not enough data: {reason}" for reason in result.reasons]
    words = {Verdict.PASS: "PASS", Verdict.FAIL: "FAIL",
             Verdict.INSUFFICIENT: "NOT ENOUGH DATA"}
    lines.append(f"verdict: {words[result.verdict]} (exit {result.exit_code})")
    return "\n".join(lines)
