"""Day partitions in a real PostgreSQL: created together, safely from many processes,
tied by foreign keys within the day, and dropped whole (also after a killed run)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import pytest

from shadowproxy.store.partitions import (
    attached_days,
    drop_day,
    ensure_days,
    finish_interrupted_drops,
)
from shadowproxy.store.urls import asyncpg_dsn

DAY = date(2026, 5, 4)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    yield connection
    await connection.close()


async def tables(conn: asyncpg.Connection, like: str) -> set[str]:
    rows = await conn.fetch("SELECT relname FROM pg_class WHERE relkind = 'r' "
                            "AND relname LIKE $1", like)
    return {r["relname"] for r in rows}


async def insert_pair(conn: asyncpg.Connection, received_at: datetime) -> uuid.UUID:
    pair_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO pairs (id, received_at, api, path, stream, request_sha256, "
        "shadow_outcome, client_disconnected) "
        "VALUES ($1, $2, 'openai.chat', '/v1/chat/completions', false, 'x', 'ok', false)",
        pair_id, received_at)
    return pair_id


async def insert_children(conn: asyncpg.Connection, pair_id: uuid.UUID,
                          received_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO scores (pair_id, received_at, exact_match, text_similarity, "
        "tool_call_match, stop_reason_match, refusal, agree) "
        "VALUES ($1, $2, true, 1, true, true, false, true)", pair_id, received_at)
    await conn.execute(
        "INSERT INTO reviews (pair_id, received_at, reviewer, choice, verdict, shadow_first) "
        "VALUES ($1, $2, 'ann', 'tie', 'equivalent', true)", pair_id, received_at)
    await conn.execute(
        "INSERT INTO review_items (id, received_at, pair_id, reviewer, shadow_first, rank, "
        "overlap) VALUES ($1, $2, $3, 'ann', true, 7, false)",
        f"item-{pair_id}", received_at, pair_id)


async def test_a_day_is_four_tables_created_together(conn: asyncpg.Connection) -> None:
    assert await ensure_days(conn, [DAY]) == [DAY]
    assert await tables(conn, "%_p20260504") == {
        "pairs_p20260504", "scores_p20260504", "reviews_p20260504", "review_items_p20260504"}
    assert DAY in await attached_days(conn)
    assert await ensure_days(conn, [DAY]) == []


async def test_a_row_outside_every_day_is_refused_not_misplaced(
        conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="no partition"):
        await insert_pair(conn, datetime(2031, 1, 1, tzinfo=UTC))


async def test_children_need_their_pair_and_go_with_it(conn: asyncpg.Connection) -> None:
    await ensure_days(conn, [DAY])
    at = datetime(2026, 5, 4, 12, tzinfo=UTC)
    pair_id = await insert_pair(conn, at)
    await insert_children(conn, pair_id, at)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await insert_children(conn, uuid.uuid4(), at)
    await conn.execute("DELETE FROM pairs WHERE id = $1", pair_id)
    for table in ("scores", "reviews", "review_items"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_many_processes_creating_the_same_days_at_once(database_url: str) -> None:
    conns = [await asyncpg.connect(asyncpg_dsn(database_url)) for _ in range(6)]
    try:
        wanted = [DAY, date(2026, 5, 5)]
        created = await asyncio.gather(*(ensure_days(c, wanted) for c in conns))
        assert sorted(d for made in created for d in made) == wanted
        assert set(wanted) <= await attached_days(conns[0])
    finally:
        for c in conns:
            await c.close()


async def test_dropping_a_day_takes_its_rows_and_no_other(conn: asyncpg.Connection) -> None:
    other = date(2026, 5, 5)
    await ensure_days(conn, [DAY, other])
    for day, hour in ((DAY, 3), (other, 4)):
        at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        await insert_children(conn, await insert_pair(conn, at), at)
    await drop_day(conn, DAY)
    assert await tables(conn, "%_p20260504") == set()
    assert await attached_days(conn) >= {other} and DAY not in await attached_days(conn)
    for table in ("pairs", "scores", "reviews", "review_items"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1


async def test_a_drop_killed_half_way_is_finished_by_the_next_run(
        conn: asyncpg.Connection) -> None:
    await ensure_days(conn, [DAY])
    at = datetime(2026, 5, 4, 3, tzinfo=UTC)
    await insert_children(conn, await insert_pair(conn, at), at)
    # What a kill between the steps leaves: one child detached, not dropped.
    await conn.execute("ALTER TABLE scores DETACH PARTITION scores_p20260504 CONCURRENTLY")
    assert await finish_interrupted_drops(conn) == [DAY]
    assert await tables(conn, "%_p20260504") == set()
    assert await finish_interrupted_drops(conn) == []
