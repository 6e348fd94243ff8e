"""The demo's moment: what people's labels changed, in words a release manager reads.

Per tag the judge decided, the worse rate by the judge alone and calibrated by the
labels side by side, each with what the gate said of it, beside the simulated truth;
then, for every tag where the two gates disagree, why.
"""

from __future__ import annotations

from collections.abc import Mapping

from shadowproxy.decision.gate import GateResult
from shadowproxy.decision.report_model import Report

__all__ = ["calibration_story"]


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _verdict(result: GateResult, tag: str) -> str:
    for row in result.criteria:
        if row.scope == f"tag:{tag}" and row.criterion == "max_worse_rate":
            return row.result.upper() if row.result == "fail" else row.result
    return "n/a"


def calibration_story(report: Report, judge_only: GateResult, calibrated: GateResult,
                      truth: Mapping[str, float]) -> list[str]:
    """Lines to print: the side-by-side table, then why the verdicts differ."""
    header = ("worse rate", "judge alone (95% CI): gate", "calibrated by people: gate",
              "truth")
    rows = [header]
    flipped: list[str] = []
    for tag, scope in sorted(report.by_tag.items()):
        human = scope.human
        if human is None or not human.frame or scope.worse_rate is None:
            continue
        ci = scope.worse_rate_ci95
        judged = (f"{_pct(scope.worse_rate)} ({_pct(ci.low)}-{_pct(ci.high)}): "
                  f"{_verdict(judge_only, tag)}" if ci else "n/a")
        worse = human.worse
        people = (f"{_pct(worse.rate)} ({_pct(worse.low)}-{_pct(worse.high)}), "
                  f"{human.labelled_pairs} labels: {_verdict(calibrated, tag)}"
                  if worse else (human.note or "n/a"))
        rows.append((tag, judged, people, _pct(truth[tag]) if tag in truth else "?"))
        if _verdict(judge_only, tag) == "pass" and _verdict(calibrated, tag) == "FAIL":
            flipped.append(tag)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    for tag in flipped:
        human = report.by_tag[tag].human
        assert human is not None
        kappa = human.judge_kappa
        lines.append(
            f"{tag}: the judge alone passes it, people's labels fail it. "
            f"{human.summary[:1].upper()}{human.summary[1:]}; judge-people kappa "
            f"{'n/a' if kappa is None else f'{kappa:.2f}'}. The calibrated rate takes the "
            f"judge's verdict on all {human.frame} pairs it decided and corrects it by how "
            f"often people disagreed on the {human.labelled_pairs} they labelled, so its "
            "interval holds however biased the judge is.")
    return lines
