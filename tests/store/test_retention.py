"""Retention removes exactly the pairs older than RETENTION_DAYS (and what hangs off
them): whole days dropped, the partly expired day trimmed, the rest untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from shadowproxy.store.retention import delete_expired
from shadowproxy.store.spool import Spool
from shadowproxy.store.urls import asyncpg_dsn
from shadowproxy.store.writer import PairWriter
from tests.fakes.database import make_pair
from tests.store.test_partitions import insert_children

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


async def _store(url: str, tmp_path: Path, ages_days: list[float]) -> list[object]:
    pairs = [make_pair(received_at=NOW - timedelta(days=age)) for age in ages_days]
    writer = PairWriter(url, Spool(tmp_path, max_bytes=10**8))
    await writer.start()
    for pair in pairs:
        writer.submit(pair)
    await writer.close(timeout_s=10)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for pair in pairs:
            await insert_children(conn, pair.id, pair.received_at)
    finally:
        await conn.close()
    return [p.id for p in pairs]


async def _ids(url: str, table: str = "pairs", column: str = "id") -> set[object]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {r[0] for r in await conn.fetch(f"SELECT {column} FROM {table}")}
    finally:
        await conn.close()


async def _day_tables(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("SELECT relname FROM pg_class WHERE relkind = 'r' "
                                "AND relname ~ '_p[0-9]{8}$'")
    finally:
        await conn.close()
    return {r["relname"] for r in rows}


async def test_only_pairs_older_than_retention_go(database_url: str, tmp_path: Path) -> None:
    # 40 and 31 days: whole days past the cutoff; 30.2 days: before the cutoff on the
    # partly expired day; 29.9 days: after it on the same day; 0: today.
    ages = [40] * 3 + [31] * 2 + [30.2] * 4 + [29.9] * 5 + [0] * 2
    ids = await _store(database_url, tmp_path, ages)
    run = await delete_expired(database_url, retention_days=30, now=NOW, batch=3)
    assert [d.isoformat() for d in run.dropped] == ["2026-03-25", "2026-04-03"]
    assert run.deleted == 4  # the partly expired day's rows before the cutoff
    kept = set(ids[9:])
    assert await _ids(database_url) == kept
    for table in ("scores", "reviews", "review_items"):
        assert await _ids(database_url, table, "pair_id") == kept
    assert not {t for t in await _day_tables(database_url)
                if t.endswith(("p20260325", "p20260403"))}
    again = await delete_expired(database_url, retention_days=30, now=NOW)
    assert again.dropped == [] and again.deleted == 0


async def test_zero_days_keeps_everything(database_url: str, tmp_path: Path) -> None:
    await _store(database_url, tmp_path, [3650])
    run = await delete_expired(database_url, retention_days=0, now=NOW)
    assert run.dropped == [] and run.deleted == 0
    assert len(await _ids(database_url)) == 1
