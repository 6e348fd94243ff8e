"""The report's cutover section: each tag's plan, its events, and per step the pairs it
served and their verdicts. Pure data; :mod:`.report_section` fills it with SQL
aggregates (one row per step, never one per pair)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CutoverSection", "EventView", "StepPairs", "TagCutover"]

SERVED = ("shadow", "primary", "fallback")
VERDICTS = ("equivalent", "better", "worse", "unjudged")


@dataclass(frozen=True, slots=True)
class EventView:
    action: str
    from_percent: int
    to_percent: int
    reason: str
    actor: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "from_percent": self.from_percent,
                "to_percent": self.to_percent, "reason": self.reason, "actor": self.actor,
                "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class StepPairs:
    """The pairs received while the tag stood at one percent (from an event to the next)."""

    percent: int
    began_by: str  # the event's action: start, advance, rollback or guard
    began: datetime
    ended: datetime | None  # None: the current step
    pairs: int
    served: Mapping[str, int] = field(default_factory=dict)  # shadow / primary / fallback
    verdicts: Mapping[str, int] = field(default_factory=dict)  # equivalent … unjudged
    no_verdict: int = 0  # a side failed, or diff has not scored them yet

    @property
    def worse_rate(self) -> float | None:
        judged = sum(self.verdicts.get(v, 0) for v in ("equivalent", "better", "worse"))
        return self.verdicts.get("worse", 0) / judged if judged else None

    def to_json(self) -> dict[str, Any]:
        return {"percent": self.percent, "began_by": self.began_by,
                "began": self.began.isoformat(),
                "ended": self.ended.isoformat() if self.ended else None,
                "pairs": self.pairs, "served_by": {k: self.served.get(k, 0) for k in SERVED},
                "verdicts": {k: self.verdicts.get(k, 0) for k in VERDICTS},
                "no_verdict": self.no_verdict, "worse_rate": self.worse_rate}


@dataclass(frozen=True, slots=True)
class TagCutover:
    tag: str
    steps: tuple[int, ...]
    step: int  # index into steps
    percent: int
    paused: bool
    step_started_at: datetime
    events: tuple[EventView, ...] = ()  # newest first
    by_step: tuple[StepPairs, ...] = ()  # oldest first

    def to_json(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "step": self.step + 1, "percent": self.percent,
                "paused": self.paused, "step_started_at": self.step_started_at.isoformat(),
                "events": [e.to_json() for e in self.events],
                "by_step": [s.to_json() for s in self.by_step]}


@dataclass(frozen=True, slots=True)
class CutoverSection:
    tags: Mapping[str, TagCutover] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {tag: t.to_json() for tag, t in sorted(self.tags.items())}
