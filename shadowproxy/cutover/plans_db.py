"""Cutover plans and their events in PostgreSQL, through asyncpg.

asyncpg rather than SQLAlchemy: the proxy process reads the plans on its poll and writes
the guard's rollback, and it loads no SQLAlchemy (an import contract checks it); the
command line uses the same functions. Every change to a plan is one transaction that
updates the plan, bumps its ``revision`` and inserts its event, so the events are the
plan's complete history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from shadowproxy.cutover.plan import Action, AdvanceMove, Plan
from shadowproxy.cutover.section import EventView

__all__ = [
    "AdvanceLock",
    "Event",
    "NoPlan",
    "apply_move",
    "guard_rollback",
    "read_events",
    "read_plan",
    "read_plans",
    "rollback",
    "set_paused",
    "start",
]

_PLAN = ("tag, steps, step, percent, paused, revision, started_at, step_started_at, "
         "updated_at")
_EVENT = "tag, action, from_percent, to_percent, reason, actor, at"
_INSERT_EVENT = ("INSERT INTO cutover_events (tag, action, from_percent, to_percent, reason, "
                 "actor) VALUES ($1, $2, $3, $4, $5, $6)")
# Many-tag deployments share one key space; a tag's advance lock is its own key in it.
_LOCK_KEY = "SELECT hashtextextended('shadowproxy.cutover.advance:' || $1, 0)"


class NoPlan(Exception):
    """The tag has no cutover plan; the message is one line."""

    def __init__(self, tag: str) -> None:
        super().__init__(f"tag {tag!r} has no cutover plan (start one: shadowproxy cutover "
                         f"start --tag {tag} --steps 5,25,50,100)")
        self.tag = tag


@dataclass(frozen=True, slots=True)
class Event(EventView):
    """One event of a tag's plan, as stored (the report's view of it, and its tag)."""

    tag: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, **EventView.to_json(self)}


def _plan(row: Any) -> Plan:
    return Plan(tag=row["tag"], steps=tuple(row["steps"]), step=row["step"],
                percent=row["percent"], paused=row["paused"], revision=row["revision"],
                started_at=row["started_at"], step_started_at=row["step_started_at"],
                updated_at=row["updated_at"])


def _event(row: Any) -> Event:
    return Event(**{f.name: row[f.name] for f in fields(Event)})


async def read_plans(conn: asyncpg.Connection) -> list[Plan]:
    return [_plan(r) for r in await conn.fetch(f"SELECT {_PLAN} FROM cutover_plans ORDER BY tag")]


async def read_plan(conn: asyncpg.Connection, tag: str) -> Plan | None:
    row = await conn.fetchrow(f"SELECT {_PLAN} FROM cutover_plans WHERE tag = $1", tag)
    return _plan(row) if row is not None else None


async def read_events(conn: asyncpg.Connection, tag: str | None = None,
                      limit: int = 20) -> list[Event]:
    """The newest ``limit`` events (of ``tag``), newest first."""
    rows = await conn.fetch(
        f"SELECT {_EVENT} FROM cutover_events WHERE ($1::text IS NULL OR tag = $1) "
        "ORDER BY at DESC, id DESC LIMIT $2", tag, limit)
    return [_event(r) for r in rows]


async def _locked(conn: asyncpg.Connection, tag: str) -> Plan:
    row = await conn.fetchrow(f"SELECT {_PLAN} FROM cutover_plans WHERE tag = $1 FOR UPDATE",
                              tag)
    if row is None:
        raise NoPlan(tag)
    return _plan(row)


async def start(conn: asyncpg.Connection, tag: str, steps: Sequence[int],
                actor: str) -> tuple[Plan | None, Plan]:
    """A new plan at its first step; one the tag had is replaced. (old, new)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_PLAN} FROM cutover_plans WHERE tag = $1 FOR UPDATE", tag)
        old = _plan(row) if row is not None else None
        new = await conn.fetchrow(
            "INSERT INTO cutover_plans AS p (tag, steps, step, percent, paused) "
            "VALUES ($1, $2, 0, $3, false) ON CONFLICT (tag) DO UPDATE SET "
            "steps = EXCLUDED.steps, step = 0, percent = EXCLUDED.percent, paused = false, "
            "revision = p.revision + 1, started_at = now(), step_started_at = now(), "
            f"updated_at = now() RETURNING {_PLAN}", tag, list(steps), steps[0])
        listed = ",".join(str(s) for s in steps)
        reason = f"started: steps {listed}" + (
            f" (replaces steps {','.join(str(s) for s in old.steps)})" if old else "")
        await conn.execute(_INSERT_EVENT, tag, Action.START.value,
                           old.percent if old else 0, steps[0], reason, actor)
    return old, _plan(new)


async def _change(conn: asyncpg.Connection, plan: Plan, action: Action, *, percent: int,
                  step: int, paused: bool, reason: str, actor: str,
                  new_step: bool) -> Plan:
    row = await conn.fetchrow(
        "UPDATE cutover_plans SET percent = $2, step = $3, paused = $4, "
        "revision = revision + 1, updated_at = now(), "
        "step_started_at = CASE WHEN $5 THEN now() ELSE step_started_at END "
        f"WHERE tag = $1 RETURNING {_PLAN}",
        plan.tag, percent, step, paused, new_step)
    await conn.execute(_INSERT_EVENT, plan.tag, action.value, plan.percent, percent, reason,
                       actor)
    return _plan(row)


async def set_paused(conn: asyncpg.Connection, tag: str, paused: bool,
                     actor: str) -> tuple[Plan, bool]:
    """(the plan, whether it changed): pausing a paused plan changes nothing."""
    async with conn.transaction():
        plan = await _locked(conn, tag)
        if plan.paused == paused:
            return plan, False
        action = Action.PAUSE if paused else Action.RESUME
        reason = (f"paused at {plan.percent}%: advance refuses until resume" if paused
                  else f"resumed at {plan.percent}%")
        return await _change(conn, plan, action, percent=plan.percent, step=plan.step,
                             paused=paused, reason=reason, actor=actor, new_step=False), True


async def rollback(conn: asyncpg.Connection, tag: str, actor: str,
                   reason: str) -> tuple[Plan, bool]:
    """The tag back to 0% at once; (the plan, whether it changed)."""
    async with conn.transaction():
        plan = await _locked(conn, tag)
        if plan.percent == 0:
            return plan, False
        return await _change(conn, plan, Action.ROLLBACK, percent=0, step=plan.step,
                             paused=plan.paused, reason=reason, actor=actor,
                             new_step=True), True


async def apply_move(conn: asyncpg.Connection, plan: Plan, move: AdvanceMove, *,
                     actor: str, reason: str) -> Plan | None:
    """``move`` applied to the plan as it was judged; None when the plan changed meanwhile
    (another command, or the guard): a verdict on one plan never moves another."""
    if move.action is None:
        return plan
    async with conn.transaction():
        current = await _locked(conn, plan.tag)
        if current.revision != plan.revision:
            return None
        return await _change(conn, current, move.action, percent=move.percent,
                             step=move.step, paused=current.paused, reason=reason,
                             actor=actor, new_step=move.action != Action.COMPLETE)


async def guard_rollback(conn: asyncpg.Connection, tag: str, started_at: datetime,
                         reason: str, actor: str) -> bool:
    """The guard's rollback of the plan it watched (the one started at ``started_at``);
    False when that plan is gone, replaced or at 0% already (another worker was first)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_PLAN} FROM cutover_plans WHERE tag = $1 AND started_at = $2 "
            "AND percent > 0 FOR UPDATE", tag, started_at)
        if row is None:
            return False
        plan = _plan(row)
        await _change(conn, plan, Action.GUARD, percent=0, step=plan.step, paused=plan.paused,
                      reason=reason, actor=actor, new_step=True)
        return True


class AdvanceLock:
    """A session-level advisory lock per tag, held while one ``advance`` scores, judges and
    applies: a second ``advance`` of the same tag finds it taken and says so. No
    transaction stays open while the judge works."""

    def __init__(self, conn: asyncpg.Connection, tag: str) -> None:
        self._conn = conn
        self._tag = tag
        self._key: int | None = None
        self.acquired = False

    async def __aenter__(self) -> AdvanceLock:
        self._key = int(await self._conn.fetchval(_LOCK_KEY, self._tag))
        self.acquired = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)",
                                                       self._key))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.acquired and not self._conn.is_closed():
            await self._conn.execute("SELECT pg_advisory_unlock($1)", self._key)
