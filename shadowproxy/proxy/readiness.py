"""What ``/readyz`` reports: the proxy can serve; the database, migration and spool state
are there for operators. A database outage does not make the proxy unready — users are
still served and pairs are spooled — so it is reported, not failed on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from shadowproxy.store.urls import asyncpg_dsn

_CACHE_S = 2.0


def spool_bytes(data_dir: Path) -> int:
    root = data_dir / "spool"
    if not root.exists():
        return 0
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class Readiness:
    def __init__(
        self, database_url: str, data_dir: Path, serving: Callable[[], dict[str, Any]]
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._data_dir = data_dir
        self._serving = serving
        self._db: dict[str, Any] = {}
        self._checked = 0.0

    async def _database(self) -> dict[str, Any]:
        if time.monotonic() - self._checked < _CACHE_S and self._db:
            return self._db
        try:
            conn = await asyncio.wait_for(asyncpg.connect(self._dsn), 1.0)
            try:
                revision = await conn.fetchval("SELECT version_num FROM alembic_version")
            finally:
                await conn.close()
            self._db = {"database": "up", "migration": revision}
        except Exception as exc:  # any failure to reach it is "down", with why
            self._db = {"database": "down", "database_error": type(exc).__name__,
                        "migration": None}
        self._checked = time.monotonic()
        return self._db

    async def __call__(self) -> dict[str, Any]:
        serving = self._serving()
        state: dict[str, Any] = {"ready": bool(serving.pop("ready", True))}
        state.update(serving)
        state.update(await self._database())
        state["spool_bytes"] = spool_bytes(self._data_dir)
        return state
