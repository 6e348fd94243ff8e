"""A proxy with a cutover plan, its mirror engine in the test's loop, in front of the
simulator (as primary and as the shadow's provider).

The plan is handed to the worker's :class:`Cutover` as a poll of the database would hand
it (``rig.plan(percent)``), so these tests need no database; the tests of plans shared
through PostgreSQL run real ``serve`` processes (tests/e2e/test_cutover_serve.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from shadowproxy.cutover.plan import Plan
from shadowproxy.metrics import Metrics
from shadowproxy.mirror.engine import EngineLimits, MirrorEngine
from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.pricing import PriceTable
from shadowproxy.proxy.app import make_proxy_app
from shadowproxy.proxy.cutover_serve import Cutover, CutoverSettings
from shadowproxy.proxy.shadow_client import make_client
from shadowproxy.records import PairRecord
from shadowproxy.redact import Redactor
from shadowproxy.settings import Settings
from tests.fakes.mirror import InlineMirrorLink

SHADOW_KEY = "sk-ant-shadow-secret-0123456789"
APP_KEY = "sk-app-secret-key-9876543210"
TAG = "support"
STARTED = datetime(2026, 12, 1, 9, tzinfo=UTC)
CREATED = 1_765_000_000


@dataclass
class CutoverRig:
    proxy_url: str
    cutover: Cutover
    metrics: Metrics
    records: list[PairRecord] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def plan(self, percent: int, *, tag: str = TAG, started: datetime = STARTED) -> None:
        """What a poll of cutover_plans would hand the worker."""
        self.cutover.apply([Plan(tag, (max(percent, 1),), 0, percent, False, 1, started,
                                 started, started)])

    async def wait_records(self, n: int) -> list[PairRecord]:
        async with asyncio.timeout(20):
            while len(self.records) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.records

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@asynccontextmanager
async def cutover_rig(
    aiohttp_server: Any, *, primary_url: str, shadow_url: str, percent: int = 100,
    ttfb_s: float = 5.0, guard_window: int = 200, max_fallback_rate: float = 0.05,
    **overrides: Any,
) -> AsyncIterator[CutoverRig]:
    values: dict[str, Any] = {
        "primary_url": primary_url, "shadow_base_url": shadow_url,
        "shadow_api_key": SHADOW_KEY, "shadow_max_retries": 0, "shadow_timeout_s": 10,
    }
    values.update(overrides)
    settings = Settings(**values)
    records: list[PairRecord] = []
    arrived = asyncio.Event()

    def sink(record: PairRecord) -> None:
        records.append(record)
        arrived.set()

    prices = PriceTable.load()
    caller = ShadowCaller(settings, prices=prices)
    engine = MirrorEngine(
        caller=caller, sink=sink,
        limits=EngineLimits(model=settings.shadow_model, timeout_s=settings.shadow_timeout_s),
        redactor=Redactor.from_names(settings.redactors), prices=prices,
    )
    metrics = Metrics(CollectorRegistry())
    cutover = Cutover(
        CutoverSettings(shadow_model=settings.shadow_model, ttfb_s=ttfb_s,
                        answer_timeout_s=settings.shadow_timeout_s,
                        guard_window=guard_window, max_fallback_rate=max_fallback_rate),
        client=lambda: make_client(settings), metrics=metrics, clock=lambda: CREATED,
    )
    rig = CutoverRig("", cutover, metrics, records, arrived)
    rig.plan(percent)
    app = make_proxy_app(
        primary_url=primary_url, mirror=InlineMirrorLink(engine),
        tag_header=settings.tag_header, max_body_bytes=settings.max_body_bytes,
        conversation_header=settings.conversation_header, cutover=cutover,
    )
    server: TestServer = await aiohttp_server(app)
    rig.proxy_url = f"http://{server.host}:{server.port}"
    try:
        yield rig
    finally:
        await engine.drain(1)
        await caller.close()
