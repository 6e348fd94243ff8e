"""``serve`` started on a database of the release before partitioning: it serves at once
(migrating the schema only) and moves the old pairs in the background, and every pair,
old or new, is in ``comparisons`` throughout, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import openai

from shadowproxy.store.legacy_move import legacy_left
from shadowproxy.store.urls import asyncpg_dsn
from tests.e2e.test_serve import wait_pairs
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve
from tests.store.test_legacy_move import PAIRS, _release_before_partitioning


async def test_serve_records_new_pairs_while_it_moves_the_old_ones(
    tmp_path: Path, simulator: SimulatedProvider, empty_database_url: str
) -> None:
    url = empty_database_url
    old = await _release_before_partitioning(url)
    async with running_serve(tmp_path, primary_url=simulator.url,
                             shadow_base_url=simulator.url, shadow_api_key="sk-ant-shadow",
                             database_url=url) as served:
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="sk-app",
                                    max_retries=0)
        for i in range(3):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"new {i}"}])
        rows = await wait_pairs(url, PAIRS + 3)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            for _ in range(300):
                if await legacy_left(conn) is None:  # moved, and the legacy tables gone
                    break
                await asyncio.sleep(0.2)
            assert await legacy_left(conn) is None
            after = await conn.fetch("SELECT id, verdict FROM comparisons")
        finally:
            await conn.close()
    assert len(rows) == PAIRS + 3 == len({r["id"] for r in rows})
    assert len(after) == PAIRS + 3 == len({r["id"] for r in after})
    assert {p.id for p in old} < {r["id"] for r in after}
    assert sum(r["verdict"] is not None for r in after) == 160  # the old scores moved too
