"""``cutover advance``: judge the tag's current step and move the plan on the verdict.

Under a per-tag advisory lock (a second ``advance`` of the tag is refused and says so):
score and judge the tag's pairs received since the step began, as ``diff`` does; build
the report of those pairs and run the gate on it; then apply the gate's verdict to the
plan as it was when judged (pass → next step, fail → 0%, not enough data → stays). If
anything changed the plan meanwhile — a rollback, a pause, the guard — nothing moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shadowproxy.cutover import plans_db
from shadowproxy.cutover.plan import AdvanceMove, Plan, move_after_gate
from shadowproxy.decision.diff import PairScope, run_diff
from shadowproxy.decision.gate import GateResult, Policy, evaluate
from shadowproxy.decision.judge import Judge
from shadowproxy.decision.report import build_report
from shadowproxy.storable import bounded
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["AdvanceOutcome", "JudgeOptions", "run_advance"]

EXIT_STAYS = 2
EXIT_CANNOT_RUN = 3


@dataclass(frozen=True, slots=True)
class JudgeOptions:
    judge: Judge | None = None
    max_usd: float = 5.0
    concurrency: int = 8
    rubrics: dict[str, str] | None = None
    progress: bool = False


@dataclass(frozen=True, slots=True)
class AdvanceOutcome:
    """What happened: the gate (when it ran), the move, the plan after, the exit code."""

    exit_code: int
    message: str
    gate: GateResult | None = None
    move: AdvanceMove | None = None
    plan: Plan | None = None


def _refused(code: int, message: str, plan: Plan | None = None) -> AdvanceOutcome:
    return AdvanceOutcome(code, message, plan=plan)


async def run_advance(url: str, *, tag: str, policy: Policy, actor: str,
                      judging: JudgeOptions) -> AdvanceOutcome:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with plans_db.AdvanceLock(conn, tag) as lock:
            if not lock.acquired:
                return _refused(EXIT_CANNOT_RUN, f"another `cutover advance --tag {tag}` is "
                                "running: it decides this step; this one changed nothing")
            plan = await plans_db.read_plan(conn, tag)
            if plan is None:
                return _refused(EXIT_CANNOT_RUN, str(plans_db.NoPlan(tag)))
            if plan.paused:
                return _refused(EXIT_STAYS, f"{tag} is paused at {plan.percent}%: advance "
                                f"refuses until `shadowproxy cutover resume --tag {tag}`", plan)
            if plan.rolled_back:
                return _refused(EXIT_STAYS, f"{tag} was rolled back to 0%: it stays there "
                                "(`shadowproxy cutover start` begins a plan again)", plan)
            return await _judge_and_move(conn, url, plan, policy, actor, judging)
    finally:
        await conn.close()


async def _judge_and_move(conn: asyncpg.Connection, url: str, plan: Plan, policy: Policy,
                          actor: str, judging: JudgeOptions) -> AdvanceOutcome:
    scope = PairScope(tag=plan.tag, since=plan.step_started_at)
    await run_diff(url, progress=judging.progress, judge=judging.judge,
                   judge_max_usd=judging.max_usd, judge_concurrency=judging.concurrency,
                   rubrics=judging.rubrics, scope=scope)
    report = await build_report(url, since=plan.step_started_at, tag=plan.tag)
    gate = evaluate(report, policy)
    move = move_after_gate(plan, gate.exit_code)
    failing = [f"{c.criterion}: {c.compared}" for c in gate.criteria
               if c.passed is False and not c.insufficient]
    detail = "; ".join(failing or gate.reasons)
    reason = bounded(f"{move.message} (gate on {report.overall.pairs} pairs since "
                     f"{plan.step_started_at:%Y-%m-%d %H:%M:%S %Z})"
                     + (f": {detail}" if detail else ""))
    applied = await plans_db.apply_move(conn, plan, move, actor=actor, reason=reason)
    if applied is None:
        return AdvanceOutcome(EXIT_CANNOT_RUN, f"the plan of {plan.tag} changed while advance "
                              "judged it (see `shadowproxy cutover status`): nothing moved",
                              gate=gate, move=move, plan=plan)
    return AdvanceOutcome(gate.exit_code, move.message, gate=gate, move=move, plan=applied)
