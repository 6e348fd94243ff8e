"""``shadowproxy serve`` as users run it: a child process with its mirror process, a real
PostgreSQL, the official SDKs as clients, and signals."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import openai
import pytest

from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve

APP_KEY = "sk-app-live-key-ABCDEF0123456789"
SHADOW_KEY = "sk-ant-shadow-key-ZYXWVU9876543210"


async def wait_pairs(database_url: str, n: int, timeout: float = 20) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch("SELECT * FROM comparisons ORDER BY received_at")
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def dump_all_tables(database_url: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        out = []
        for t in tables:
            for row in await conn.fetch(f'SELECT * FROM "{t[0]}"'):
                out.append(json.dumps([str(v) for v in row.values()]))
        return "\n".join(out)
    finally:
        await conn.close()


async def test_serve_mirrors_stores_and_never_keeps_credentials(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with running_serve(
        tmp_path, primary_url=simulator.url, shadow_base_url=simulator.url,
        shadow_api_key=SHADOW_KEY, database_url=database_url, log_level="DEBUG",
    ) as served:
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=APP_KEY,
                                    max_retries=0)
        for i in range(3):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"q{i}"}],
                extra_headers={"x-shadow-tag": "support", "Cookie": "session=abc123secret"})
        stream = await client.chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "s"}])
        chunks = [chunk async for chunk in stream]
        assert chunks
        # A shadow failure and an upstream error put error text in the logs and tables.
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x #error=401"}])
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "y"}],
                extra_headers={"x-sim-error": "500"})
        async with aiohttp.ClientSession() as s, s.get(f"{served.admin_url}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        rows = await wait_pairs(database_url, 6)
        log = served.log()
    assert len(rows) == 6
    outcomes = sorted(r["shadow_outcome"] for r in rows)
    assert outcomes == ["error", "ok", "ok", "ok", "ok", "ok"]
    assert {r["tag"] for r in rows} == {"support", None}
    stored = await dump_all_tables(database_url)
    for secret in (APP_KEY, SHADOW_KEY, "abc123secret"):
        assert secret not in stored
        assert secret not in log


async def test_sigterm_finishes_in_flight_requests_then_exits_0(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with running_serve(
        tmp_path, primary_url=simulator.url, shadow_base_url=simulator.url,
        shadow_api_key=SHADOW_KEY, database_url=database_url, grace_s=10,
    ) as served:
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=APP_KEY,
                                    max_retries=0)
        slow = asyncio.ensure_future(client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "slow"}],
            extra_headers={"x-sim-delay-ms": "1500"}))
        await asyncio.sleep(0.5)
        served.proc.send_signal(signal.SIGTERM)
        answer = await slow
        assert answer.choices[0].message.content
        # New connections are refused while it drains and after it exits.
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "late"}])
        code = await asyncio.wait_for(served.proc.wait(), 60)
    assert code == 0
    rows = await wait_pairs(database_url, 1, timeout=5)
    assert len(rows) == 1 and rows[0]["primary_status"] == 200


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "SHADOWPROXY_PRIMARY_URL: required"),
        ({"primary_url": "ftp://nowhere"}, "SHADOWPROXY_PRIMARY_URL: must be an http"),
        ({"primary_url": "http://127.0.0.1:1", "port": "eighty"}, "SHADOWPROXY_PORT"),
        ({"primary_url": "http://127.0.0.1:1", "sample_rate": "2"}, "SHADOWPROXY_SAMPLE_RATE"),
        ({"primary_url": "http://127.0.0.1:1", "redact": "secrets,bogus"}, "SHADOWPROXY_REDACT"),
    ],
)
async def test_bad_settings_end_serve_with_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    from tests.fakes.serve import serve_env

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "serve", env=serve_env(tmp_path, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert needle in lines[0]


async def test_serve_tells_a_parent_it_is_ready_in_json_and_people_in_words(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    """A parent reads one JSON line on --ready-fd; the banner on stdout stays prose."""
    async with running_serve(tmp_path, primary_url=simulator.url,
                             database_url=database_url) as served:
        assert served.url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http, \
                http.get(f"{served.admin_url}/healthz") as health:
            assert health.status == 200
        assert served.proc.stdout is not None
        banner = (await served.proc.stdout.readline()).decode()
        assert banner.startswith("shadowproxy: proxy on ") and "{" not in banner
