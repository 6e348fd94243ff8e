"""Retention removes only expired pairs (and their scores), a batch at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from shadowproxy.store.retention import RetentionTask, delete_expired
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter
from tests.fakes.database import make_pair


async def _store(url: str, tmp_path: Path, ages_days: list[float]) -> list[object]:
    now = datetime.now(UTC)
    pairs = [make_pair(received_at=now - timedelta(days=age)) for age in ages_days]
    writer = PairWriter(url, Spool(tmp_path, max_bytes=10**8))
    await writer.start()
    for pair in pairs:
        writer.submit(pair)
    await writer.close(timeout_s=10)
    return [p.id for p in pairs]


async def _ids(url: str, table: str = "pairs", column: str = "id") -> set[object]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return {r[0] for r in await conn.fetch(f"SELECT {column} FROM {table}")}
    finally:
        await conn.close()


async def test_only_old_pairs_go_in_batches(database_url: str, tmp_path: Path) -> None:
    ids = await _store(database_url, tmp_path, [40] * 23 + [29.9] * 5 + [0] * 5)
    deleted = await delete_expired(database_url, retention_days=30, batch=5)
    assert deleted == 23
    assert await _ids(database_url) == set(ids[23:])
    assert await delete_expired(database_url, retention_days=30, batch=5) == 0


async def test_scores_go_with_their_pair(database_url: str, tmp_path: Path) -> None:
    old, new = await _store(database_url, tmp_path, [100, 1])
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await conn.executemany(
            "INSERT INTO scores (pair_id, exact_match, text_similarity, tool_call_match,"
            " stop_reason_match, refusal, agree) VALUES ($1, true, 1, true, true, false, true)",
            [(old,), (new,)],
        )
    finally:
        await conn.close()
    assert await delete_expired(database_url, retention_days=30) == 1
    assert await _ids(database_url, "scores", "pair_id") == {new}


async def test_zero_days_keeps_everything(database_url: str, tmp_path: Path) -> None:
    await _store(database_url, tmp_path, [3650])
    assert await delete_expired(database_url, retention_days=0) == 0
    task = RetentionTask(database_url, retention_days=0)
    task.start()
    await task.stop()
    assert task.runs == 0
    assert len(await _ids(database_url)) == 1


async def test_task_runs_periodically(database_url: str, tmp_path: Path) -> None:
    await _store(database_url, tmp_path, [31, 31])
    task = RetentionTask(database_url, retention_days=30, interval_s=0.05)
    task.start()
    try:
        for _ in range(200):
            if task.runs >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await task.stop()
    assert task.runs >= 2
    assert task.deleted == 2
    assert await _ids(database_url) == set()
