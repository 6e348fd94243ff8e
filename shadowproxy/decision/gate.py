"""The cutover gate: a report plus a policy give pass, fail or "not enough data".

A CI pipeline acts on the exit code (0 pass, 1 fail, 2 not enough data). Not enough data
wins over fail: with fewer pairs than ``min_pairs`` (or none at all) a scope's numbers
are too noisy to trust either way. ``min_agreement`` is judged on the lower bound of the
95% interval, so a small sample cannot pass by luck. With ``per_tag = true`` every tag in
``by_tag`` is judged on its own as well as the overall numbers; untagged pairs are only
judged within the overall scope. A criterion whose number is unavailable (no tool calls
seen, no cost for an unpriced model) is shown as ``n/a`` and does not decide the verdict.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["Criterion", "GateResult", "Policy", "PolicyError", "Verdict", "evaluate",
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
    min_agreement: float | None = None
    min_tool_call_match: float | None = None
    max_shadow_error_rate: float | None = None
    max_p95_latency_ratio: float | None = None
    max_cost_ratio: float | None = None
    per_tag: bool = False


_SHARES = ("min_agreement", "min_tool_call_match", "max_shadow_error_rate")
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
        elif key == "min_pairs":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError(f"{source}: min_pairs must be a whole number >= 0, "
                                  f"got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PolicyError(f"{source}: {key} must be a number, got {value!r}")
            value = float(value)
            if key in _SHARES and not 0.0 <= value <= 1.0:
                raise PolicyError(f"{source}: {key} must be between 0 and 1, got {value!r}")
            if key in _RATIOS and value <= 0.0:
                raise PolicyError(f"{source}: {key} must be above 0, got {value!r}")
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


@dataclass(frozen=True, slots=True)
class Criterion:
    scope: str  # "overall" or "tag:<name>"
    criterion: str
    observed: float | None
    threshold: float
    # None: the number is unavailable, so the criterion cannot decide anything.
    passed: bool | None
    # The scope has too few pairs for this row to count.
    insufficient: bool = False

    @property
    def result(self) -> str:
        if self.insufficient:
            return "not enough data"
        return "n/a" if self.passed is None else "pass" if self.passed else "fail"

    def as_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "criterion": self.criterion, "observed": self.observed,
                "threshold": self.threshold, "passed": self.passed,
                "insufficient": self.insufficient}


@dataclass(slots=True)
class GateResult:
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if any(c.insufficient for c in self.criteria):
            return Verdict.INSUFFICIENT
        if any(c.passed is False for c in self.criteria):
            return Verdict.FAIL
        return Verdict.PASS

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "exit_code": self.exit_code,
                "criteria": [c.as_json() for c in self.criteria]}


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom


def _judge_scope(scope: str, numbers: dict[str, Any], policy: Policy) -> list[Criterion]:
    pairs = int(numbers.get("pairs") or 0)
    min_pairs = policy.min_pairs if policy.min_pairs is not None else 1
    too_few = pairs < min_pairs
    rows = [Criterion(scope, "min_pairs", float(pairs), float(min_pairs), not too_few,
                      insufficient=too_few)]

    def check(name: str, observed: float | None, threshold: float | None,
              at_least: bool) -> None:
        if threshold is None:
            return
        passed = None if observed is None else (
            observed >= threshold if at_least else observed <= threshold)
        rows.append(Criterion(scope, name, observed, threshold, passed,
                              insufficient=too_few or (observed is None and pairs == 0)))

    interval = numbers.get("agreement_ci95")
    check("min_agreement", interval[0] if interval else None, policy.min_agreement, True)
    check("min_tool_call_match", numbers.get("tool_call_match"),
          policy.min_tool_call_match, True)
    check("max_shadow_error_rate", numbers.get("shadow_error_rate"),
          policy.max_shadow_error_rate, False)
    latency = numbers.get("latency_ms") or {}
    check("max_p95_latency_ratio",
          _ratio((latency.get("shadow") or {}).get("p95"),
                 (latency.get("primary") or {}).get("p95")),
          policy.max_p95_latency_ratio, False)
    cost = numbers.get("cost_usd_per_1k") or {}
    check("max_cost_ratio", _ratio(cost.get("shadow"), cost.get("primary")),
          policy.max_cost_ratio, False)
    return rows


def evaluate(report: dict[str, Any], policy: Policy) -> GateResult:
    """Judge ``overall`` and, with ``per_tag``, every tag of a ``build_report`` result."""
    result = GateResult(_judge_scope("overall", report["overall"], policy))
    if policy.per_tag:
        for tag, numbers in sorted(report.get("by_tag", {}).items()):
            result.criteria.extend(_judge_scope(f"tag:{tag}", numbers, policy))
    return result


def show_value(value: float | None, criterion: str) -> str:
    if value is None:
        return "n/a"
    if criterion == "min_pairs":
        return str(int(value))
    if criterion.endswith("_ratio"):
        return f"{value:.2f}x"
    return f"{value:.1%}"


def format_table(result: GateResult) -> str:
    """A fixed-width table for the terminal, then the verdict line."""
    header = ("scope", "criterion", "observed", "threshold", "result")
    body = []
    for c in result.criteria:
        body.append((c.scope, c.criterion, show_value(c.observed, c.criterion),
                     show_value(c.threshold, c.criterion),
                     c.result.upper() if c.result == "fail" else c.result))
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *body]]
    words = {Verdict.PASS: "PASS", Verdict.FAIL: "FAIL",
             Verdict.INSUFFICIENT: "NOT ENOUGH DATA"}
    lines.append(f"verdict: {words[result.verdict]} (exit {result.exit_code})")
    return "\n".join(lines)
