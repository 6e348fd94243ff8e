"""Responses history in PostgreSQL: what one mirror saw, another rebuilds; bounded,
expiring, and a miss (never seen, expired, database down) is counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shadowproxy.mirror.conversations import ResponseHistory
from shadowproxy.mirror.history_store import HistoryStore
from shadowproxy.mirror.translate import Untranslatable
from shadowproxy.redact import Redactor
from shadowproxy.store.urls import asyncpg_dsn
from shadowproxy.tasks import spawn
from tests.mirror.test_conversations import answer, json_end, texts, turn

T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def store(url: str, clock: Callable[[], datetime], **kwargs: Any
                ) -> AsyncIterator[HistoryStore]:
    shared = HistoryStore(url, clock=clock, **kwargs)
    await shared.start()
    try:
        yield shared
    finally:
        await shared.close()


def mirror(shared: HistoryStore | None, clock: Callable[[], datetime], **kwargs: Any
           ) -> ResponseHistory:
    return ResponseHistory(shared=shared, clock=clock, shared_wait_s=2.0, **kwargs)


async def answered(history: ResponseHistory, n: int, previous: str | None,
                   question: str | None = None) -> None:
    request = turn(question or f"q{n}", previous)
    if history.started(f"x{n}", request):
        await history.resolve(f"x{n}", request, timeout_s=5)
    history.ended(json_end(f"x{n}", answer(f"resp_{n}", f"A{n}")))


async def flushed(shared: HistoryStore, count: int) -> None:
    for _ in range(200):
        if shared.saved >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"saved {shared.saved} of {count}")


async def test_turns_answered_on_different_mirrors_rebuild_one_history(
        database_url: str) -> None:
    clock = Clock()
    async with store(database_url, clock) as a_db, store(database_url, clock) as b_db:
        a, b = mirror(a_db, clock), mirror(b_db, clock)
        await answered(a, 1, None)
        await flushed(a_db, 1)
        await answered(b, 2, "resp_1")
        await flushed(b_db, 1)
        third = turn("q3", "resp_2")
        assert a.started("x3", third)  # resp_2 is on the other mirror
        await a.resolve("x3", third, timeout_s=5)
        assert texts(a.history(third) or []) == ["q1", "A1", "q2", "A2"]
        assert a.misses == {} and b.misses == {}


async def test_a_turn_that_arrives_before_the_other_mirror_stored_its_parent_waits(
        database_url: str) -> None:
    clock = Clock()
    async with store(database_url, clock) as a_db, store(database_url, clock) as b_db:
        a, b = mirror(a_db, clock), mirror(b_db, clock)
        second = turn("q2", "resp_1")
        assert b.started("x2", second)
        waiting = spawn(b.resolve("x2", second, timeout_s=5), name="resolve")
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await answered(a, 1, None)
        await asyncio.wait_for(waiting, 5)
        assert texts(b.history(second) or []) == ["q1", "A1"]
        assert b.misses == {}


async def test_stored_history_is_redacted(database_url: str) -> None:
    clock = Clock()
    async with store(database_url, clock) as shared:
        history = mirror(shared, clock, redactor=Redactor.from_names(["email"]))
        await answered(history, 1, None, "mail me at ann@example.com")
        await flushed(shared, 1)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        stored = await conn.fetchval("SELECT items::text FROM response_history")
    finally:
        await conn.close()
    assert "ann@example.com" not in stored and "[REDACTED:email]" in stored
    assert "ann@example.com" not in str(history.history(turn("q2", "resp_1")))


async def test_expired_turns_are_misses_and_are_pruned(database_url: str) -> None:
    clock = Clock()
    async with store(database_url, clock, keep_s=3600, prune_every_s=0) as a_db, \
            store(database_url, clock, keep_s=3600) as b_db:
        a, b = mirror(a_db, clock), mirror(b_db, clock)
        await answered(a, 1, None)
        await flushed(a_db, 1)
        clock.now += timedelta(hours=2)
        second = turn("q2", "resp_1")
        assert b.started("x2", second)
        await b.resolve("x2", second, timeout_s=0.3)
        assert b.misses == {"unknown": 1}
        with pytest.raises(Untranslatable, match="no longer holds"):
            b.history(second)
        with pytest.raises(Untranslatable):  # this mirror's own copy expired too
            a.history(second)
        await answered(a, 3, None)  # the next flush prunes
        await flushed(a_db, 2)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert [r[0] for r in await conn.fetch("SELECT response_id FROM response_history")
                ] == ["resp_3"]
    finally:
        await conn.close()


async def test_the_table_is_bounded_oldest_first(database_url: str) -> None:
    clock = Clock()
    async with store(database_url, clock, max_bytes=3_000, prune_every_s=0) as shared:
        history = mirror(shared, clock)
        for n in range(1, 11):
            clock.now += timedelta(seconds=1)
            await answered(history, n, None, "x" * 500)
            await flushed(shared, n)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT response_id, size_bytes FROM response_history "
                                "ORDER BY expires_at")
    finally:
        await conn.close()
    assert sum(r["size_bytes"] for r in rows) <= 3_000
    assert rows and rows[-1]["response_id"] == "resp_10"


async def test_a_database_that_is_down_is_a_counted_miss(tmp_path: Path) -> None:
    clock = Clock()
    url = f"postgresql+asyncpg://postgres@/x?host={tmp_path}"
    async with store(url, clock) as shared:
        history = mirror(shared, clock)
        await answered(history, 1, None)  # kept in memory all the same
        second = turn("q2", "resp_1")
        assert not history.started("x2", second)
        third = turn("q3", "resp_elsewhere")
        assert history.started("x3", third)
        await history.resolve("x3", third, timeout_s=5)
    assert history.misses == {"database": 1}
    assert shared.save_errors == 1
