"""Retention: pairs older than ``RETENTION_DAYS`` go, a whole day at a time.

With cutoff = now - ``RETENTION_DAYS`` (the plan:
:func:`shadowproxy.day_partitions.retention_plan`):

- every day that ended at or before the cutoff is dropped whole: its four partitions
  (pairs, scores, reviews, review items) are detached concurrently and dropped, which
  costs the same for an empty day as for ten million rows and leaves no dead rows;
- the one day that holds the cutoff is partly expired: its rows older than the cutoff are
  deleted in batches, within that day's partition only (its index on ``received_at``),
  and their scores and reviews go with them (``ON DELETE CASCADE`` between the day's own
  tables). The dead rows this leaves live in a partition that is dropped whole within a
  day, so they never accumulate. So no pair outlives ``RETENTION_DAYS`` by more than the
  interval between runs (an hour), as before partitioning.
- pairs stored before partitioning and not moved yet (``legacy_pairs``, migration 0007)
  are deleted in batches as before; those tables go away when the move ends.

It speaks asyncpg directly (like the writer): the mirror process that runs it then never
loads SQLAlchemy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

import asyncpg

from shadowproxy.day_partitions import partition_name, retention_plan
from shadowproxy.store.partitions import attached_days, drop_day, finish_interrupted_drops
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["RetentionRun", "apply_retention", "delete_expired"]

log = logging.getLogger(__name__)

# Named by its partition, not through ``pairs``: a DELETE on the parent would lock (and,
# with a generic plan, probe) every day's partition for each batch.
_TRIM_BATCH = """
    DELETE FROM {day} WHERE id IN (SELECT id FROM {day} WHERE received_at < $1 LIMIT $2)
"""
_LEGACY_BATCH = """
    DELETE FROM legacy_pairs WHERE id IN (
        SELECT id FROM legacy_pairs WHERE received_at < $1 LIMIT $2
    )
"""


@dataclass(slots=True)
class RetentionRun:
    dropped: list[date] = field(default_factory=list)  # whole days dropped
    deleted: int = 0  # pairs deleted row by row (the partly expired day, legacy rows)


async def _delete_batches(conn: asyncpg.Connection, statement: str, *args: object,
                          batch: int) -> int:
    deleted = 0
    while True:
        status = await conn.execute(statement, *args, batch)
        count = int(status.rsplit(" ", 1)[-1])  # "DELETE n"
        deleted += count
        if count < batch:
            return deleted


async def apply_retention(conn: asyncpg.Connection, retention_days: int, now: datetime,
                          *, batch: int = 5000) -> RetentionRun:
    """One retention run on ``conn`` (outside any transaction). The caller makes sure
    only one runs at a time (:mod:`.maintenance` holds an advisory lock)."""
    run = RetentionRun()
    await finish_interrupted_drops(conn)
    plan = retention_plan(await attached_days(conn), now, retention_days)
    if plan is None:
        return run
    for day in plan.drop:
        await drop_day(conn, day)
        run.dropped.append(day)
    if plan.trim is not None:
        statement = _TRIM_BATCH.format(day=partition_name("pairs", plan.trim))
        run.deleted += await _delete_batches(conn, statement, plan.cutoff, batch=batch)
    if await conn.fetchval("SELECT to_regclass('legacy_pairs') IS NOT NULL"):
        run.deleted += await _delete_batches(conn, _LEGACY_BATCH, plan.cutoff, batch=batch)
    return run


async def delete_expired(url: str, retention_days: int, now: datetime, *,
                         batch: int = 5000) -> RetentionRun:
    """:func:`apply_retention` on a connection of its own."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await apply_retention(conn, retention_days, now, batch=batch)
    finally:
        await conn.close()
