"""The embedded database survives restarts at the same address and keeps its data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from shadowproxy.store import migrate
from shadowproxy.store.embedded import EmbeddedPostgres


async def _select_one(url: str) -> int:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


@pytest.mark.skipif(
    __import__("os").environ.get("SHADOWPROXY_TEST_DATABASE_URL") is not None,
    reason="an external test database is configured",
)
async def test_start_stop_start_keeps_address_and_data(tmp_path: Path) -> None:
    embedded = EmbeddedPostgres()
    url = await asyncio.to_thread(embedded.start, tmp_path)
    try:
        assert url.startswith("postgresql+asyncpg://")
        # Starting again while running (e.g. after our own crash) reuses the server.
        assert await asyncio.to_thread(embedded.start, tmp_path) == url
        await migrate.upgrade(url)
        await asyncio.to_thread(embedded.stop)
        with pytest.raises(OSError):
            await _select_one(url)

        # The next run finds the cluster in DATA_DIR/pg and reuses it.
        embedded = EmbeddedPostgres()
        assert await asyncio.to_thread(embedded.start, tmp_path) == url
        assert await _select_one(url) == 1
        assert await migrate.current(url) == migrate.head()
    finally:
        await asyncio.to_thread(embedded.stop)
