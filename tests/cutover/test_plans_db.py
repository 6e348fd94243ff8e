"""The plans in PostgreSQL: a change is the plan, its revision and its event together;
a verdict on one plan never moves another; two guards roll back once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shadowproxy.cutover import plans_db
from shadowproxy.cutover.plan import move_after_gate
from shadowproxy.store.urls import asyncpg_dsn


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    yield connection
    await connection.close()


async def test_a_verdict_on_an_older_revision_moves_nothing(conn: asyncpg.Connection) -> None:
    _, judged = await plans_db.start(conn, "support", (5, 50), "rm")
    await plans_db.set_paused(conn, "support", True, "rm")  # someone acts meanwhile
    assert await plans_db.apply_move(conn, judged, move_after_gate(judged, 0), actor="ci",
                                     reason="passed") is None
    plan = await plans_db.read_plan(conn, "support")
    assert plan is not None and plan.percent == 5
    assert [e.action for e in await plans_db.read_events(conn, "support")] == ["pause",
                                                                              "start"]


async def test_each_change_bumps_the_revision_and_a_step_restarts_its_window(
    conn: asyncpg.Connection,
) -> None:
    _, plan = await plans_db.start(conn, "support", (5, 50), "rm")
    moved = await plans_db.apply_move(conn, plan, move_after_gate(plan, 0), actor="ci",
                                      reason="passed")
    assert moved is not None
    assert (moved.percent, moved.step, moved.revision) == (50, 1, plan.revision + 1)
    assert moved.step_started_at > plan.step_started_at
    paused, changed = await plans_db.set_paused(conn, "support", True, "rm")
    assert changed and paused.step_started_at == moved.step_started_at


async def test_the_guards_of_two_replicas_roll_back_once(conn: asyncpg.Connection) -> None:
    _, plan = await plans_db.start(conn, "support", (25,), "rm")
    first = await plans_db.guard_rollback(conn, "support", plan.started_at, "guard: 12 of 200",
                                          "guard@a")
    second = await plans_db.guard_rollback(conn, "support", plan.started_at, "guard: 11 of 200",
                                           "guard@b")
    assert (first, second) == (True, False)
    events = await plans_db.read_events(conn, "support")
    assert [(e.action, e.from_percent, e.to_percent, e.actor) for e in events] == [
        ("guard", 25, 0, "guard@a"), ("start", 0, 25, "rm")]


async def test_a_guard_never_rolls_back_a_newer_plan(conn: asyncpg.Connection) -> None:
    _, old = await plans_db.start(conn, "support", (25,), "rm")
    await plans_db.start(conn, "support", (5, 25), "rm")  # started again since
    assert not await plans_db.guard_rollback(conn, "support", old.started_at, "stale", "guard")
    plan = await plans_db.read_plan(conn, "support")
    assert plan is not None and plan.percent == 5


async def test_start_replaces_a_plan_at_its_first_step(conn: asyncpg.Connection) -> None:
    await plans_db.start(conn, "support", (5, 25), "rm")
    await plans_db.rollback(conn, "support", "rm", "bad answers")
    old, new = await plans_db.start(conn, "support", (10, 100), "rm")
    assert old is not None and old.percent == 0
    assert (new.steps, new.step, new.percent, new.paused) == ((10, 100), 0, 10, False)
    (event,) = await plans_db.read_events(conn, "support", 1)
    assert event.reason == "started: steps 10,100 (replaces steps 5,25)"
