"""Delete pairs older than ``RETENTION_DAYS``, a batch at a time.

One ``DELETE … WHERE received_at < cutoff`` over a month of traffic would hold row
locks and bloat WAL for a long time while the writer is inserting; many short
transactions of ``batch`` rows each keep every one of them brief. Scores go with their
pair (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shadowproxy.store.migrate import asyncpg_url
from shadowproxy.tasks import cancel_and_wait, spawn

log = logging.getLogger(__name__)

_DELETE_BATCH = text(
    """
    DELETE FROM pairs WHERE id IN (
        SELECT id FROM pairs
        WHERE received_at < now() - make_interval(days => :days)
        LIMIT :batch
    )
    """
)


async def delete_expired(
    url_or_engine: str | AsyncEngine, retention_days: int, batch: int = 5000
) -> int:
    """Delete pairs received more than ``retention_days`` ago; return how many."""
    if retention_days <= 0:
        return 0
    owned = isinstance(url_or_engine, str)
    engine = (
        create_async_engine(asyncpg_url(url_or_engine))
        if isinstance(url_or_engine, str)
        else url_or_engine
    )
    deleted = 0
    try:
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(
                    _DELETE_BATCH, {"days": retention_days, "batch": batch}
                )
            deleted += result.rowcount
            if result.rowcount < batch:
                return deleted
    finally:
        if owned:
            await engine.dispose()


class RetentionTask:
    """Run :func:`delete_expired` every ``interval_s`` while ``retention_days`` > 0."""

    def __init__(
        self,
        url_or_engine: str | AsyncEngine,
        retention_days: int,
        *,
        interval_s: float = 3600.0,
        batch: int = 5000,
    ) -> None:
        self._target = url_or_engine
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
                deleted = await delete_expired(self._target, self.retention_days, self.batch)
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
