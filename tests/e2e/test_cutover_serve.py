"""One plan for every worker and replica: real ``serve`` processes on one PostgreSQL,
the plan changed in the database, the database stopped under a running plan, a restart
mid-plan, the guard of one replica rolling the tag back for the other."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from shadowproxy.cutover import plans_db
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import TestPostgres
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import ServeProcess, running_serve

APP_KEY = "sk-app-live-key-ABCDEF0123456789"
SHADOW_KEY = "sk-ant-shadow-key-ZYXWVU9876543210"
TAG = "support"
FOLLOW_S = 5.0  # the contract: workers notice a change within 5 s


def settings(simulator: SimulatedProvider, database_url: str, **extra: Any) -> dict[str, Any]:
    return {"primary_url": simulator.url, "shadow_base_url": simulator.url,
            "shadow_api_key": SHADOW_KEY, "database_url": database_url, **extra}


async def served_by(served: ServeProcess, prompt: str = "hello") -> str:
    """Who answered one tagged chat completion: shadow or primary (fallback included)."""
    async with aiohttp.ClientSession() as session, session.post(
        f"{served.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]},
        headers={"authorization": f"Bearer {APP_KEY}", "x-shadow-tag": TAG},
    ) as response:
        body = await response.json()
        assert response.status == 200, body
        who = response.headers.get("x-shadowproxy-served-by", "primary")
        assert (body["model"].startswith("claude-haiku")) == (who == "shadow")
        return who


async def until(served: ServeProcess, who: str, within: float = FOLLOW_S) -> float:
    """Seconds until the replica answers as ``who``; fails past ``within``."""
    started = time.monotonic()
    while (await served_by(served)) != who:
        assert time.monotonic() - started < within, f"not {who} within {within}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def change(database_url: str, work: Any) -> Any:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await work(conn)
    finally:
        await conn.close()


def replica_dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return tmp_path / "a", tmp_path / "b"


async def metrics_text(served: ServeProcess) -> str:
    async with aiohttp.ClientSession() as session, session.get(
            served.admin_url + "/metrics") as response:
        return await response.text()


async def test_two_replicas_follow_one_plan_within_5_seconds(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
) -> None:
    config = settings(simulator, database_url)
    dir_a, dir_b = replica_dirs(tmp_path)
    async with asyncio.timeout(120), running_serve(dir_a, **config) as a, \
            running_serve(dir_b, **config) as b:
        assert [await served_by(a), await served_by(b)] == ["primary", "primary"]

        await change(database_url, lambda c: plans_db.start(c, TAG, (100,), "rm"))
        await asyncio.gather(until(a, "shadow"), until(b, "shadow"))

        await change(database_url, lambda c: plans_db.rollback(c, TAG, "rm", "by hand"))
        await asyncio.gather(until(a, "primary"), until(b, "primary"))

        text = await metrics_text(a)
    assert 'shadowproxy_cutover_percent{tag="support"} 0.0' in text
    assert 'shadowproxy_cutover_served_total{served_by="shadow",tag="support"}' in text


async def test_one_replicas_guard_rolls_the_tag_back_for_both(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
) -> None:
    config = settings(simulator, database_url, cutover_guard_window=2,
                      cutover_max_fallback_rate=0.4)
    await change(database_url, lambda c: plans_db.start(c, TAG, (100,), "rm"))
    dir_a, dir_b = replica_dirs(tmp_path)
    async with asyncio.timeout(120), running_serve(dir_a, **config) as a, \
            running_serve(dir_b, **config) as b:
        assert await served_by(b) == "shadow"
        assert [await served_by(a, "down #error=529"),
                await served_by(a, "down #error=529")] == ["primary", "primary"]
        await until(b, "primary")
        events = await change(database_url, lambda c: plans_db.read_events(c, TAG))
    assert (events[0].action, events[0].from_percent, events[0].to_percent) == ("guard", 100, 0)
    assert events[0].actor.startswith("guard@")
    assert "2 of the last 2 requests chosen for the shadow fell back" in events[0].reason


async def test_the_database_down_keeps_the_last_plan_and_a_restart_resumes_it(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
    postgres_server: TestPostgres,
) -> None:
    config = settings(simulator, database_url, cutover_poll_s=0.5)
    await change(database_url, lambda c: plans_db.start(c, TAG, (100,), "rm"))
    async with asyncio.timeout(120):
        # A restart mid-plan: the first request after start is served by the plan.
        async with running_serve(tmp_path, **config) as served:
            assert await served_by(served) == "shadow"
            await asyncio.to_thread(postgres_server.stop)
            try:
                for _ in range(6):  # several polls while the database is away
                    assert await served_by(served) == "shadow"
                    await asyncio.sleep(0.5)
            finally:
                await asyncio.to_thread(postgres_server.start)
            log = served.log()
        async with running_serve(tmp_path, **config) as again:
            assert await served_by(again) == "shadow"
    assert log.count("cutover plans unreadable") == 1, log[-3000:]


async def test_pairs_say_who_served_them(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
) -> None:
    config = settings(simulator, database_url)
    await change(database_url, lambda c: plans_db.start(c, TAG, (100,), "rm"))
    async with asyncio.timeout(120), running_serve(tmp_path, **config) as served:
        assert await served_by(served, "one") == "shadow"
        assert await served_by(served, "two #error=529") == "primary"
        deadline = time.monotonic() + 20
        rows: list[Any] = []
        while len(rows) < 2 and time.monotonic() < deadline:
            rows = await change(database_url, lambda c: c.fetch(
                "SELECT served_by, shadow_outcome, shadow_reason, primary_status "
                "FROM comparisons ORDER BY received_at"))
            await asyncio.sleep(0.2)
    assert [(r["served_by"], r["shadow_outcome"], r["primary_status"]) for r in rows] == [
        ("shadow", "ok", 200), ("fallback", "error", 200)]
    assert rows[1]["shadow_reason"].startswith("fallback: HTTP 529")
