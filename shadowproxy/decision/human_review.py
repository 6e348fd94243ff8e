"""What people's labels say about one scope of the report: how often the judge agrees
with them, and the worse and better rates calibrated by them.

Pure: filled by :mod:`shadowproxy.decision.report_human` from SQL counts, read by the
report's JSON and HTML, the gate and the demo. Counts are over the judge's *frame* (pairs
the judge decided, with both answers), each labelled pair with its first reviewer's
label; skips are counted but are not labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shadowproxy.decision.calibration import (
    MIN_LABELS,
    VERDICTS,
    Calibrated,
    Cell,
    Stratum,
    agreement,
    calibrate,
    cohen_kappa,
    labels_needed,
)

__all__ = ["REVIEW_PAGE", "Disagreement", "HumanReview"]

# Where people label: on the admin listener, signed in with a reviewer token.
REVIEW_PAGE = "/review"


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A labelled pair where the judge and the first person who labelled it differ."""

    pair_id: str
    tag: str | None
    judge: str
    human: str
    judge_reason: str | None
    note: str | None
    question: str = ""  # the user's last turn, as the worst pairs show it

    def to_json(self) -> dict[str, Any]:
        return {"pair": self.pair_id, "tag": self.tag, "judge": self.judge,
                "human": self.human, "judge_reason": self.judge_reason, "note": self.note,
                "question": self.question}


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class HumanReview:
    """One scope's labels: its tags as strata, and the counts that are not per pair."""

    strata: tuple[Stratum, ...]
    labels: int = 0  # every label, an overlapping second one included; skips excluded
    reviewers: int = 0
    skips: int = 0
    human_agreement_pairs: int = 0  # pairs labelled by two people
    human_agreeing_pairs: int = 0  # of which the first two labels agree
    disagreements: tuple[Disagreement, ...] = ()

    @property
    def confusion(self) -> dict[Cell, int]:
        cells = {(j, h): 0 for j in VERDICTS for h in VERDICTS}
        for stratum in self.strata:
            for cell, n in stratum.confusion.items():
                cells[cell] = cells.get(cell, 0) + n
        return cells

    @property
    def labelled_pairs(self) -> int:
        return sum(s.labelled for s in self.strata)

    @property
    def frame(self) -> int:
        return sum(s.frame for s in self.strata)

    @property
    def disagreeing_pairs(self) -> int:
        return sum(n for (judge, human), n in self.confusion.items() if judge != human)

    @property
    def judge_agreement(self) -> float | None:
        return agreement(self.confusion)

    @property
    def judge_kappa(self) -> float | None:
        return cohen_kappa(self.confusion)

    @property
    def human_agreement(self) -> float | None:
        return _share(self.human_agreeing_pairs, self.human_agreement_pairs)

    @property
    def skip_rate(self) -> float | None:
        return _share(self.skips, self.skips + self.labels)

    @property
    def worse(self) -> Calibrated | None:
        """None also where the judge decided nothing: the verdicts need no calibrating."""
        return calibrate(self.strata, "worse") if self.frame else None

    @property
    def better(self) -> Calibrated | None:
        return calibrate(self.strata, "better") if self.frame else None

    @property
    def labels_needed(self) -> int:
        """Labelled pairs for a ±2-point interval on the calibrated worse rate."""
        return labels_needed(self.strata, "worse")

    @property
    def more_labels_needed(self) -> int:
        """Labels still missing before the calibrated rates can be shown at all."""
        return sum(max(0, min(MIN_LABELS, s.frame) - s.labelled)
                   for s in self.strata if s.frame and not s.calibratable)

    @property
    def whole_frame_labelled(self) -> bool:
        return all(s.census or s.frame == 0 for s in self.strata)

    @property
    def missed_worse(self) -> int:
        """Pairs people found worse that the judge did not."""
        return sum(n for (judge, human), n in self.confusion.items()
                   if human == "worse" and judge != "worse")

    @property
    def false_worse(self) -> int:
        """Pairs the judge found worse that people did not."""
        return sum(n for (judge, human), n in self.confusion.items()
                   if judge == "worse" and human != "worse")

    @property
    def note(self) -> str | None:
        """Why the calibrated rates are missing, when they are."""
        if not self.frame:
            return "no pair needed the judge: the verdicts are exact or structural matches"
        more = self.more_labels_needed
        if more:
            return (f"{_plural(more, 'more label')} needed for a calibrated rate "
                    f"(label pairs on the review page, {REVIEW_PAGE})")
        return None

    @property
    def summary(self) -> str:
        """One line a release manager can read."""
        if not self.frame:
            return "no pair needed the judge here, so there is nothing for people to check"
        n = self.labelled_pairs
        if not n:
            return (f"no labels yet: label pairs on the review page ({REVIEW_PAGE}); "
                    f"{self.more_labels_needed:,} needed for a calibrated rate")
        wrong = self.disagreeing_pairs
        if not wrong:
            line = f"people agreed with the judge on all {_plural(n, 'labelled pair')}"
        else:
            line = f"people disagreed with the judge on {wrong:,} of {_plural(n, 'pair')}"
            missed, harsh = self.missed_worse, self.false_worse
            if missed > harsh:
                line += (f"; the judge missed worse answers ({missed:,} that people found "
                         "worse, it did not)")
            elif harsh > missed:
                line += (f"; the judge called answers worse that people did not "
                         f"({harsh:,})")
        if self.note and self.more_labels_needed:
            line += f"; {self.note}"
        return line

    def to_json(self) -> dict[str, Any]:
        worse, better = self.worse, self.better

        def ci(value: Calibrated | None) -> list[float] | None:
            return [value.low, value.high] if value else None

        return {
            "labels": self.labels,
            "labelled_pairs": self.labelled_pairs,
            "reviewers": self.reviewers,
            "skips": self.skips,
            "skip_rate": self.skip_rate,
            "frame": self.frame,
            "judge_agreement": self.judge_agreement,
            "judge_kappa": self.judge_kappa,
            "confusion": _confusion_json(self.confusion),
            "human_agreement": self.human_agreement,
            "human_agreement_pairs": self.human_agreement_pairs,
            "worse_rate_calibrated": worse.rate if worse else None,
            "worse_rate_calibrated_ci95": ci(worse),
            "better_rate_calibrated": better.rate if better else None,
            "better_rate_calibrated_ci95": ci(better),
            "lambda": worse.lam if worse else None,
            "lambda_better": better.lam if better else None,
            "labels_needed": self.labels_needed,
            "more_labels_needed": self.more_labels_needed,
            "note": self.note,
            "summary": self.summary,
            "disagreements": [d.to_json() for d in self.disagreements],
        }


def _confusion_json(cells: Mapping[Cell, int]) -> dict[str, dict[str, int]]:
    """``{judge's verdict: {person's verdict: pairs}}``."""
    return {judge: {human: cells.get((judge, human), 0) for human in VERDICTS}
            for judge in VERDICTS}
