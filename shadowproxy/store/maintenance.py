"""The store's upkeep while ``serve`` runs: day partitions ahead, retention, the move.

Worker 0's mirror of every replica runs one :class:`StoreMaintenance`:

- **every hour** (and at start): create the partitions of yesterday through
  ``ahead_days`` after today, finish drops a killed run left half done, and apply
  retention (:mod:`.retention`). One replica at a time: the run takes a session advisory
  lock and a replica that finds it taken skips its turn. A database that is down only
  postpones the run.
- **until it is done**: move the pairs stored before partitioning (:mod:`.legacy_move`),
  at half the database's time at most, so traffic keeps the rest.

The writer does not depend on any of this to store a pair: a day with no partition is
created on the spot (:mod:`.sink`). Preparing days ahead only keeps that off the hot path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import asyncpg

from shadowproxy.day_partitions import days_ahead
from shadowproxy.store.legacy_move import move_legacy
from shadowproxy.store.partitions import MAINTENANCE_LOCK, ensure_days
from shadowproxy.store.retention import apply_retention
from shadowproxy.store.urls import asyncpg_dsn
from shadowproxy.tasks import cancel_and_wait, spawn

__all__ = ["MaintenanceRun", "StoreMaintenance", "maintain"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class MaintenanceRun:
    ran: bool = False  # False: another process held the lock
    created: list[date] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)
    deleted: int = 0


async def maintain(url: str, retention_days: int, now: datetime, *,
                   ahead_days: int = 2, batch: int = 5000) -> MaintenanceRun:
    """One maintenance run: days ahead, then retention; skipped while another runs."""
    run = MaintenanceRun()
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MAINTENANCE_LOCK):
            return run
        try:
            run.ran = True
            run.created = await ensure_days(conn, days_ahead(now, ahead_days))
            retention = await apply_retention(conn, retention_days, now, batch=batch)
            run.dropped, run.deleted = retention.dropped, retention.deleted
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MAINTENANCE_LOCK)
    finally:
        await conn.close()
    return run


class StoreMaintenance:
    """:func:`maintain` every ``interval_s``, and the legacy move until it is done."""

    def __init__(
        self,
        url: str,
        retention_days: int,
        *,
        interval_s: float = 3600.0,
        ahead_days: int = 2,
        clock: Clock = utc_now,
        move_batch: int = 2000,
    ) -> None:
        self._url = url
        self.retention_days = retention_days
        self.interval_s = interval_s
        self.ahead_days = ahead_days
        self._clock = clock
        self._move_batch = move_batch
        self.runs = 0
        self.dropped: list[date] = []
        self.deleted = 0
        self.moved = 0
        self.move_finished = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [spawn(self._periodic(), name="store-maintenance"),
                           spawn(self._move(), name="legacy-move")]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []

    async def _periodic(self) -> None:
        while True:
            try:
                run = await maintain(self._url, self.retention_days, self._clock(),
                                     ahead_days=self.ahead_days)
            except Exception as exc:
                # An outage is the writer's to report; maintenance just tries later.
                log.warning("store maintenance failed, will retry: %s: %s",
                            type(exc).__name__, exc)
            else:
                self.dropped += run.dropped
                self.deleted += run.deleted
                if run.dropped or run.deleted:
                    log.info("retention: dropped %d day(s) and deleted %d pairs older "
                             "than %d days", len(run.dropped), run.deleted,
                             self.retention_days)
            self.runs += 1
            await asyncio.sleep(self.interval_s)

    async def _move(self) -> None:
        delay = 1.0
        while not self.move_finished:
            try:
                progress = await move_legacy(self._url, batch=self._move_batch,
                                             busy_share=0.5)
            except Exception as exc:
                log.warning("moving pairs into day partitions failed, will retry: %s: %s",
                            type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            self.moved += progress.moved
            if progress.moved:
                log.info("moved %d pairs stored before partitioning; done", progress.moved)
            self.move_finished = progress.finished
