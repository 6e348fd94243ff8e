"""A tag's cutover plan and the rules that move it. Pure: no I/O, no clock.

A plan is a list of steps, each a percent (1-100) of the tag's conversations answered by
the shadow model, strictly rising. ``percent`` is where the tag stands: ``steps[step]``,
or 0 once rolled back (by hand, by a failed gate, or by the guard). A conversation is on
the shadow model when its bucket - a stable hash of its ``conversation_id`` in 0-99 -
is below the percent, so raising the percent keeps every conversation already there.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "Action",
    "AdvanceMove",
    "Plan",
    "StepsError",
    "bucket",
    "chosen",
    "move_after_gate",
    "parse_steps",
]

# Keeps the cutover's buckets independent of any other hash of the same id.
_BUCKET_SALT = b"shadowproxy-cutover:"


class StepsError(ValueError):
    """``--steps`` is not a strictly rising list of percents in 1-100; one line."""


class Action(enum.StrEnum):
    """What an event did to a plan (the ``action`` column of ``cutover_events``)."""

    START = "start"
    ADVANCE = "advance"
    COMPLETE = "complete"  # a pass at the last step: nothing left to raise
    ROLLBACK = "rollback"  # by hand, or a failed gate
    GUARD = "guard"  # the fallback guard rolled the tag back
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True, slots=True)
class Plan:
    tag: str
    steps: tuple[int, ...]
    step: int
    percent: int
    paused: bool
    revision: int
    started_at: datetime
    step_started_at: datetime
    updated_at: datetime

    @property
    def rolled_back(self) -> bool:
        return self.percent == 0

    @property
    def at_last_step(self) -> bool:
        return self.step >= len(self.steps) - 1


def parse_steps(text: str) -> tuple[int, ...]:
    """``"5,25,50,100"`` → ``(5, 25, 50, 100)``; anything else is :class:`StepsError`."""
    pieces = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in pieces):
        raise StepsError(f"--steps: give percents separated by commas, e.g. 5,25,50,100 "
                         f"(got {text!r})")
    steps: list[int] = []
    for piece in pieces:
        try:
            value = int(piece)
        except ValueError:
            raise StepsError(f"--steps: {piece!r} is not a whole percent") from None
        if not 1 <= value <= 100:
            raise StepsError(f"--steps: {value} is outside 1-100")
        if steps and value <= steps[-1]:
            raise StepsError(f"--steps: steps must rise strictly ({steps[-1]} then {value})")
        steps.append(value)
    return tuple(steps)


def bucket(conversation_id: str) -> int:
    """The conversation's place in 0-99, the same in every process and every release."""
    digest = hashlib.sha256(_BUCKET_SALT + conversation_id.encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest()[:8], "big") % 100


def chosen(conversation_id: str | None, percent: int) -> bool:
    """Whether this conversation is answered by the shadow model at ``percent``.

    A request with no conversation (nothing to hash) goes to the shadow only at 100%:
    below that, a conversation could not be kept on one model.
    """
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return conversation_id is not None and bucket(conversation_id) < percent


@dataclass(frozen=True, slots=True)
class AdvanceMove:
    """What ``cutover advance`` does to a plan after the gate's verdict."""

    action: Action | None  # None: the plan stays as it is
    step: int
    percent: int
    message: str


def move_after_gate(plan: Plan, gate_exit: int) -> AdvanceMove:
    """0 (pass) → the next step; 1 (fail) → 0; 2 (not enough data) → stays."""
    if gate_exit == 0:
        if plan.at_last_step:
            return AdvanceMove(Action.COMPLETE, plan.step, plan.percent,
                               f"passed at the last step: {plan.tag} stays at "
                               f"{plan.percent}%")
        nxt = plan.step + 1
        return AdvanceMove(Action.ADVANCE, nxt, plan.steps[nxt],
                           f"passed: {plan.tag} {plan.percent}% → {plan.steps[nxt]}% "
                           f"(step {nxt + 1} of {len(plan.steps)})")
    if gate_exit == 1:
        return AdvanceMove(Action.ROLLBACK, plan.step, 0,
                           f"failed: {plan.tag} {plan.percent}% → 0%")
    return AdvanceMove(None, plan.step, plan.percent,
                       f"not enough data: {plan.tag} stays at {plan.percent}%")
