"""Apply the static Alembic migrations from inside a running event loop.

Alembic's commands are synchronous and its async ``env.py`` would start a loop of its
own, which cannot nest inside ``serve``'s. So we open the async connection here and
run the command on it via ``run_sync``; ``env.py`` picks the connection up from
``config.attributes``. Where the scripts are is :mod:`.scripts`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shadowproxy.store.scripts import script_location
from shadowproxy.store.urls import sqlalchemy_url

__all__ = ["current", "downgrade", "head", "script_location", "upgrade"]


def _config(location: Path, url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["url"] = url
    config.attributes["connection"] = connection
    return config


async def _run(url: str, action: Callable[[Config], None]) -> None:
    url = sqlalchemy_url(url)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        with script_location() as location:
            async with engine.begin() as conn:
                await conn.run_sync(lambda sync: action(_config(location, url, sync)))
    finally:
        await engine.dispose()


def head() -> str:
    """The newest revision the shipped scripts define (what ``upgrade`` reaches)."""
    with script_location() as location:
        revision = ScriptDirectory(str(location)).get_current_head()
    assert revision is not None
    return revision


async def upgrade(url: str, revision: str = "head") -> None:
    await _run(url, lambda config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str) -> None:
    await _run(url, lambda config: command.downgrade(config, revision))


async def current(url: str) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    engine = create_async_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
