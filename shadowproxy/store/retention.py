"""Delete pairs older than ``RETENTION_DAYS``, a batch at a time.

One ``DELETE … WHERE received_at < cutoff`` over a month of traffic would hold row
locks and bloat WAL for a long time while the writer is inserting; many short
transactions of ``batch`` rows each keep every one of them brief. Scores go with their
pair (``ON DELETE CASCADE``).


It speaks asyncpg directly (like the writer): the mirror process that runs it then
never loads SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from shadowproxy.store.urls import asyncpg_dsn
from shadowproxy.tasks import cancel_and_wait, spawn

log = logging.getLogger(__name__)

_DELETE_BATCH = """
    DELETE FROM pairs WHERE id IN (
        SELECT id FROM pairs
        WHERE received_at < now() - make_interval(days => $1)
        LIMIT $2
    )
"""


async def delete_expired(url: str, retention_days: int, batch: int = 5000) -> int:
    """Delete pairs received more than ``retention_days`` ago; return how many."""
    if retention_days <= 0:
        return 0
    conn = await asyncpg.connect(asyncpg_dsn(url))
    deleted = 0
    try:
        while True:
            status = await conn.execute(_DELETE_BATCH, retention_days, batch)
            count = int(status.rsplit(" ", 1)[-1])  # "DELETE n"
            deleted += count
            if count < batch:
                return deleted
    finally:
        await conn.close()


class RetentionTask:
    """Run :func:`delete_expired` every ``interval_s`` while ``retention_days`` > 0."""

    def __init__(
        self,
        url: str,
        retention_days: int,
        *,
        interval_s: float = 3600.0,
        batch: int = 5000,
    ) -> None:
        self._url = url
        self.retention_days = retention_days
        self.interval_s = interval_s
        self.batch = batch
        self.deleted = 0
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.retention_days > 0 and self._task is None:
            self._task = spawn(self._run(), name="retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                deleted = await delete_expired(self._url, self.retention_days, self.batch)
            except Exception as exc:
                # An outage is the writer's problem to report; retention just tries later.
                log.warning("retention run failed, will retry: %s: %s",
                            type(exc).__name__, exc)
            else:
                self.deleted += deleted
                if deleted:
                    log.info("retention: deleted %d pairs older than %d days",
                             deleted, self.retention_days)
            self.runs += 1
            await asyncio.sleep(self.interval_s)
