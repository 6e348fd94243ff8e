"""What an operator sees of ``shadowproxy serve``: ``/metrics`` that add up to the traffic,
``/readyz`` through a database outage, several processes sharing one database, and the
admin token. Real processes, a real PostgreSQL, the official ``openai`` SDK."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai
from prometheus_client.parser import text_string_to_metric_families

from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import TestPostgres
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve

APP_KEY = "sk-app-live-key-ABCDEF0123456789"
SHADOW_KEY = "sk-ant-shadow-key-ZYXWVU9876543210"
ADMIN_TOKEN = "admin-token-0123456789abcdef"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def app_client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=APP_KEY, max_retries=0)


async def ask(client: openai.AsyncOpenAI, prompt: str) -> int:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    raw.parse()
    return raw.status_code


async def spread(clients: list[openai.AsyncOpenAI], count: int, concurrency: int) -> list[int]:
    """``count`` unique requests, round-robin over ``clients``, ``concurrency`` at a time."""
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        async with slots:
            return await ask(clients[i % len(clients)], f"load {i} {uuid.uuid4()}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def stored_pairs(database_url: str, expected: int, timeout: float = 20) -> tuple[int, int]:
    """(rows, distinct ids) once ``expected`` rows are in, or when time runs out."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = await conn.fetchrow("SELECT count(*), count(DISTINCT request_sha256) FROM pairs")
            assert row is not None
            if row[0] >= expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # a late duplicate would show now
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT request_sha256) FROM pairs")
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def scrape(admin_url: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(f"{admin_url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Poll ``check`` until it holds; the mirror exports its counters once a second."""
    deadline = time.monotonic() + timeout
    while True:
        if await check() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.25)


def serve_settings(simulator: SimulatedProvider, database_url: str) -> dict[str, Any]:
    return {"primary_url": simulator.url, "shadow_base_url": simulator.url,
            "shadow_api_key": SHADOW_KEY, "database_url": database_url}


async def test_metrics_count_the_traffic_and_only_admin_paths_need_the_token(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    n = 7
    async with asyncio.timeout(60), running_serve(
        tmp_path, admin_token=ADMIN_TOKEN, **serve_settings(simulator, database_url)
    ) as served, aiohttp.ClientSession() as http:

        async def status(path: str, token: str | None = None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.get(f"{served.admin_url}{path}", headers=headers) as resp:
                return resp.status

        assert await spread([app_client(served.url)], n, concurrency=3) == [200] * n
        samples: Samples = {}

        async def exported() -> bool:
            nonlocal samples
            samples = await scrape(served.admin_url)  # no token: Prometheus has none
            return sample(samples, "shadowproxy_pairs_written_total") >= n

        await eventually(exported)
        assert await status("/api/no-such-thing") == 401
        assert await status("/api/no-such-thing", "wrong-token") == 401
        assert await status("/api/no-such-thing", ADMIN_TOKEN) == 404
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert await status(open_path) == 200, open_path
    assert sample(samples, "shadowproxy_requests_total", api="openai.chat", status="200") == n
    assert sample(samples, "shadowproxy_shadow_outcomes_total", outcome="ok") == n
    assert sample(samples, "shadowproxy_pairs_written_total") == n
    assert sample(samples, "shadowproxy_request_duration_seconds_count", api="openai.chat") == n
    assert sample(samples, "shadowproxy_pairs_spooled_total") == 0
    # The proxy's own share of each request is measured, and it is a small part of it.
    assert sample(samples, "shadowproxy_added_latency_seconds_count") == n
    added = sample(samples, "shadowproxy_added_latency_seconds_sum")
    total = sample(samples, "shadowproxy_request_duration_seconds_sum", api="openai.chat")
    assert 0 < added < total
    # One sample per live mirror process (a "liveall" gauge carries its pid).
    assert [v for (name, _), v in samples.items() if name == "shadowproxy_database_up"] == [1]


async def test_readyz_stays_ready_and_reports_the_database_through_an_outage(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
    postgres_server: TestPostgres,
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        head = await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    async with asyncio.timeout(60), running_serve(
        tmp_path, **serve_settings(simulator, database_url)
    ) as served, aiohttp.ClientSession() as http:
        states: list[tuple[int, dict[str, Any]]] = []

        async def database_is(wanted: str) -> bool:
            async with http.get(f"{served.admin_url}/readyz") as resp:
                states.append((resp.status, await resp.json()))
            return bool(states[-1][1]["database"] == wanted)

        async def healthz() -> int:
            async with http.get(f"{served.admin_url}/healthz") as resp:
                return resp.status

        await eventually(lambda: database_is("up"))
        status, up = states[-1]
        assert status == 200 and up["ready"] is True
        assert up["database"] == "up" and up["migration"] == head
        try:
            await asyncio.to_thread(postgres_server.stop)
            await eventually(lambda: database_is("down"))
            status, down = states[-1]
            assert await healthz() == 200
            # Users are still answered while it is down.
            assert await ask(app_client(served.url), "during the outage") == 200
        finally:
            await asyncio.to_thread(postgres_server.start)
        assert status == 200 and down["ready"] is True
        assert down["database"] == "down" and down["migration"] is None
        await eventually(lambda: database_is("up"))

        async def writer_back() -> bool:
            # The writer finds the database again on its own schedule (probe backoff).
            return await database_is("up") and states[-1][1]["writer"] == "up"

        await eventually(writer_back, timeout=30)
        assert states[-1] == (200, {**up, "spool_bytes": states[-1][1]["spool_bytes"]})
        assert await healthz() == 200


async def test_three_serves_sharing_one_database_store_every_pair_once(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    n = 150
    async with asyncio.timeout(80), AsyncExitStack() as stack:
        starting = []
        async with asyncio.TaskGroup() as group:  # in parallel: each start takes seconds
            for name in ("a", "b", "c"):
                (tmp_path / name).mkdir()
                starting.append(group.create_task(stack.enter_async_context(
                    running_serve(tmp_path / name, **serve_settings(simulator, database_url)))))
        served = [task.result() for task in starting]
        assert len({s.url for s in served}) == 3
        statuses = await spread([app_client(s.url) for s in served], n, concurrency=15)
        rows, distinct = await stored_pairs(database_url, n)
    assert statuses == [200] * n
    assert (rows, distinct) == (n, n)


async def test_workers_share_one_port_and_the_supervisor_adds_up_their_metrics(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    n = 60
    async with asyncio.timeout(80), running_serve(
        tmp_path, "--workers", "2", **serve_settings(simulator, database_url)
    ) as served:
        # Separate clients, so SO_REUSEPORT sees many connections to spread.
        clients = [app_client(served.url) for _ in range(12)]
        statuses = await spread(clients, n, concurrency=12)
        rows, distinct = await stored_pairs(database_url, n)
        samples: Samples = {}

        async def exported() -> bool:
            nonlocal samples
            samples = await scrape(served.admin_url)
            return sample(samples, "shadowproxy_pairs_written_total") >= n

        await eventually(exported)
        async with aiohttp.ClientSession() as http, \
                http.get(f"{served.admin_url}/readyz") as resp:
            ready = (resp.status, await resp.json())
    assert statuses == [200] * n
    assert (rows, distinct) == (n, n)
    assert sample(samples, "shadowproxy_requests_total", api="openai.chat", status="200") == n
    assert sample(samples, "shadowproxy_pairs_written_total") == n
    assert ready[0] == 200 and ready[1]["workers"] == 2
    # Each worker's mirror reports its own database connection; nothing else does.
    assert [v for (name, _), v in samples.items() if name == "shadowproxy_database_up"] == [1, 1]
