"""A proxy whose mirror engine runs in the test's loop, in front of any primary.

``test_mirror.py`` has its own rig tied to the simulator as primary; the tests of one
wire feature (compressed answers, conversations, structured outputs) need a primary that
answers in a particular way, so this one takes the primary's URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestServer

from shadowproxy.lifecycle import ModelWatch
from shadowproxy.mirror.engine import EngineLimits, MirrorEngine
from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.pricing import PriceTable
from shadowproxy.proxy.app import make_proxy_app
from shadowproxy.records import PairRecord
from shadowproxy.redact import Redactor
from shadowproxy.settings import Settings
from tests.fakes.mirror import InlineMirrorLink

SHADOW_KEY = "sk-ant-shadow-secret-0123456789"


@dataclass
class MirrorRig:
    proxy_url: str
    engine: MirrorEngine
    records: list[PairRecord] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_records(self, n: int) -> list[PairRecord]:
        async with asyncio.timeout(20):
            while len(self.records) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.records


@asynccontextmanager
async def mirror_rig(
    aiohttp_server: Any, *, primary_url: str, shadow_url: str,
    models: ModelWatch | None = None, **overrides: Any
) -> AsyncIterator[MirrorRig]:
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
        limits=EngineLimits(concurrency=settings.shadow_concurrency,
                            queue=settings.shadow_queue, model=settings.shadow_model,
                            timeout_s=settings.shadow_timeout_s,
                            server_tools=settings.shadow_server_tools),
        redactor=Redactor.from_names(settings.redactors), prices=prices, models=models,
    )
    app = make_proxy_app(
        primary_url=primary_url, mirror=InlineMirrorLink(engine),
        tag_header=settings.tag_header, max_body_bytes=settings.max_body_bytes,
        conversation_header=settings.conversation_header,
    )
    server: TestServer = await aiohttp_server(app)
    try:
        yield MirrorRig(f"http://{server.host}:{server.port}", engine, records, arrived)
    finally:
        await engine.drain(1)
        await caller.close()
