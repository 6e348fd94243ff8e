"""Moving the pairs stored before partitioning into the day partitions (migration 0007).

0007 sets the old tables aside as ``legacy_pairs``, ``legacy_scores``, ``legacy_reviews``
and ``legacy_review_items``; this moves their rows over, newest first, a batch at a time::

    one transaction per batch:
        take the newest N legacy pairs (advisory lock: one mover at a time, any process)
        create the partitions of their days if missing
        INSERT them, their scores, reviews and review items into the partitioned tables
            (ON CONFLICT DO NOTHING: a pair the writer already stored again is kept once)
        DELETE them from legacy_pairs (their legacy rows cascade)
    when legacy_pairs is empty: drop the legacy tables, and the views over the partitioned
        tables (comparisons_partitioned, human_reviews_partitioned) take their names

A batch commits whole or not at all, so a kill at any moment loses nothing and doubles
nothing, and a rerun continues with what ``legacy_pairs`` still holds. Column lists are
read from the catalog, so a column a later revision added (``served_by``) moves too.

``shadowproxy migrate`` runs it to the end; ``serve`` runs it in the background (worker
0's mirror, :mod:`.maintenance`), pausing between batches so the writer and reports keep
most of the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shadowproxy.day_partitions import CHILD_TABLES, day_of
from shadowproxy.store.partitions import ensure_days
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["MoveProgress", "legacy_left", "move_batch", "move_legacy"]

log = logging.getLogger(__name__)

MOVE_LOCK = 0x5348_4144_0003

_NEWEST = (
    "SELECT id, received_at FROM legacy_pairs "
    "WHERE $1::timestamptz IS NULL OR received_at <= $1 "
    "ORDER BY received_at DESC LIMIT $2 FOR UPDATE"
)
_FINISH = [
    "SET LOCAL lock_timeout = '10s'",
    "DROP VIEW comparisons, human_reviews",
    "ALTER VIEW comparisons_partitioned RENAME TO comparisons",
    "ALTER VIEW human_reviews_partitioned RENAME TO human_reviews",
    "DROP TABLE legacy_review_items, legacy_reviews, legacy_scores, legacy_pairs",
]


@dataclass(slots=True)
class MoveProgress:
    moved: int = 0
    batches: int = 0
    finished: bool = False  # the legacy tables are gone
    before: datetime | None = None  # every legacy pair newer than this has moved


async def legacy_left(conn: asyncpg.Connection) -> int | None:
    """Pairs still waiting to move; None when there is nothing to move (no legacy table)."""
    if not await conn.fetchval("SELECT to_regclass('legacy_pairs') IS NOT NULL"):
        return None
    return int(await conn.fetchval("SELECT count(*) FROM legacy_pairs"))


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        table)
    return [r["column_name"] for r in rows]


async def _move_statements(conn: asyncpg.Connection) -> list[str]:
    pairs = ", ".join(await _columns(conn, "legacy_pairs"))
    statements = [f"INSERT INTO pairs ({pairs}) SELECT {pairs} FROM legacy_pairs "
                  "WHERE id = ANY($1::uuid[]) ON CONFLICT DO NOTHING"]
    for child in CHILD_TABLES:
        columns = await _columns(conn, f"legacy_{child}")
        select = ", ".join(f"c.{c}" for c in columns)
        statements.append(
            f"INSERT INTO {child} ({', '.join(columns)}, received_at) "
            f"SELECT {select}, p.received_at FROM legacy_{child} c "
            "JOIN legacy_pairs p ON p.id = c.pair_id "
            "WHERE c.pair_id = ANY($1::uuid[]) ON CONFLICT DO NOTHING")
    statements.append("DELETE FROM legacy_pairs WHERE id = ANY($1::uuid[])")
    return statements


async def move_batch(conn: asyncpg.Connection, size: int, progress: MoveProgress,
                     statements: list[str]) -> None:
    """Move the newest ``size`` legacy pairs (with everything hanging off them) in one
    transaction; finish the move when none are left."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MOVE_LOCK)
        if not await conn.fetchval("SELECT to_regclass('legacy_pairs') IS NOT NULL"):
            progress.finished = True  # another process finished it
            return
        keys = await conn.fetch(_NEWEST, progress.before, size)
        if not keys:
            for statement in _FINISH:
                await conn.execute(statement)
            progress.finished = True
            return
        await ensure_days(conn, {day_of(k["received_at"]) for k in keys})
        ids = [k["id"] for k in keys]
        for statement in statements:
            await conn.execute(statement, ids)
    progress.moved += len(keys)
    progress.batches += 1
    progress.before = keys[-1]["received_at"]


async def move_legacy(
    url: str,
    *,
    batch: int = 2000,
    busy_share: float = 1.0,
    report: Callable[[MoveProgress], None] | None = None,
) -> MoveProgress:
    """Move every legacy pair; return what was done. Nothing to move: returns at once.

    ``busy_share`` < 1 rests between batches (0.5: as long as each batch took), for a
    move running beside live traffic.
    """
    progress = MoveProgress()
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if not await conn.fetchval("SELECT to_regclass('legacy_pairs') IS NOT NULL"):
            progress.finished = True
            return progress
        statements = await _move_statements(conn)
        while not progress.finished:
            started = time.monotonic()
            try:
                await move_batch(conn, batch, progress, statements)
            except asyncpg.LockNotAvailableError:
                # The last step waits for queries on the old view; they finish.
                log.info("finishing the move waits for queries on comparisons")
                await asyncio.sleep(1.0)
                continue
            if report is not None:
                report(progress)
            if busy_share < 1.0 and not progress.finished:
                took = time.monotonic() - started
                await asyncio.sleep(took * (1.0 - busy_share) / max(busy_share, 0.01))
        return progress
    finally:
        await conn.close()
