"""Responses API history in PostgreSQL (``response_history``), shared by every mirror.

A ``previous_response_id`` turn may land on any worker or replica; the mirror that saw
the earlier turns writes each of them here, and the one that needs the chain reads it
back in one recursive query. Only mirror processes touch it, never on a user's path.

::

    ended turn ─ save() ─▶ queue ─▶ flush task ─ INSERT … ON CONFLICT DO NOTHING ─▶ table
    resolving turn ───── chain(id) ─ WITH RECURSIVE (parent links, unexpired) ─────◀─┘
    every minute, one process at a time: DELETE expired rows, then the oldest past
    RESPONSES_STORED_MB

It is a cache of what the primary already stores, so a database that is down loses
history (counted as misses by :class:`~shadowproxy.mirror.conversations.ResponseHistory`),
never a pair: saves are dropped and counted, not spooled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shadowproxy.store.urls import asyncpg_dsn
from shadowproxy.tasks import cancel_and_wait, spawn

__all__ = ["HistoryStore", "StoredTurn"]

log = logging.getLogger(__name__)

_PRUNE_LOCK = 0x5348_4144_0004
_MAX_DEPTH = 10_000
_QUEUE_MAX = 10_000
_BATCH = 200

_INSERT = (
    "INSERT INTO response_history (response_id, parent_id, items, size_bytes, expires_at) "
    "VALUES ($1, $2, $3::jsonb, $4, $5) ON CONFLICT (response_id) DO NOTHING"
)
_CHAIN = """
    WITH RECURSIVE chain(response_id, parent_id, items, expires_at, depth) AS (
        SELECT response_id, parent_id, items, expires_at, 0 FROM response_history
        WHERE response_id = $1 AND expires_at > $2
        UNION ALL
        SELECT h.response_id, h.parent_id, h.items, h.expires_at, c.depth + 1
        FROM response_history h JOIN chain c ON h.response_id = c.parent_id
        WHERE h.expires_at > $2 AND c.depth < $3
    )
    SELECT response_id, parent_id, items::text AS items, expires_at FROM chain ORDER BY depth
"""
_PRUNE = [
    "DELETE FROM response_history WHERE expires_at <= $1",
    """DELETE FROM response_history WHERE response_id IN (
           SELECT response_id FROM (
               SELECT response_id,
                      sum(size_bytes) OVER (ORDER BY expires_at DESC, response_id) AS total
               FROM response_history) newest_first
           WHERE total > $1)""",
]


@dataclass(frozen=True, slots=True)
class StoredTurn:
    response_id: str
    parent_id: str | None
    items: list[Any]
    expires_at: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


class HistoryStore:
    def __init__(
        self,
        url: str,
        *,
        keep_s: float = 24 * 3600.0,
        max_bytes: int = 1 << 30,
        clock: Callable[[], datetime] = _utc_now,
        prune_every_s: float = 60.0,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self.keep = timedelta(seconds=keep_s)
        self.max_bytes = max_bytes
        self._clock = clock
        self._prune_every_s = prune_every_s
        self._pool: asyncpg.Pool | None = None
        self._queue: deque[tuple[str, str | None, str, int, datetime]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        self._failing = False
        self._closing = False
        # Counters, for metrics and tests.
        self.saved = 0
        self.save_errors = 0  # turns not stored (database down, queue full)

    async def start(self) -> None:
        # min_size 0: nothing connects until the first query, so a database that is
        # down at start is not an error here.
        self._pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=2,
                                               command_timeout=10)
        self._task = spawn(self._flush_forever(), name="response-history")

    async def close(self, timeout_s: float = 2.0) -> None:
        """Store what is queued within ``timeout_s``; the rest is dropped and counted."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            self._wake.set()
            await asyncio.wait({task}, timeout=timeout_s)
            await cancel_and_wait(task)
        self.save_errors += len(self._queue)
        self._queue.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()

    def save(self, response_id: str, parent_id: str | None, items: list[Any]) -> None:
        """Queue one answered turn; synchronous, never raises."""
        if len(self._queue) >= _QUEUE_MAX:
            self.save_errors += 1
            return
        encoded = json.dumps(items, separators=(",", ":"), default=str)
        self._queue.append((response_id, parent_id, encoded, len(encoded),
                            self._clock() + self.keep))
        self._wake.set()

    async def chain(self, response_id: str) -> list[StoredTurn]:
        """``response_id`` and its ancestors, newest first, as far as they are stored
        and unexpired. Raises on a database error (the caller counts the miss)."""
        assert self._pool is not None, "start() first"
        rows = await self._pool.fetch(_CHAIN, response_id, self._clock(), _MAX_DEPTH)
        return [StoredTurn(r["response_id"], r["parent_id"], json.loads(r["items"]),
                           r["expires_at"]) for r in rows]

    async def _flush_forever(self) -> None:
        while not self._closing or self._queue:
            if not self._queue:
                await self._wake.wait()
                self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                await self._write(batch)
            if not self._closing and time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + self._prune_every_s
                await self._prune()

    async def _write(self, batch: list[tuple[str, str | None, str, int, datetime]]) -> None:
        assert self._pool is not None
        try:
            await self._pool.executemany(_INSERT, batch)
        except Exception as exc:  # an outage or a bad row: history is a cache, go on
            self.save_errors += len(batch)
            if not self._failing:
                log.warning("Responses history not stored (%s: %s); later turns that "
                            "continue these answers on another mirror will be skipped",
                            type(exc).__name__, exc)
            self._failing = True
            return
        if self._failing:
            log.info("Responses history stored again")
        self._failing = False
        self.saved += len(batch)

    async def _prune(self) -> None:
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)",
                                           _PRUNE_LOCK):
                    return  # another mirror is at it
                await conn.execute(_PRUNE[0], self._clock())
                await conn.execute(_PRUNE[1], self.max_bytes)
        except Exception as exc:
            log.debug("pruning Responses history failed: %s", exc)
