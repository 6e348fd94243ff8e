"""Faults a user of ``shadowproxy serve`` would live through: PostgreSQL going away under
traffic, and a stop while it is away. The user must never notice; every pair must be
stored exactly once when the database is back.

Real processes throughout: ``serve`` with its mirror child, the session's PostgreSQL
stopped and started for real, the official ``openai`` SDK as the application.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import openai

from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import TestPostgres
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve

APP_KEY = "sk-app-live-key-ABCDEF0123456789"
SHADOW_KEY = "sk-ant-shadow-key-ZYXWVU9876543210"


@dataclass(frozen=True, slots=True)
class StoredPairs:
    rows: int
    ids: int
    bodies: int  # distinct request_sha256: each request body was made unique


async def stored_pairs(database_url: str) -> StoredPairs:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT id), count(DISTINCT request_sha256) FROM pairs")
    finally:
        await conn.close()
    assert row is not None
    return StoredPairs(row[0], row[1], row[2])


async def missing_prompts(database_url: str, prompts: list[str]) -> list[str]:
    """Which of the prompts sent have no stored pair: tells a lost pair's moment."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT request->'messages'->0->>'content' AS p FROM pairs")
    finally:
        await conn.close()
    seen = {r["p"] for r in rows}
    return [p for p in prompts if p not in seen]


async def wait_stored(database_url: str, n: int, timeout: float = 20) -> StoredPairs:
    """Poll until ``n`` pairs are stored (or time runs out); then linger a moment so a
    duplicate written late would still be seen."""
    deadline = time.monotonic() + timeout
    while True:
        if (await stored_pairs(database_url)).rows >= n or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    return await stored_pairs(database_url)


def app_client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=APP_KEY, max_retries=0)


async def ask(client: openai.AsyncOpenAI, prompt: str, **headers: str) -> int:
    """One chat completion; the HTTP status the application saw."""
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}],
        extra_headers=headers or None,
    )
    raw.parse()
    return raw.status_code


@dataclass(frozen=True, slots=True)
class Answered:
    sent_at: float  # monotonic
    latency_s: float
    status: int


async def timed_ask(client: openai.AsyncOpenAI, prompt: str) -> Answered:
    started = time.monotonic()
    status = await ask(client, prompt)
    return Answered(started, time.monotonic() - started, status)


async def test_database_outage_under_steady_traffic_is_invisible_and_loses_nothing(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
    postgres_server: TestPostgres,
) -> None:
    rate, duration_s = 20, 6.0
    async with asyncio.timeout(60), running_serve(
        tmp_path, primary_url=simulator.url, shadow_base_url=simulator.url,
        shadow_api_key=SHADOW_KEY, database_url=database_url,
    ) as served:
        client = app_client(served.url)
        prompts = [f"warm-up {uuid.uuid4()}"]
        await ask(client, prompts[0])  # connections, SDK imports
        outage: dict[str, float] = {}

        async def outage_in_the_middle() -> None:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(postgres_server.stop)
            outage["down"] = time.monotonic()
            await asyncio.sleep(3.0)
            outage["restarting"] = time.monotonic()
            await asyncio.to_thread(postgres_server.start)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(outage_in_the_middle())
                start = time.monotonic()
                calls = []
                for i in range(int(rate * duration_s)):
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                    prompts.append(f"steady {i} {uuid.uuid4()}")
                    calls.append(group.create_task(timed_ask(client, prompts[-1])))
        finally:
            await asyncio.to_thread(postgres_server.start)
        answers = [c.result() for c in calls]
        stored = await wait_stored(database_url, len(answers) + 1)
        log = served.log()

    assert [a.status for a in answers] == [200] * len(answers)
    before = [a.latency_s for a in answers if a.sent_at < outage["down"] - 0.2]
    during = [a.latency_s for a in answers
              if outage["down"] <= a.sent_at < outage["restarting"]]
    assert len(before) >= 15 and len(during) >= 40, (len(before), len(during))
    # A user request that waited on the database would wait for a connection timeout
    # (seconds); 100 ms of slack tells that apart from a loaded machine restarting
    # PostgreSQL beside the test (a 20 ms bound once failed a clean CI run).
    assert statistics.median(during) <= statistics.median(before) + 0.100, (
        statistics.median(before), statistics.median(during))
    assert "spooling pairs" in log  # the writer really saw the outage
    total = len(answers) + 1  # and the warm-up
    assert stored == StoredPairs(total, total, total), (
        f"missing prompts: {await missing_prompts(database_url, prompts)}\n{log[-4000:]}")


async def test_sigterm_with_database_down_spools_and_next_start_stores_once(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
    postgres_server: TestPostgres,
) -> None:
    settings = {
        "primary_url": simulator.url, "shadow_base_url": simulator.url,
        "shadow_api_key": SHADOW_KEY, "database_url": database_url, "grace_s": 10,
    }
    slow = 3
    async with asyncio.timeout(90):
        try:
            async with running_serve(tmp_path, **settings) as served:
                await asyncio.to_thread(postgres_server.stop)
                client = app_client(served.url)
                in_flight = [
                    asyncio.ensure_future(ask(client, f"slow {i} {uuid.uuid4()}",
                                              **{"x-sim-delay-ms": "1500"}))
                    for i in range(slow)
                ]
                await asyncio.sleep(0.5)
                served.proc.send_signal(signal.SIGTERM)
                statuses = await asyncio.gather(*in_flight)
                code = await served.proc.wait()
        finally:
            await asyncio.to_thread(postgres_server.start)
        assert statuses == [200] * slow
        assert code == 0
        assert list((tmp_path / "data" / "spool").rglob("*.jsonl"))
        assert (await stored_pairs(database_url)).rows == 0

        async with running_serve(tmp_path, **settings):
            stored = await wait_stored(database_url, slow)
    assert stored == StoredPairs(slow, slow, slow)
    assert not [p for p in (tmp_path / "data" / "spool").rglob("*.jsonl")
                if p.stat().st_size], "the replayed spool is released"
