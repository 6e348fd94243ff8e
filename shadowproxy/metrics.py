"""Prometheus metrics (the ``prometheus-client`` library).

With several processes (workers and their mirrors) every process writes its samples
to ``PROMETHEUS_MULTIPROC_DIR`` and whichever process answers ``/metrics`` aggregates
them; with one process the default registry is used.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A registry of its own, so several instances (tests, workers) never collide.
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self.requests = Counter(
            "shadowproxy_requests", "Requests answered to applications",
            ["api", "status"], registry=reg,
        )
        self.latency = Histogram(
            "shadowproxy_request_duration_seconds",
            "User-facing latency, request received to answer done", ["api"],
            buckets=_LATENCY_BUCKETS, registry=reg,
        )
        self.shadow_outcomes = Counter(
            "shadowproxy_shadow_outcomes", "Shadow calls by outcome", ["outcome"], registry=reg
        )
        self.shadow_queue = Gauge(
            "shadowproxy_shadow_queue_depth", "Shadows waiting for a slot",
            multiprocess_mode="livesum", registry=reg,
        )
        self.shadow_in_flight = Gauge(
            "shadowproxy_shadow_in_flight", "Shadow calls under way",
            multiprocess_mode="livesum", registry=reg,
        )
        self.mirror_refused = Counter(
            "shadowproxy_mirror_refused", "Exchanges not handed to a busy mirror", registry=reg
        )
        self.pairs_written = Counter(
            "shadowproxy_pairs_written", "Pairs stored in PostgreSQL", registry=reg
        )
        self.pairs_spooled = Counter(
            "shadowproxy_pairs_spooled", "Pairs written to the disk spool", registry=reg
        )
        self.spool_dropped = Counter(
            "shadowproxy_spool_dropped", "Pairs lost because the spool was full", registry=reg
        )
        self.db_errors = Counter("shadowproxy_db_errors", "Failed database writes", registry=reg)
        self.batch_latency = Histogram(
            "shadowproxy_writer_batch_seconds", "Time to write one batch of pairs",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5), registry=reg,
        )
        self.spool_bytes = Gauge(
            "shadowproxy_spool_bytes", "Bytes waiting in the spool",
            multiprocess_mode="livesum", registry=reg,
        )
        # Supervision (proxy/serve.py, proxy/mirror_child.py): children restarted after
        # dying or getting stuck.
        self.restarts = Counter(
            "shadowproxy_restarts", "Worker and mirror processes restarted by supervision",
            ["process"], registry=reg,
        )

        # Every pair that will never be stored, whatever the cause; a reason per cause:
        # refused (mirror behind), capture_budget (proxy capture memory full),
        # spool_full, spool_error (the disk refused the write), writer_backlog,
        # unstorable (PostgreSQL refused it even repaired), assembly, restart_gap.
        self.pairs_lost = Counter(
            "shadowproxy_pairs_lost", "Pairs that will never be stored, by reason",
            ["reason"], registry=reg,
        )

        self.proxy_overhead = Histogram(
            "shadowproxy_added_latency_seconds",
            "Time the proxy adds: user-facing latency minus the upstream exchange",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05), registry=reg,
        )

    # -- cutover in steps: created on first use, by workers that route a plan ----------

    @functools.cached_property
    def _cutover_percent(self) -> Gauge:
        # livemax: while workers catch up with a change, the most any live one routes.
        return Gauge("shadowproxy_cutover_percent",
                     "Percent of the tag's conversations answered by the shadow model",
                     ["tag"], multiprocess_mode="livemax", registry=self.registry)

    @functools.cached_property
    def _cutover_served(self) -> Counter:
        return Counter("shadowproxy_cutover_served",
                       "Requests a plan chose for the shadow, by who answered",
                       ["tag", "served_by"], registry=self.registry)

    @functools.cached_property
    def _cutover_fallbacks(self) -> Counter:
        return Counter("shadowproxy_cutover_fallbacks",
                       "Requests chosen for the shadow that it failed, by cause "
                       "(after_first_byte: the user read part of its answer)",
                       ["tag", "cause"], registry=self.registry)

    def cutover_percent(self, tag: str, percent: int) -> None:
        self._cutover_percent.labels(tag).set(percent)

    def cutover_served(self, tag: str, served_by: str) -> None:
        self._cutover_served.labels(tag, served_by).inc()

    def cutover_fallback(self, tag: str, cause: str) -> None:
        self._cutover_fallbacks.labels(tag, cause).inc()

    @functools.cached_property
    def database_up(self) -> Gauge:
        """Created on first use, which only a mirror process makes: in multiprocess mode
        a gauge writes a 0 for its process as soon as it exists, so a proxy or supervisor
        that merely built it would report the database down for ever."""
        return Gauge(
            "shadowproxy_database_up", "1 while the mirror can write to PostgreSQL",
            multiprocess_mode="liveall", registry=self.registry,
        )

    def count_lost(self, reason: str, count: int = 1) -> None:
        self.pairs_lost.labels(reason).inc(count)

    @functools.cached_property
    def spool_writable(self) -> Gauge:
        """1 while the mirror's last spool write (if any) succeeded; made only by a mirror,
        for the reason :attr:`database_up` is."""
        return Gauge(
            "shadowproxy_spool_writable", "1 while the mirror can write to its disk spool",
            multiprocess_mode="liveall", registry=self.registry,
        )

    @functools.cached_property
    def writer_pending(self) -> Gauge:
        """Pairs accepted by the mirror's writer, neither stored nor spooled yet."""
        return Gauge(
            "shadowproxy_writer_pending", "Pairs waiting in the mirror's writer",
            multiprocess_mode="livesum", registry=self.registry,
        )

    @functools.cached_property
    def mirror_up(self) -> Gauge:
        """Created on first use, by workers only (see :attr:`database_up`)."""
        return Gauge(
            "shadowproxy_mirror_up", "1 while this worker's mirror process is up",
            multiprocess_mode="liveall", registry=self.registry,
        )

    def observe_request(self, api: str, status: int, seconds: float, added: float) -> None:
        # Called on every request: label lookups are cached (they cost more than inc()).
        key = (api, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(api, str(status))
        histogram = self._latency_children.get(api)
        if histogram is None:
            histogram = self._latency_children[api] = self.latency.labels(api)
        counter.inc()
        histogram.observe(seconds)
        self.proxy_overhead.observe(added)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
