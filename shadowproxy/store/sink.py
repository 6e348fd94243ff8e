"""The database end of the writer: one asyncpg connection, idempotent batch inserts.

A batch is COPied (binary) straight into ``pairs`` in one transaction: COPY is several
times faster than a multi-row INSERT for 53-column rows. When a pair in it is already
stored (a replay after a crash or a timeout that did commit), the COPY fails as a whole
and the batch takes the slow route: COPY into a per-connection temporary table, then
``INSERT … SELECT … ON CONFLICT (id, received_at) DO NOTHING``. Either way, writing a
batch twice stores each pair once: a pair's ``received_at`` is part of its key (``pairs``
is partitioned by it) and travels unchanged through the spool, so a replay has the very
key the first write had.

``pairs`` has a partition per UTC day (:mod:`.partitions`). A batch holding a pair whose
day has none (a spool replayed days later, a clock that ran ahead, a day maintenance has
not prepared yet) fails; the sink creates the batch's days and writes it again, so such
a pair is stored like any other.
asyncpg is used directly, not through SQLAlchemy: this is the one hot path, and it needs
COPY.

Errors are mapped once, here, into two kinds the writer acts on differently:
:class:`StoreUnavailable` (spool and retry later) and :class:`PairRejected` (this data
can never be stored; retrying would wedge the spool forever).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

import asyncpg

from shadowproxy.day_partitions import day_of
from shadowproxy.records import PairRecord
from shadowproxy.storable import needs_repair, repair_json, repair_text
from shadowproxy.store.columns import HEAD_COLUMNS, JSONB_COLUMNS, PAIR_COLUMNS, SIDE_FIELDS
from shadowproxy.store.partitions import ensure_days, is_missing_partition
from shadowproxy.store.urls import asyncpg_dsn

_STAGING = "pairs_incoming"
_COLUMN_LIST = ", ".join(PAIR_COLUMNS)
_CREATE_STAGING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} "
    f"(LIKE pairs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MOVE = (
    f"INSERT INTO pairs ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_STAGING} "
    "ON CONFLICT (id, received_at) DO NOTHING"
)


class StoreError(Exception):
    """A batch did not reach the database.

    ::

        StoreError
        ├── StoreUnavailable   connection refused/lost, timeout, schema missing: retry
        └── PairRejected       the data itself is invalid: retrying cannot help
    """


class StoreUnavailable(StoreError):
    pass


class PairRejected(StoreError):
    pass


def _scrub(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL or lone UTF-16 surrogates; a model or an
    application may still send them (a ``\\ud800`` escape, an emoji split across two
    stream deltas). Repaired, never dropped: see :func:`shadowproxy.storable.repair_text`."""
    return repair_json(value)


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_side_values = operator.attrgetter(*SIDE_FIELDS)
_NO_SIDE = (None,) * len(SIDE_FIELDS)
_record_head = operator.attrgetter(*HEAD_COLUMNS)
_JSONB_INDEXES = frozenset(i for i, c in enumerate(PAIR_COLUMNS) if c in JSONB_COLUMNS)


def pair_row(record: PairRecord, *, scrub: bool = False) -> tuple[Any, ...]:
    """The record as a COPY row in :data:`PAIR_COLUMNS` order (``to_row()``'s order).

    Built with attrgetters rather than ``to_row()``: this runs for every pair and is
    the writer's main CPU cost. ``scrub`` replaces NUL characters, which PostgreSQL
    refuses; it is only needed for the rare batch the database rejected.
    """
    row = list(_record_head(record))
    for side in (record.primary, record.shadow, record.replay):  # records.SIDES' order
        row.extend(_NO_SIDE if side is None else _side_values(side))
    for index in _JSONB_INDEXES:
        if row[index] is not None:
            row[index] = _encode_json(row[index])
    if scrub:
        row = [_scrub_cell(value, index in _JSONB_INDEXES) for index, value in enumerate(row)]
    return tuple(row)


def _scrub_cell(value: Any, is_json: bool) -> Any:
    if not isinstance(value, str):
        return value
    if is_json:
        if "\\u0000" in value or needs_repair(value):
            return _encode_json(_scrub(json.loads(value)))
        return value
    return repair_text(value)


class PairSink:
    """Owns the connection; reconnects lazily after a failure."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self._dsn = asyncpg_dsn(url)
        self._timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None

    async def connect(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._timeout_s)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot connect: {exc}") from exc
        try:
            await conn.execute(_CREATE_STAGING, timeout=self._timeout_s)
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, Exception):
                raise StoreUnavailable(f"cannot prepare the connection: {exc}") from exc
            raise
        self._conn = conn

    async def write(self, records: Sequence[PairRecord], *, scrub: bool = False) -> int:
        """Store the batch in one transaction; return how many pairs were new."""
        await self.connect()
        assert self._conn is not None
        try:
            rows = [pair_row(r, scrub=scrub) for r in records]
        except Exception as exc:  # our own encoding of this data: retrying cannot help
            raise PairRejected(f"cannot encode: {exc!r}") from exc
        try:
            return await self._insert_creating_days(self._conn, records, rows)
        except StoreUnavailable:
            raise
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
                TypeError, ValueError) as exc:
            raise PairRejected(str(exc)) from exc
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise StoreUnavailable(str(exc)) from exc
        except Exception as exc:
            # asyncpg's own state errors ("cannot switch to state 15; another operation is
            # in progress", InternalClientError) leave the connection unusable and are none
            # of the above: drop the connection and let the writer spool the batch. Before
            # this, such a batch escaped the writer's handling and was lost uncounted (seen
            # while PostgreSQL restarted under load).
            self._terminate()
            raise StoreUnavailable(f"database client error: {exc!r}") from exc

    def _terminate(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _insert_creating_days(self, conn: asyncpg.Connection,
                                    records: Sequence[PairRecord],
                                    rows: list[tuple[Any, ...]]) -> int:
        try:
            return await self._insert(conn, rows)
        except asyncpg.CheckViolationError as exc:
            if not is_missing_partition(exc):
                raise
        await ensure_days(conn, {day_of(r.received_at) for r in records})
        try:
            return await self._insert(conn, rows)
        except asyncpg.CheckViolationError as exc:
            if not is_missing_partition(exc):
                raise
            # Created a moment ago and gone again (retention dropping an expired day at
            # that instant): not this data's fault, so the batch waits in the spool.
            raise StoreUnavailable(f"no partition for this batch's days: {exc}") from exc

    async def _insert(self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> int:
        # Fast path: straight COPY. It fails as a whole on a pair already stored (a
        # replay), and then the staging route skips exactly the known ones.
        try:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "pairs", records=rows, columns=PAIR_COLUMNS, timeout=self._timeout_s
                )
            return len(rows)
        except asyncpg.UniqueViolationError:
            pass
        async with conn.transaction():
            await conn.copy_records_to_table(
                _STAGING, records=rows, columns=PAIR_COLUMNS, timeout=self._timeout_s
            )
            status = await conn.execute(_MOVE, timeout=self._timeout_s)
        return int(status.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=1.0)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()
