"""A small asyncpg pool opened on first use and closed with its owner.

The admin listener's sign-in, sessions and review queue share one: a proxy nobody signs
in to holds no connection for it. asyncpg, not SQLAlchemy, which the proxy process does
not load.
"""

from __future__ import annotations

import asyncio

import asyncpg

from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["DATABASE_ERRORS", "LazyPool"]

# What a query raises when the database is down, restarting, or not migrated: the
# admin listener answers 503 for these, never a traceback.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
)


class LazyPool:
    def __init__(self, database_url: str, *, name: str = "shadowproxy admin", max_size: int = 4,
                 connect_timeout_s: float = 5.0, command_timeout_s: float = 10.0) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._max_size = max_size
        self._name = name
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=self._max_size,
                    timeout=self._connect_timeout_s,
                    command_timeout=self._command_timeout_s,
                    # Operators see in pg_stat_activity whose connections these are.
                    server_settings={"application_name": self._name})
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
