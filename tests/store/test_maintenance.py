"""The store's upkeep while serve runs: days ready ahead, retention, one replica at a time,
and the move of pairs stored before partitioning, in the background."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import asyncpg

from shadowproxy.store import migrate
from shadowproxy.store.legacy_move import legacy_left
from shadowproxy.store.maintenance import StoreMaintenance, maintain
from shadowproxy.store.partitions import MAINTENANCE_LOCK, attached_days, ensure_days
from shadowproxy.store.urls import asyncpg_dsn
from tests.store.test_legacy_move import PAIRS, _release_before_partitioning, _snapshot

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


async def _days(url: str) -> set[date]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await attached_days(conn)
    finally:
        await conn.close()


async def test_a_run_prepares_the_days_ahead_and_drops_the_expired(database_url: str) -> None:
    old = date(2026, 3, 1)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await ensure_days(conn, [old])
    finally:
        await conn.close()
    run = await maintain(database_url, 30, NOW, ahead_days=2)
    assert run.ran
    assert run.created == [date(2026, 5, 3), date(2026, 5, 4), date(2026, 5, 5),
                           date(2026, 5, 6)]
    assert run.dropped == [old]
    days = await _days(database_url)
    assert old not in days and set(run.created) <= days


async def test_one_replica_at_a_time(database_url: str) -> None:
    other = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await other.execute("SELECT pg_advisory_lock($1)", MAINTENANCE_LOCK)
        skipped = await maintain(database_url, 30, NOW)
        await other.execute("SELECT pg_advisory_unlock($1)", MAINTENANCE_LOCK)
    finally:
        await other.close()
    assert not skipped.ran and skipped.created == []
    assert (await maintain(database_url, 30, NOW)).ran


async def test_the_task_runs_periodically_on_its_clock(database_url: str) -> None:
    ticks = iter(NOW + timedelta(days=n) for n in range(1000))
    task = StoreMaintenance(database_url, 30, interval_s=0.05, ahead_days=0,
                            clock=lambda: next(ticks))
    task.start()
    try:
        for _ in range(400):
            if task.runs >= 3 and task.move_finished:
                break
            await asyncio.sleep(0.05)
    finally:
        await task.stop()
    assert task.runs >= 3 and task.move_finished
    assert {date(2026, 5, 4), date(2026, 5, 5), date(2026, 5, 6)} <= await _days(database_url)


async def test_serve_moves_the_old_rows_in_the_background(empty_database_url: str) -> None:
    url = empty_database_url
    await _release_before_partitioning(url)
    before = await _snapshot(url)
    await migrate.upgrade(url)  # what serve's start does: the schema only
    task = StoreMaintenance(url, 0, move_batch=50)
    task.start()
    try:
        for _ in range(600):
            if task.move_finished:
                break
            await asyncio.sleep(0.05)
    finally:
        await task.stop()
    assert task.move_finished and task.moved == PAIRS
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await legacy_left(conn) is None
    finally:
        await conn.close()
    assert await _snapshot(url) == before
