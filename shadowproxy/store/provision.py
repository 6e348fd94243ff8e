"""The database ``serve`` works against: ``DATABASE_URL``, or the embedded PostgreSQL in
``DATA_DIR``, migrated by a short-lived child process (so Alembic and SQLAlchemy never load
into the long-running proxy process)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import SecretStr

from shadowproxy.settings import Settings

log = logging.getLogger("shadowproxy.store.provision")


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose ``database_url`` is usable: the given one, or an embedded server
    in ``DATA_DIR`` (reused across starts, stopped on exit)."""
    if settings.database_url is not None:
        yield settings
        return
    from shadowproxy.store.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres()
    url = await asyncio.to_thread(embedded.start, settings.data_dir)
    log.debug("embedded PostgreSQL in %s", settings.data_dir / "pg")
    try:
        yield settings.model_copy(update={"database_url": SecretStr(url)})
    finally:
        await asyncio.to_thread(embedded.stop)

# How long serve waits for the database to say its revision before it leaves the
# question to the migration child (which then reports what is wrong, if anything).
_AT_HEAD_TIMEOUT_S = 5.0


async def at_shipped_head(database_url: str) -> bool:
    """Whether the database is already at the head of the shipped scripts, asked with one
    asyncpg query (no Alembic, no SQLAlchemy, no child). False whenever that is not
    plainly so: unreachable, never migrated, behind, ahead, scripts not understood."""
    from shadowproxy.store.scripts import shipped_head

    head = shipped_head()
    if head is None:
        return False
    import asyncpg

    from shadowproxy.store.urls import asyncpg_dsn

    try:
        conn = await asyncio.wait_for(asyncpg.connect(asyncpg_dsn(database_url)),
                                      _AT_HEAD_TIMEOUT_S)
        try:
            rows = await conn.fetch("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return [row[0] for row in rows] == [head]


async def migrate_if_behind(database_url: str) -> None:
    """Bring the database to the shipped head: nothing to do (the usual start) costs one
    query; anything else runs the migration child."""
    if await at_shipped_head(database_url):
        log.debug("database already at the migrations' head")
        return
    await migrate_in_child(database_url)


async def migrate_in_child(database_url: str) -> None:
    """Apply migrations in a short-lived child: Alembic and SQLAlchemy then never load
    into the long-running proxy process (tens of MB it would keep for nothing)."""
    env = {**os.environ, "SHADOWPROXY_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "migrate", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise MigrationFailed(err.decode(errors="replace").strip().splitlines()[-1:] or
                              [f"exit {proc.returncode}"])

class MigrationFailed(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("migrations failed: " + " ".join(lines))
