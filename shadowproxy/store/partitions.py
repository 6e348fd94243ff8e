"""Creating and dropping the day partitions (names and bounds: :mod:`shadowproxy.day_partitions`).

**Creating** a day makes four empty tables (``pairs_pYYYYMMDD`` and its ``scores``,
``reviews`` and ``review_items`` partitions, each child with a foreign key to that day's
``pairs`` partition, ``ON DELETE CASCADE``) and *attaches* them, all in one transaction.
``CREATE TABLE … PARTITION OF`` would take an ACCESS EXCLUSIVE lock on the parent and
so queue behind a running report and in front of the writer; ``ATTACH PARTITION`` takes
only SHARE UPDATE EXCLUSIVE, which neither reads nor inserts conflict with. There is no
default partition: a pair whose day has no partition fails to insert, and the writer
creates the day and writes again (see :mod:`.sink`), so nothing lands in a catch-all that
would later have to be emptied row by row, and retention can detach concurrently (which a
default partition forbids).

**Dropping** a day detaches each of its tables ``CONCURRENTLY`` (no lock that blocks
readers or the writer; it waits for queries that started before it) and then drops the
detached tables. Foreign keys are between a day's own tables only, so no check scans any
other partition. A run killed half-way leaves tables detached, or "detach pending":
:func:`finish_interrupted_drops` completes them at the next run.

Every function takes an open asyncpg connection: the writer, the maintenance task and
the tests share them. Creating is serialised across processes and replicas by a
transaction-scoped advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import asyncpg

from shadowproxy.day_partitions import (
    CHILD_TABLES,
    PARTITIONED_TABLES,
    day_bounds,
    parse_partition_name,
    partition_name,
)

__all__ = [
    "attached_days",
    "drop_day",
    "ensure_days",
    "finish_interrupted_drops",
    "is_missing_partition",
]

# Advisory lock keys (one namespace for the whole store): creating days, and one
# maintenance run at a time across every process and replica.
CREATE_LOCK = 0x5348_4144_0001
MAINTENANCE_LOCK = 0x5348_4144_0002

_ATTACHED = """
    SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'pairs'::regclass AND NOT i.inhdetachpending
"""


def is_missing_partition(exc: BaseException) -> bool:
    """The error PostgreSQL gives for a row whose day has no partition."""
    return (isinstance(exc, asyncpg.CheckViolationError)
            and "no partition of relation" in str(exc))


async def attached_days(conn: asyncpg.Connection) -> set[date]:
    """The days whose ``pairs`` partition is attached."""
    days: set[date] = set()
    for row in await conn.fetch(_ATTACHED):
        parsed = parse_partition_name(row["relname"])
        if parsed is not None and parsed[0] == "pairs":
            days.add(parsed[1])
    return days


def _literal(moment: object) -> str:
    return "'" + str(moment).replace("'", "''") + "'"


# ATTACH requires the parent's checks on the partition (reviews' choice check); the
# parent's indexes it creates itself.
_LIKE = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"


def _create_day_sql(day: date) -> list[str]:
    start, end = (_literal(b.isoformat()) for b in day_bounds(day))
    pairs = partition_name("pairs", day)
    statements = [
        f"CREATE TABLE {partition_name(t, day)} (LIKE {t} {_LIKE})"
        for t in PARTITIONED_TABLES
    ]
    # The children's foreign keys need the unique index before the parent's ATTACH
    # would create it; ATTACH adopts this one.
    statements.append(f"ALTER TABLE {pairs} ADD PRIMARY KEY (id, received_at)")
    statements += [
        f"ALTER TABLE {partition_name(child, day)} ADD FOREIGN KEY (pair_id, received_at) "
        f"REFERENCES {pairs} (id, received_at) ON DELETE CASCADE"
        for child in CHILD_TABLES
    ]
    statements += [
        f"ALTER TABLE {t} ATTACH PARTITION {partition_name(t, day)} "
        f"FOR VALUES FROM ({start}) TO ({end})"
        for t in PARTITIONED_TABLES
    ]
    return statements


async def ensure_days(conn: asyncpg.Connection, days: Iterable[date]) -> list[date]:
    """Create the partitions of every day in ``days`` that has none; return those created.

    Safe to call from any number of processes at once: they queue on an advisory lock
    and each re-checks what exists once it holds it.
    """
    wanted = set(days)
    if not wanted or wanted <= await attached_days(conn):
        return []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CREATE_LOCK)
        missing = sorted(wanted - await attached_days(conn))
        for day in missing:
            for statement in _create_day_sql(day):
                await conn.execute(statement)
    return missing


async def drop_day(conn: asyncpg.Connection, day: date) -> None:
    """Detach (concurrently) and drop one day's four tables; children first.

    Must run outside a transaction (``DETACH … CONCURRENTLY`` refuses one).
    """
    names = [partition_name(t, day) for t in reversed(PARTITIONED_TABLES)]
    attached = {r["relname"]: r["inhdetachpending"] for r in await conn.fetch(
        "SELECT c.relname, i.inhdetachpending FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = ANY($1::text[])", names)}
    for table, name in zip(reversed(PARTITIONED_TABLES), names, strict=True):
        if name in attached:
            how = "FINALIZE" if attached[name] else "CONCURRENTLY"
            await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {name} {how}")
    await conn.execute(f"DROP TABLE IF EXISTS {', '.join(names)}")


async def finish_interrupted_drops(conn: asyncpg.Connection) -> list[date]:
    """Complete drops a killed run left half done: partitions whose detach is pending,
    and detached tables (named like a partition, attached to nothing) not yet dropped."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
        "AND (i.inhrelid IS NULL OR i.inhdetachpending)"
    )
    days = sorted({parsed[1] for r in rows
                   if (parsed := parse_partition_name(r["relname"])) is not None})
    for day in days:
        await drop_day(conn, day)
    return days
