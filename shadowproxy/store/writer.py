"""The pair writer: the mirror hands over records, they reach PostgreSQL in batches.

::

    submit() ─▶ pending (deque, bounded) ─▶ flush task ─┬─▶ sink: COPY + INSERT … ON CONFLICT
       sync, never blocks or raises                    └─▶ spool (db down, or spool not empty)
                                                              │ probe every ≤ 2 s
                                                              ▼ db back: spool first, in order

Ordering rule: while the spool holds anything, new batches are appended to it rather
than written directly, so pairs reach the database in the order they arrived. Every
write is idempotent by pair id, so a batch replayed after a crash or a timeout that
did commit is never stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence

from shadowproxy.records import PairRecord
from shadowproxy.store.reach import database_problem
from shadowproxy.store.sink import PairRejected, PairSink, StoreUnavailable
from shadowproxy.store.spool import Spool
from shadowproxy.tasks import cancel_and_wait, spawn

log = logging.getLogger(__name__)


class PairWriter:
    def __init__(
        self,
        url: str,
        spool: Spool,
        *,
        batch_max: int = 500,
        max_delay_s: float = 0.05,
        max_pending: int = 100_000,
        probe_max_s: float = 2.0,
        write_timeout_s: float = 30.0,
    ) -> None:
        self.spool = spool
        self.batch_max = batch_max
        self.max_delay_s = max_delay_s
        self.max_pending = max_pending
        self.probe_max_s = probe_max_s
        self._sink = PairSink(url, timeout_s=write_timeout_s)
        self._url = url  # for messages: host and port, never the password
        self._pending: deque[PairRecord] = deque()
        self._inflight: Sequence[PairRecord] = ()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._down = False
        self._probe_delay_s = 0.0
        self._next_probe = 0.0
        # Counters, read by the metrics endpoint.
        self.written = 0  # pairs newly stored
        self.duplicates = 0  # pairs the database already had (replays)
        self.spooled = 0  # pairs appended to the spool
        self.replayed = 0  # spooled pairs later written to the database
        self.rejected = 0  # pairs the database refused as invalid (logged, not stored)
        self.overflow_dropped = 0  # pairs refused because pending was full
        self.db_errors = 0  # failed writes and failed probes while it is down
        self.last_batch_latency_s: float | None = None

    @property
    def pending(self) -> int:
        """Accepted pairs that are neither stored nor spooled yet."""
        return len(self._pending) + len(self._inflight)

    @property
    def spool_dropped(self) -> int:
        return self.spool.dropped

    @property
    def database_up(self) -> bool:
        return not self._down

    async def start(self) -> None:
        """Connect, replay what an earlier run spooled, then start flushing.

        A database that is down is not an error here: pairs go to the spool until it
        answers.
        """
        await self._replay_spool()
        self._task = spawn(self._run(), name="pair-writer")

    def submit(self, record: PairRecord) -> None:
        """Queue a pair for storage; synchronous, never blocks, never raises."""
        try:
            if self._closed:
                # Nothing flushes any more; the spool is the only way not to lose it.
                self.spooled += self.spool.append([record])
                return
            if len(self._pending) >= self.max_pending:
                self.overflow_dropped += 1
                if self.overflow_dropped % 1000 == 1:
                    log.error("writer backlog full (%d): dropping pairs", self.max_pending)
                return
            self._pending.append(record)
            self._wake.set()
        except Exception:
            log.exception("could not queue pair %s", getattr(record, "id", "?"))

    async def close(self, timeout_s: float) -> None:
        """Flush what the database takes within ``timeout_s``; spool the rest."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout_s)
            await cancel_and_wait(task)
        self._closed = True  # from here on, submit() spools directly
        leftover = [*self._inflight, *self._pending]
        self._inflight = ()
        self._pending.clear()
        if leftover:
            await self._to_spool(leftover)
        await self._sink.close()

    # -- the flush task --------------------------------------------------------------

    async def _run(self) -> None:
        while not (self._closing and not self._pending):
            try:
                await self._flush_once()
            except Exception:
                # A bug, not an outage: keep the writer alive, the next round retries.
                log.exception("pair writer round failed")
                await asyncio.sleep(1.0)

    async def _flush_once(self) -> None:
        await self._wait_for_work()
        if self._down or not self.spool.is_empty():
            await self._to_spool(self._take(len(self._pending)))
            if not self._closing and time.monotonic() >= self._next_probe:
                await self._replay_spool()
            return
        batch = self._take(self.batch_max)
        if not await self._write(batch):
            await self._to_spool(batch)

    async def _wait_for_work(self) -> None:
        if not self._pending and not self._closing:
            timeout = max(0.0, self._next_probe - time.monotonic()) if self._down else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if not self._closing and len(self._pending) < self.batch_max:
                # Let a batch gather: one round trip for many pairs.
                await asyncio.sleep(self.max_delay_s)

    def _take(self, count: int) -> list[PairRecord]:
        return [self._pending.popleft() for _ in range(min(count, len(self._pending)))]

    async def _write(self, batch: Sequence[PairRecord]) -> bool:
        """Write one batch; False when the database is unavailable."""
        if not batch:
            return True
        self._inflight = batch
        started = time.monotonic()
        try:
            stored = await self._sink.write(batch)
        except StoreUnavailable as exc:
            self._mark_down(exc)
            return False
        except PairRejected:
            stored = await self._write_rejected(batch)
        finally:
            self._inflight = ()
        self.last_batch_latency_s = time.monotonic() - started
        self.written += stored
        self.duplicates += len(batch) - stored
        return True

    async def _write_rejected(self, batch: Sequence[PairRecord]) -> int:
        """The database refused the batch: scrub NULs, then isolate the invalid pairs."""
        try:
            return await self._sink.write(batch, scrub=True)
        except PairRejected:
            pass
        except StoreUnavailable as exc:
            self._mark_down(exc)
            await self._to_spool(batch)
            return 0
        stored = 0
        for index, record in enumerate(batch):
            try:
                stored += await self._sink.write([record], scrub=True)
            except PairRejected as exc:
                self.rejected += 1
                log.error("pair %s cannot be stored, dropped: %s", record.id, exc)
            except StoreUnavailable as exc:
                self._mark_down(exc)
                await self._to_spool(batch[index:])
                break
        return stored

    async def _to_spool(self, records: Sequence[PairRecord]) -> None:
        if records:
            self.spooled += await asyncio.to_thread(self.spool.append, records)

    async def _replay_spool(self) -> None:
        """Write the spool oldest segment first; stop at the first failure.

        Also the probe: it ends with the database marked up only if it answered.
        """
        try:
            await self._sink.connect()
        except StoreUnavailable as exc:
            self._mark_down(exc)
            return
        while True:
            if self._pending:
                # Newer than everything spooled: they queue behind it, in order.
                await self._to_spool(self._take(len(self._pending)))
            segment = await asyncio.to_thread(self.spool.oldest)
            if segment is None:
                break
            for start in range(0, len(segment.records), self.batch_max):
                chunk = segment.records[start : start + self.batch_max]
                before = self.written + self.duplicates
                if not await self._write(chunk):
                    return
                self.replayed += self.written + self.duplicates - before
            await asyncio.to_thread(self.spool.release, segment)
        if self._down:
            log.warning("database reachable again; spool replayed")
        self._down = False
        self._probe_delay_s = 0.0

    def _mark_down(self, exc: Exception) -> None:
        self.db_errors += 1
        if not self._down:
            log.warning("database unavailable, spooling pairs: %s",
                        database_problem(exc, self._url) or exc)
        self._down = True
        self._probe_delay_s = min(self.probe_max_s, max(0.1, self._probe_delay_s * 2))
        self._next_probe = time.monotonic() + self._probe_delay_s
