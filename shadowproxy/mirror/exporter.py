"""Copies the mirror's plain counters into Prometheus metrics once a second.

The engine and the writer keep ints (cheap, no library on their hot paths); this task
turns their growth into counter increments and their levels into gauges.

The writer's real state is here for ``/readyz`` and alerts: ``shadowproxy_database_up``,
``shadowproxy_spool_writable``, ``shadowproxy_spool_bytes``,
``shadowproxy_writer_pending``, and every pair lost in
``shadowproxy_pairs_lost_total{reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib

from shadowproxy.metrics import Metrics
from shadowproxy.mirror.engine import MirrorEngine
from shadowproxy.store.writer import PairWriter


class MirrorExporter:
    def __init__(self, metrics: Metrics, engine: MirrorEngine, writer: PairWriter) -> None:
        self._m = metrics
        self._engine = engine
        self._writer = writer
        self._seen: dict[str, int] = {}

    def _grow(self, key: str, value: int) -> int:
        delta = value - self._seen.get(key, 0)
        self._seen[key] = value
        return max(delta, 0)

    def export(self) -> None:
        m, e, w = self._m, self._engine, self._writer
        for outcome, count in list(e.outcomes.items()):
            if delta := self._grow(f"outcome:{outcome}", count):
                m.shadow_outcomes.labels(outcome).inc(delta)
        m.shadow_queue.set(e.waiting)
        m.shadow_in_flight.set(e.in_flight)
        if written := self._grow("written", w.written):
            m.pairs_written.inc(written)
            if w.last_batch_latency_s is not None:  # a sample of the latest batch
                m.batch_latency.observe(w.last_batch_latency_s)
        for key, metric, value in (
            ("spooled", m.pairs_spooled, w.spooled),
            ("spool_dropped", m.spool_dropped, w.spool_dropped + w.overflow_dropped),
            ("db_errors", m.db_errors, w.db_errors),
        ):
            if delta := self._grow(key, value):
                metric.inc(delta)
        for reason, count in list(e.responses.misses.items()):
            if delta := self._grow(f"history_miss:{reason}", count):
                m.responses_history_misses.labels(reason).inc(delta)
        lost = w.lost + e.lost
        for reason, count in lost.items():
            if delta := self._grow(f"lost:{reason}", count):
                m.count_lost(reason, delta)
        m.spool_bytes.set(w.spool.size_bytes)
        m.database_up.set(1 if w.database_up else 0)
        m.spool_writable.set(1 if w.spool_writable else 0)
        m.writer_pending.set(w.pending)

    async def run(self, interval_s: float = 1.0) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                self.export()
                await asyncio.sleep(interval_s)
