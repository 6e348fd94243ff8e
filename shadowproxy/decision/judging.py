"""Asking the judge about many pairs: concurrency, the spending cap, and what is stored.

Each pair is asked in both orders (primary as A, then shadow as A), the two calls in
flight together. At most ``JUDGE_CONCURRENCY`` calls are in flight. Before a pair's
calls are sent, the worst-case cost of *both* orders
(:func:`shadowproxy.decision.judge.worst_case_usd`) is reserved at once against
``JUDGE_MAX_USD``: a pair is asked in both orders or not at all, so money is never spent
on one order whose verdict the next run would have to buy again. Spent plus reserved never
exceeds the cap, however many calls are in flight. Once a reservation is refused no new
pair is started and the rest stays ``unjudged`` with that reason, for the next run.

Only pairs that hold a call slot hold a reservation (at most half of
``JUDGE_CONCURRENCY``, rounded up, pairs at a time), so pairs waiting for a slot do not
tie up budget that in-flight pairs could use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from shadowproxy.decision.judge import CallResult, Judge
from shadowproxy.decision.judge_prompt import AnswerText, combine, judge_prompt, render_conversation
from shadowproxy.decision.verdict import Method, Verdict

__all__ = ["Budget", "JudgeRun", "Judged", "needs_judge_reason"]

NO_JUDGE = ("a judge is needed: set SHADOWPROXY_JUDGE_MODEL (and its key) and run "
            "diff again")
WAITING = "waiting for the judge: run diff again to judge it"


def needs_judge_reason(judge_configured: bool) -> str:
    return WAITING if judge_configured else NO_JUDGE


class Budget:
    """USD spent and reserved in this run, against a cap."""

    def __init__(self, cap_usd: float) -> None:
        self.cap_usd = cap_usd
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.exhausted = False

    def reserve(self, amount: float) -> bool:
        if self.exhausted or self.spent_usd + self.reserved_usd + amount > self.cap_usd:
            self.exhausted = True
            return False
        self.reserved_usd += amount
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved_usd -= reserved
        self.spent_usd += actual


@dataclass(frozen=True, slots=True)
class Judged:
    """One side's verdict as ``scores`` stores it."""

    verdict: Verdict
    method: Method | None
    reason: str
    cost_usd: float
    calls: int
    position_inconsistent: bool | None


class JudgeRun:
    """One ``diff`` run's judge: shared budget, shared concurrency, counters."""

    def __init__(self, judge: Judge, *, max_usd: float, concurrency: int,
                 rubrics: dict[str, str] | None = None,
                 on_call: Callable[[], None] | None = None) -> None:
        self.judge = judge
        self.budget = Budget(max_usd)
        self.calls = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._pairs = asyncio.Semaphore(max(1, (concurrency + 1) // 2))
        self._rubrics = rubrics or {}
        self.on_call = on_call

    @property
    def cap_reason(self) -> str:
        return (f"JUDGE_MAX_USD={self.budget.cap_usd:g} reached in this run: run diff again "
                "to judge the rest (or raise the cap)")

    async def _call(self, prompt: str, reserved: float) -> CallResult:
        """One order, its worst case already reserved; settles what it really cost."""
        async with self._slots:
            result = CallResult(None, 0.0, "judge call cancelled")
            try:
                self.calls += 1
                result = await self.judge.ask(prompt)
            finally:
                self.budget.settle(reserved, result.cost_usd)
                if self.on_call is not None:
                    self.on_call()
            return result

    async def judge_pair(self, request: object, tag: str | None, primary: AnswerText,
                         other: AnswerText) -> Judged:
        """``other``'s verdict against ``primary`` (the shadow, or the replay)."""
        if self.budget.exhausted:
            return Judged(Verdict.UNJUDGED, None, self.cap_reason, 0.0, 0, None)
        conversation = render_conversation(request)
        rubric = self._rubrics.get(tag) if tag else None
        primary_first = judge_prompt(conversation, primary, other, rubric)
        other_first = judge_prompt(conversation, other, primary, rubric)
        async with self._pairs:
            worst = (self.judge.worst_case_usd(primary_first),
                     self.judge.worst_case_usd(other_first))
            if not self.budget.reserve(sum(worst)):  # both orders, or neither
                return Judged(Verdict.UNJUDGED, None, self.cap_reason, 0.0, 0, None)
            one, two = await asyncio.gather(self._call(primary_first, worst[0]),
                                            self._call(other_first, worst[1]))
        cost = one.cost_usd + two.cost_usd
        failed = next((r.error for r in (one, two) if r.error or r.vote is None), None)
        if failed is not None or one.vote is None or two.vote is None:
            return Judged(Verdict.UNJUDGED, None, f"{failed}; run diff again to retry", cost,
                          2, None)
        combined = combine(one.vote, two.vote)
        return Judged(combined.verdict, Method.JUDGE, combined.reason, cost, 2,
                      combined.position_inconsistent)
